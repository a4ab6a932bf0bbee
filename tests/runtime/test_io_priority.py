"""Reactor's disk work yields to MinKNOW's: the writer best-effort at the lowest level,
staging copies idle (read back from the kernel, per thread)."""

from __future__ import annotations

import platform
import threading

import pytest

from reactor.runtime.io_priority import IoClass, io_priority, set_io_priority

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux", reason="I/O priorities are Linux's (ioprio_set)"
)


def in_a_thread(io_class: IoClass, level: int = 7) -> tuple[bool, tuple[int, int] | None]:
    result: list[tuple[bool, tuple[int, int] | None]] = []

    def work() -> None:
        result.append((set_io_priority(io_class, level), io_priority()))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=10)
    return result[0]


def test_a_thread_takes_the_idle_class_and_others_keep_theirs() -> None:
    before = io_priority()
    assert in_a_thread(IoClass.IDLE) == (True, (3, 0))
    assert in_a_thread(IoClass.BEST_EFFORT, 7) == (True, (2, 7))
    assert io_priority() == before, "per thread: this one is as it was"


async def test_the_journal_writer_runs_best_effort_at_the_lowest_level() -> None:
    from reactor.disk.journal import Chore
    from reactor.serve.writer import DiskWriter

    writer = DiskWriter(durable=False, on_broken=lambda error: None)
    writer.start()
    try:
        seen = await writer.run(Chore(io_priority))
    finally:
        await writer.stop()
    assert seen == (2, 7)
