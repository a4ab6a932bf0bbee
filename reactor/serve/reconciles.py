"""Answering lost filesystem events: one reconcile scan for a storm of losses.

When the kernel's inotify queue overflows, watchdog logs one warning per overflow, and
under a burst of writes that can be many in a row; each loss asks for a reconcile, a
scan of INPUTDIR that costs O(files) (~1 s at a million). Running one per report would
stall the loop for as long as the storm lasts. So a loss schedules one reconcile
`delay_s` later, every loss reported until it runs is answered by that same scan, and
two scans are at least `min_gap_s` apart: a storm costs one scan every `min_gap_s`,
and a lone loss is answered within `delay_s`. Reconciles for other reasons (the end of
the run, the safety net) do not wait here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

DELAY_S = 0.5  # lets a burst of reports arrive before the scan that answers them
MIN_GAP_S = 5.0  # between two scans answering losses


class DebouncedReconcile:
    """`report(reason)` on the loop; `reconcile(reason)` runs once for every burst."""

    def __init__(
        self,
        reconcile: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
        *,
        delay_s: float = DELAY_S,
        min_gap_s: float = MIN_GAP_S,
    ) -> None:
        self._reconcile = reconcile
        self._loop = loop
        self.delay_s = delay_s
        self.min_gap_s = min_gap_s
        self._pending: asyncio.TimerHandle | None = None
        self._reasons: dict[str, int] = {}  # reason -> reports, in order of first report
        self._last_run = -float("inf")  # loop time of the last scan this started

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def report(self, reason: str) -> None:
        """Events were lost for `reason`: a scan will answer it (this one or the next)."""
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        if self._pending is not None:
            return
        now = self._loop.time()
        wait_s = max(self.delay_s, self._last_run + self.min_gap_s - now)
        self._pending = self._loop.call_later(wait_s, self._run)

    def _run(self) -> None:
        self._pending = None
        reasons, self._reasons = self._reasons, {}
        self._last_run = self._loop.time()
        reports = sum(reasons.values())
        if reports > 1:
            log.info("reconcile_debounced", reasons=sorted(reasons), reports=reports)
        self._reconcile(next(iter(reasons)))  # the first reason names the scan

    def cancel(self) -> None:
        """No scan from now on (shutdown)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._reasons = {}
