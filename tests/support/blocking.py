"""A `Reactor` driven from plain synchronous test code.

The service's operations are coroutines (their disk steps run on the writer's thread);
tests that script a run step by step, crashing it and starting it again, read better
without `await` on every line. Each operation here runs to its end on an event loop of
its own; everything else is the reactor's own attribute.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactor.core.state import CompletionPlan, Job
from reactor.disk.recovery import Recovered
from reactor.serve.service import Reactor

_STARTED: list[Blocking] = []


def started(reactor: Reactor) -> Blocking:
    """`reactor` started (its recovery's result in `.recovered`); its writer's thread is
    ended after the test (tests/conftest.py calls `end_started`)."""
    blocking = Blocking(reactor)
    _STARTED.append(blocking)
    blocking.recovered = blocking.start()
    return blocking


def end_started() -> None:
    while _STARTED:
        _STARTED.pop().close()


class Blocking:
    """`reactor`, with its operations made to block until they are done."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.recovered: Recovered | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reactor, name)

    def start(self) -> Recovered:
        return self.reactor.start()

    def assign(self, engine_id: str, batch_size: int) -> Job | None:
        return asyncio.run(self.reactor.assign(engine_id, batch_size))

    def complete(self, job_id: str, job_state: str) -> CompletionPlan:
        return asyncio.run(self.reactor.complete(job_id, job_state))

    def expire_due(self, now: float) -> list[Job]:
        return asyncio.run(self.reactor.expire_due(now))

    def requeue(self, folders: list[str] | None) -> dict[str, list[str]]:
        return asyncio.run(self.reactor.requeue(folders))

    def finish_held(self) -> None:
        asyncio.run(self.reactor.finish_held())

    def close(self) -> None:
        """End the writer's thread (a crashed reactor's has ended already)."""
        self.reactor.writer.close()
