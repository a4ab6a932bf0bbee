"""The event loop's lag, measured all the time by a probe task.

Everything in the service shares one event loop, so anything that holds it (a disk
step run inline, a big scan, a slow callback) delays every request and every lease
check behind it. The probe sleeps `interval_s` again and again and records how much
later than asked it woke up: that delay is how long the loop was held. The figures go
to the `reactor_loop_lag_seconds` histogram; `make load` reads its p99 at the end of a
run (docs/operations.md, "Watching the service").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Histogram

INTERVAL_S = 0.05  # 20 wake-ups a second: nothing to the loop, enough samples for a p99


class LoopLagProbe:
    def __init__(
        self,
        histogram: Histogram,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.histogram = histogram
        self.interval_s = interval_s
        self.clock = clock

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            began = self.clock()
            await asyncio.sleep(self.interval_s)
            self.histogram.observe(max(0.0, self.clock() - began - self.interval_s))
