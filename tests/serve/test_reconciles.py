"""A storm of lost-event reports costs one reconcile scan, not one per report."""

from __future__ import annotations

import asyncio

from reactor.serve.reconciles import DebouncedReconcile

WAIT_S = 5.0


class Scans:
    """A stand-in for the reactor's reconcile: records each scan and when it ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.runs: list[tuple[str, float]] = []
        self.ran = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.runs.append((reason, self.loop.time()))
        self.ran.set()

    async def next(self) -> tuple[str, float]:
        async with asyncio.timeout(WAIT_S):
            await self.ran.wait()
        self.ran.clear()
        return self.runs[-1]


async def test_a_burst_of_reports_is_answered_by_one_scan() -> None:
    loop = asyncio.get_running_loop()
    scans = Scans(loop)
    losses = DebouncedReconcile(scans, loop, delay_s=0.05, min_gap_s=0.2)
    for _ in range(100):
        losses.report("inotify_overflow")
    losses.report("observer_restarted")
    assert await scans.next() == ("inotify_overflow", scans.runs[0][1])
    assert not losses.pending
    assert len(scans.runs) == 1


async def test_scans_answering_losses_are_at_least_the_gap_apart() -> None:
    loop = asyncio.get_running_loop()
    scans = Scans(loop)
    losses = DebouncedReconcile(scans, loop, delay_s=0.01, min_gap_s=0.3)
    losses.report("inotify_overflow")
    _, first = await scans.next()
    losses.report("inotify_overflow")  # right after a scan: waits for the gap
    losses.report("inotify_overflow")
    _, second = await scans.next()
    assert second - first >= 0.3
    assert len(scans.runs) == 2


async def test_a_lone_loss_after_a_quiet_spell_waits_only_the_delay() -> None:
    loop = asyncio.get_running_loop()
    scans = Scans(loop)
    losses = DebouncedReconcile(scans, loop, delay_s=0.01, min_gap_s=0.05)
    losses.report("observer_restarted")
    _, first = await scans.next()
    await asyncio.sleep(0.06)  # the gap has passed: only the delay applies now
    reported = loop.time()
    losses.report("observer_restarted")
    _, second = await scans.next()
    assert second - first >= 0.05
    assert second - reported < 0.05 + 1.0  # bounded by the delay, not another gap


async def test_cancel_drops_a_pending_scan() -> None:
    loop = asyncio.get_running_loop()
    scans = Scans(loop)
    losses = DebouncedReconcile(scans, loop, delay_s=0.01, min_gap_s=0.01)
    losses.report("inotify_overflow")
    losses.cancel()
    assert not losses.pending
    await asyncio.sleep(0.05)
    assert scans.runs == []
