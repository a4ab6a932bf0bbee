"""The writer thread on its own: steps in submission order, phases side by side with one
barrier each (a group commit), a step arriving mid-commit joining at the next barrier, a
step answered once its own last phase is durable, a failing step alone in its failure
(even one that discards what it collected), and a failed fsync that stops everything
after it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.disk.durable import DurabilityError, Sync
from reactor.disk.journal import Chore, Step
from reactor.serve.writer import DiskWriter

WAIT_S = 10.0
_FOLDER_FDS: dict[Path, int] = {}


@pytest.fixture(autouse=True)
def _close_folders() -> Iterator[None]:
    yield
    while _FOLDER_FDS:
        os.close(_FOLDER_FDS.popitem()[1])


class Recorded(Step[str]):
    """A step that records its phases in a shared log and touches one file and one shared
    folder, handed to the barrier as a real one would. `wait_in`: a phase that first waits
    for `gate` (set by the test)."""

    def __init__(
        self,
        name: str,
        log: list[str],
        folder: Path,
        fail_in: str = "",
        wait_in: str = "",
        gate: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.folder = folder
        self.fail_in = fail_in
        self.wait_in = wait_in
        self.gate = gate or threading.Event()
        self.waiting = threading.Event()  # set once it waits in `wait_in`
        # One descriptor per folder, as the journal keeps its run folders open.
        self.folder_fd = _FOLDER_FDS.setdefault(
            folder, os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        )

    def _phase(self, phase: str, sync: Sync) -> None:
        if phase == self.wait_in:
            self.waiting.set()
            assert self.gate.wait(WAIT_S)
        self.log.append(f"{self.name}:{phase}")
        if phase == self.fail_in:
            msg = f"{self.name} fails in {phase}"
            raise OSError(msg)
        fd = os.open(self.folder / self.name, os.O_WRONLY | os.O_CREAT, 0o600)
        sync.take(fd)
        sync.folder(self.folder_fd)

    def prepare(self, sync: Sync) -> None:
        self._phase("prepare", sync)

    def commit(self, sync: Sync) -> None:
        self._phase("commit", sync)

    def finish(self, sync: Sync) -> str:
        self._phase("finish", sync)
        return self.name


class Tidied(Recorded):
    """A Recorded step with a `tidy` phase."""

    def tidy(self, sync: Sync) -> None:
        self._phase("tidy", sync)


class Discarding(Recorded):
    """A step that collects a file, then gives up before its decision as the journal's
    steps do: `Sync.discard()`, then an error."""

    def prepare(self, sync: Sync) -> None:
        fd = os.open(self.folder / self.name, os.O_WRONLY | os.O_CREAT, 0o600)
        sync.take(fd)
        sync.discard()
        msg = f"{self.name} gives up"
        raise OSError(msg)


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """An event the first step waits on, so that the next ones queue up behind it."""
    event = threading.Event()
    yield event
    event.set()


async def _hold_thread(writer: DiskWriter, held: threading.Event) -> asyncio.Future[str]:
    """Submit a step that holds the writer's thread until `held` is set; return once the
    thread holds it (its future answers "blocker")."""
    running = threading.Event()

    def block() -> str:
        running.set()
        held.wait(WAIT_S)
        return "blocker"

    blocker = asyncio.ensure_future(writer.run(Chore(block)))
    assert await asyncio.to_thread(running.wait, WAIT_S)  # the thread holds the blocker
    return blocker


async def _run_group(writer: DiskWriter, steps: list[Step[str]], held: threading.Event) -> list:
    """Submit a blocker and then `steps` while the blocker holds the thread: the steps
    wait in the queue and are taken as one group."""
    blocker = await _hold_thread(writer, held)
    futures = [asyncio.ensure_future(writer.run(step)) for step in steps]
    await asyncio.sleep(0)  # each submits as it starts: all are queued now
    held.set()
    assert await asyncio.wait_for(blocker, WAIT_S) == "blocker"
    return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT_S)


async def test_waiting_steps_are_committed_as_one_group_phase_by_phase(
    tmp_path: Path, held: threading.Event
) -> None:
    """Three steps queued together run prepare, prepare, prepare, commit, ... and the
    folder all three touched is fsynced once per barrier, not once per step."""
    log: list[str] = []
    writer = DiskWriter(durable=True)
    writer.start()
    try:
        steps: list[Step[str]] = [Recorded(n, log, tmp_path) for n in ("a", "b", "c")]
        results = await _run_group(writer, steps, held)
    finally:
        await writer.stop()
    assert results == ["a", "b", "c"]
    assert log == [f"{n}:{phase}" for phase in ("prepare", "commit", "finish") for n in "abc"]
    assert writer.largest_group == 3
    # per phase: 3 files + the shared folder once = 4 fsyncs; alone it would be 3 x 2
    assert writer.fsyncs == 3 * 4


async def test_a_step_that_fails_drops_out_and_the_others_go_on(
    tmp_path: Path, held: threading.Event
) -> None:
    log: list[str] = []
    writer = DiskWriter(durable=True)
    writer.start()
    try:
        steps: list[Step[str]] = [
            Recorded("a", log, tmp_path),
            Recorded("b", log, tmp_path, fail_in="prepare"),
            Recorded("c", log, tmp_path),
        ]
        a, b, c = await _run_group(writer, steps, held)
    finally:
        await writer.stop()
    assert (a, c) == ("a", "c")
    assert isinstance(b, OSError)
    assert "b:commit" not in log
    assert writer.broken is None


async def test_without_durability_nothing_is_fsynced(tmp_path: Path, held: threading.Event) -> None:
    log: list[str] = []
    writer = DiskWriter(durable=False)
    writer.start()
    try:
        steps: list[Step[str]] = [Recorded(n, log, tmp_path) for n in ("a", "b")]
        assert await _run_group(writer, steps, held) == ["a", "b"]
    finally:
        await writer.stop()
    assert writer.fsyncs == 0


class Unsyncable(Step[None]):
    """A step whose barrier cannot be passed: fsync of a pipe fails (EINVAL), as an
    fsync that reports an I/O error would."""

    def finish(self, sync: Sync) -> None:
        read_end, write_end = os.pipe()
        os.close(write_end)
        sync.take(read_end)


async def test_a_failed_fsync_breaks_the_writer_for_good(tmp_path: Path) -> None:
    broken: list[DurabilityError] = []
    writer = DiskWriter(durable=True, on_broken=broken.append)
    writer.start()
    try:
        with pytest.raises(DurabilityError, match="check the disk and restart reactor"):
            await asyncio.wait_for(writer.run(Unsyncable()), WAIT_S)
        later = Recorded("later", [], tmp_path)
        with pytest.raises(DurabilityError):
            await asyncio.wait_for(writer.run(later), WAIT_S)
    finally:
        await writer.stop()
    assert len(broken) == 1
    assert not (tmp_path / "later").exists()  # nothing after the failure was carried out


async def test_stop_carries_out_every_step_submitted_before_it(tmp_path: Path) -> None:
    log: list[str] = []
    writer = DiskWriter(durable=False)
    writer.start()
    futures = [asyncio.ensure_future(writer.run(Recorded(str(n), log, tmp_path))) for n in range(5)]
    await asyncio.sleep(0)
    await asyncio.wait_for(writer.stop(), WAIT_S)
    assert await asyncio.gather(*futures) == [str(n) for n in range(5)]
    with pytest.raises(RuntimeError, match="not running"):
        await writer.run(Recorded("late", log, tmp_path))


async def test_a_step_arriving_while_another_is_on_the_disk_joins_at_the_next_barrier(
    tmp_path: Path,
) -> None:
    """b, submitted while a is in its prepare, runs its prepare beside a's commit: it
    waits one round, not for a's whole commit; each phase still runs in submission order."""
    log: list[str] = []
    writer = DiskWriter(durable=True)
    writer.start()
    try:
        a = Recorded("a", log, tmp_path, wait_in="prepare")
        first = asyncio.ensure_future(writer.run(a))
        assert await asyncio.to_thread(a.waiting.wait, WAIT_S)
        second = asyncio.ensure_future(writer.run(Recorded("b", log, tmp_path)))
        await asyncio.sleep(0)  # b is submitted (queued) before a may go on
        a.gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, second), WAIT_S) == ["a", "b"]
    finally:
        await writer.stop()
    assert log == ["a:prepare", "a:commit", "b:prepare", "a:finish", "b:commit", "b:finish"]
    assert writer.largest_group == 2


async def test_a_step_is_answered_once_its_own_last_phase_is_durable(
    tmp_path: Path, held: threading.Event
) -> None:
    """A step without a tidy is answered after its finish's barrier, while a step of the
    same group is still in its tidy."""
    log: list[str] = []
    writer = DiskWriter(durable=True)
    writer.start()
    gate = threading.Event()
    try:
        tidied = Tidied("t", log, tmp_path, wait_in="tidy", gate=gate)
        blocker = await _hold_thread(writer, held)
        plain = asyncio.ensure_future(writer.run(Recorded("p", log, tmp_path)))
        slow = asyncio.ensure_future(writer.run(tidied))
        await asyncio.sleep(0)
        held.set()
        assert await asyncio.wait_for(blocker, WAIT_S) == "blocker"
        assert await asyncio.wait_for(plain, WAIT_S) == "p"  # before t's tidy is let go
        assert await asyncio.to_thread(tidied.waiting.wait, WAIT_S)
        assert not slow.done()
        gate.set()
        assert await asyncio.wait_for(slow, WAIT_S) == "t"
    finally:
        gate.set()
        await writer.stop()
    assert log[-1] == "t:tidy"


async def test_a_step_that_discards_what_it_collected_leaves_the_others_fsyncs(
    tmp_path: Path, held: threading.Event
) -> None:
    """A step giving up before its decision (`Sync.discard`) drops only its own files:
    the barrier still fsyncs what the other steps of the round are waiting for."""
    log: list[str] = []
    writer = DiskWriter(durable=True)
    writer.start()
    try:
        steps: list[Step[str]] = [Recorded("a", log, tmp_path), Discarding("d", log, tmp_path)]
        a, d = await _run_group(writer, steps, held)
    finally:
        await writer.stop()
    assert a == "a"
    assert isinstance(d, OSError)
    # a alone: its file and the folder, in each of its three barriers
    assert writer.fsyncs == 3 * 2
