"""The deadline sweeper: expires silent jobs, settles incomplete files, reconciles,
and looks for the end of the run.

The clock comes in from the edge: `sweep_once(now)` does one pass at the time it is
given, so tests drive expiry by choosing `now` instead of waiting out a 90 s lease.
`run()` is the production loop that calls it every `sweep_interval` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from reactor.core.model import Clock
from reactor.core.state import Job
from reactor.serve.service import Reactor

log = structlog.get_logger("reactor.sweeper")


class Sweeper:
    def __init__(
        self,
        reactor: Reactor,
        *,
        clock: Clock,
        interval_s: float,
        reconcile_interval_s: float = 0.0,
        health_check: Callable[[], None] | None = None,
        end_of_run: Callable[[], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.interval_s = interval_s
        self.reconcile_interval_s = reconcile_interval_s
        self.health_check = health_check
        self.end_of_run = end_of_run
        self._last_reconcile = clock()
        self.passes = 0

    async def sweep_once(self, now: float) -> list[Job]:
        """One pass at time `now`: expire late jobs, re-check quiet incomplete files,
        run the safety-net reconcile when it is due (and try again the steps of jobs
        held for a person), then the end-of-run check (`reactor.serve.finisher`).
        Returns the expired jobs. Each part runs whatever another one raised: a fault
        in one must never stop leases from expiring."""
        expired: list[Job] = []

        async def expire() -> None:
            expired.extend(await self.reactor.expire_due(now))

        await self._step_async("expire", expire)
        await self._step_async("space", self.reactor.check_space)

        async def stalled() -> None:
            await self.reactor.check_stalled(now)

        await self._step_async("stalled", stalled)
        self._step("forget_engines", lambda: self.reactor.forget_idle_engines(now))
        self._step("settle", lambda: self.reactor.settle(now))
        self._step("result_folders", self.reactor.ensure_result_folders)
        if self.health_check is not None:
            self._step("health_check", self.health_check)
        due = self.reconcile_interval_s > 0 and now - self._last_reconcile >= (
            self.reconcile_interval_s
        )
        if due:
            self._last_reconcile = now
            self._step("reconcile", lambda: self.reactor.reconcile("periodic"))
            await self._step_async("held_jobs", self.reactor.finish_held)
        if self.end_of_run is not None:
            self._step("end_of_run", self.end_of_run)
        self.passes += 1
        return expired

    @staticmethod
    def _step(name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            log.exception("sweep_failed", part=name)

    @staticmethod
    async def _step_async(name: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception:
            log.exception("sweep_failed", part=name)

    async def run(self) -> None:
        """Sweep forever, every `interval_s`; an error in one pass is logged, not fatal."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep_once(self.clock())
            except Exception:
                log.exception("sweep_failed")
