"""Engines waiting for work (long-poll): `/assignwork?...&wait_s=N`.

An idle engine asks with `wait_s` and its request is held until work may be there for it
(a file became ready: the run state says so, `RunState.ready_listener`) or `wait_s`
passes, so it learns of a new file at once and costs about one request a minute while
idle. A waiting request is a future: it costs no CPU. When work comes, every waiter is
woken, the one that began waiting last first (their futures resolve in that order, so
their handlers ask for work in it), and each asks again; one that finds nothing for it
waits again with the time it has left. At shutdown all are woken and answered as empty
(`close`).

Last come, first served, on purpose: the engine that just finished a batch takes the
next one, and the engines that have waited longest go on waiting. When the work needs
fewer engines than are there, the same few do it and the others stay idle long enough
to exit (`--exit-when-idle`, how the fleet scales down); woken oldest first, every
engine would get a batch now and then and none would ever be idle long enough. No file
waits longer for it: any idle engine takes it at once. (`make fleet-trial` measured the
difference: docs/fleet.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class WorkWaiters:
    """The requests waiting for work, in the order they came. One per service (or host)."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.closed = False
        # Counts the times work came: a request that looked for work while one came
        # (its look awaited something) looks again rather than wait for the next.
        self.notified = 0
        # Told too when work comes, after the waiters: the fleet submits engines at once.
        self.on_work: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    async def wait(self, timeout_s: float) -> bool:
        """Until work may be there (True) or `timeout_s` passes or the service stops
        (False)."""
        if self.closed or timeout_s <= 0:
            return False
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(woken)
        try:
            await asyncio.wait_for(asyncio.shield(woken), timeout_s)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(woken)
        return not self.closed

    def notify(self) -> None:
        """Work may be there: wake every waiter, newest first (each asks again)."""
        self.notified += 1
        while self._waiting:
            woken = self._waiting.pop()
            if not woken.done():
                woken.set_result(None)
        if not self.closed:
            for listener in self.on_work:
                listener()

    def close(self) -> None:
        """The service stops: every waiter is answered now, and none waits again."""
        self.closed = True
        self.notify()
