"""The watchdog bridge: filters and event mapping (scripted), then real observers on tmp_path.

Real observers can repeat events (inotify gives CREATED, MODIFIED and CLOSED for one write,
and pod5's writer closes its file twice), so those tests assert on sets and containment.
A negative ("nothing for a hidden file") is checked by ordering, not by waiting: the ignored
change is made first, then a sentinel `.pod5` in the same folder; events of one inotify
watch arrive in order, so the sentinel's event must be the first one delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

from reactor.core.events import Area, Change, FsEvent, input_filter, results_filter
from reactor.serve.watcher import (
    LOST_OVERFLOW,
    LOST_RESTARTED,
    OVERFLOW_LOGGER,
    EventBridge,
    Watcher,
)
from tests.support.pod5files import pod5_bytes, write_pod5, write_pod5_in_pieces
from tests.support.tools import skip_for_missing_tool

TIMEOUT_S = 5.0

# ---------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("PAK00000_pass_abcdef12_0123abcd_17.pod5", True),
        ("a.pod5", True),
        (".hidden.pod5", False),
        (".reactor-staging-0123.pod5", False),
        (".e88c3b87-bf29-4641-9b61-5ce793e1af61.tmp-reads", False),
        ("a.pod5.tmp", False),
        ("a.POD5", False),
        ("reads.fastq", False),
        ("final_summary_PAK00000_abcdef12.txt", False),
    ],
)
def test_input_filter_takes_visible_pod5_names_only(name: str, accepted: bool) -> None:
    for change in Change:
        assert input_filter(change, Path("/run/input") / name) is accepted


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("job_id_1_PAK00000_pass_abcdef12_0123abcd_0.fastq", True),
        ("PAK00000_pass_abcdef12_0123abcd_0.fastq.gz", True),
        ("calls.bam", True),
        ("reads.fq", True),
        (".reactor-staging-1.fastq", False),
        ("sequencing_summary.txt", False),
        ("a.pod5", False),
    ],
)
def test_results_filter_takes_visible_basecalling_outputs(name: str, accepted: bool) -> None:
    assert results_filter(Change.CREATED, Path("/run/output/pass") / name) is accepted


# ----------------------------------------------------------------- bridge (scripted)

ROOT = Path("/run/input")
ELSEWHERE = Path("/run/elsewhere")


async def loop_turn() -> None:
    """Let every callback already queued on the loop run (they run in FIFO order)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


async def bridged(event: FileSystemEvent) -> list[tuple[Change, str]]:
    """What the bridge on INPUTDIR hands to the loop for one scripted watchdog event."""
    received: list[FsEvent] = []
    bridge = EventBridge(
        Area.INPUT, ROOT, accept=input_filter, post=received.append, loop=asyncio.get_running_loop()
    )
    bridge.dispatch(event)
    await loop_turn()
    assert all(e.area is Area.INPUT for e in received)
    return [(e.change, e.name) for e in received]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (FileCreatedEvent(f"{ROOT}/a.pod5"), [(Change.CREATED, "a.pod5")]),
        (FileModifiedEvent(f"{ROOT}/a.pod5"), [(Change.MODIFIED, "a.pod5")]),
        (FileClosedEvent(f"{ROOT}/a.pod5"), [(Change.CLOSED, "a.pod5")]),
        (FileDeletedEvent(f"{ROOT}/a.pod5"), [(Change.GONE, "a.pod5")]),
        (
            FileMovedEvent(f"{ROOT}/a.pod5", f"{ROOT}/b.pod5"),
            [(Change.GONE, "a.pod5"), (Change.MOVED_IN, "b.pod5")],
        ),
        (
            FileMovedEvent(f"{ROOT}/.reactor-staging-1.pod5", f"{ROOT}/b.pod5"),
            [(Change.MOVED_IN, "b.pod5")],
        ),
        (FileMovedEvent("", f"{ROOT}/b.pod5"), [(Change.MOVED_IN, "b.pod5")]),
        (FileMovedEvent(f"{ELSEWHERE}/b.pod5", f"{ROOT}/b.pod5"), [(Change.MOVED_IN, "b.pod5")]),
        (FileMovedEvent(f"{ROOT}/a.pod5", ""), [(Change.GONE, "a.pod5")]),
        (FileMovedEvent(f"{ROOT}/a.pod5", f"{ELSEWHERE}/a.pod5"), [(Change.GONE, "a.pod5")]),
        (FileMovedEvent(f"{ROOT}/a.pod5", f"{ROOT}/a.txt"), [(Change.GONE, "a.pod5")]),
        (FileCreatedEvent(os.fsencode(f"{ROOT}/a.pod5")), [(Change.CREATED, "a.pod5")]),
    ],
)
async def test_bridge_maps_file_events(
    event: FileSystemEvent, expected: list[tuple[Change, str]]
) -> None:
    assert await bridged(event) == expected


@pytest.mark.parametrize(
    "event",
    [
        DirCreatedEvent(f"{ROOT}/x.pod5"),
        DirModifiedEvent(f"{ROOT}"),
        DirDeletedEvent(f"{ROOT}/x.pod5"),
        FileOpenedEvent(f"{ROOT}/a.pod5"),
        FileClosedNoWriteEvent(f"{ROOT}/a.pod5"),
        FileAttribEvent(f"{ROOT}/a.pod5"),
        FileCreatedEvent(f"{ROOT}/.hidden.pod5"),
        FileCreatedEvent(f"{ROOT}/ASSIGNED_1_e1/a.pod5"),  # not at the top level
        FileCreatedEvent(f"{ELSEWHERE}/a.pod5"),
    ],
)
async def test_bridge_drops_other_events(event: FileSystemEvent) -> None:
    assert await bridged(event) == []


async def test_bridge_stamps_events_with_monotonic_time() -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()  # the default loop clock is time.monotonic()
    received: list[FsEvent] = []
    bridge = EventBridge(Area.INPUT, ROOT, accept=input_filter, post=received.append, loop=loop)
    bridge.dispatch(FileCreatedEvent(f"{ROOT}/a.pod5"))
    await loop_turn()

    assert before <= received[0].at <= loop.time()


def test_bridge_drops_events_once_the_loop_is_closed() -> None:
    """Shutdown race: the observer thread may still dispatch after the loop closed."""
    loop = asyncio.new_event_loop()
    loop.close()
    bridge = EventBridge(Area.INPUT, ROOT, accept=input_filter, post=print, loop=loop)

    bridge.dispatch(FileCreatedEvent(f"{ROOT}/a.pod5"))  # no exception


# --------------------------------------------------------------- real observers


@dataclass
class Run:
    """A started Watcher on fresh run folders, with what it reported."""

    input_dir: Path
    output_dir: Path
    outside: Path  # a sibling folder nobody watches
    watcher: Watcher
    events: asyncio.Queue[FsEvent]
    lost: asyncio.Queue[str]

    async def collect(
        self, done: Callable[[list[FsEvent]], bool], timeout_s: float = TIMEOUT_S
    ) -> list[FsEvent]:
        """Events in arrival order, until `done(events so far)` holds."""
        seen: list[FsEvent] = []
        try:
            async with asyncio.timeout(timeout_s):
                while not done(seen):
                    seen.append(await self.events.get())
        except TimeoutError:
            pytest.fail(f"gave up after {timeout_s}s; events so far: {seen}")
        return seen

    async def changes_of(self, name: str, wanted: set[Change]) -> set[Change]:
        """Collect until every change in `wanted` has been seen for `name`; all its changes."""
        events = await self.collect(lambda seen: wanted <= changes(seen, name))
        return changes(events, name)

    async def until_name(self, name: str) -> list[FsEvent]:
        """Events up to and including the first one about `name`."""
        return await self.collect(lambda seen: bool(seen) and seen[-1].name == name)

    async def next_lost(self) -> str:
        return await asyncio.wait_for(self.lost.get(), TIMEOUT_S)


def changes(events: list[FsEvent], name: str) -> set[Change]:
    return {e.change for e in events if e.name == name}


class RunFactory(Protocol):
    def __call__(self, *, polling: bool = False) -> Awaitable[Run]: ...


@pytest.fixture
async def make_run(tmp_path: Path) -> AsyncIterator[RunFactory]:
    """Start Watchers on run folders under tmp_path; stop them all at the end."""
    watchers: list[Watcher] = []

    async def make(*, polling: bool = False) -> Run:
        base = tmp_path / f"run{len(watchers)}"
        input_dir, output_dir, outside = base / "input", base / "output", base / "outside"
        for folder in (input_dir, output_dir / "pass", output_dir / "fail", outside):
            folder.mkdir(parents=True)
        events: asyncio.Queue[FsEvent] = asyncio.Queue()
        lost: asyncio.Queue[str] = asyncio.Queue()
        watcher = Watcher(
            input_dir,
            output_dir,
            on_event=events.put_nowait,
            on_lost=lost.put_nowait,
            loop=asyncio.get_running_loop(),
            polling=polling,
            poll_interval_s=0.1,
        )
        watcher.start()
        watchers.append(watcher)
        return Run(input_dir, output_dir, outside, watcher, events, lost)

    yield make
    for watcher in watchers:
        watcher.stop()


@pytest.fixture
async def run(make_run: RunFactory) -> Run:
    return await make_run()


async def test_a_pod5_written_in_input_gives_created_and_closed(run: Run) -> None:
    write_pod5(run.input_dir / "a.pod5", 2)

    events = await run.collect(
        lambda seen: {Change.CREATED, Change.CLOSED} <= changes(seen, "a.pod5")
    )

    assert {(e.area, e.name) for e in events} == {(Area.INPUT, "a.pod5")}


async def test_a_pod5_written_in_pieces_gives_modified_then_closed(run: Run) -> None:
    for _ in write_pod5_in_pieces(run.input_dir / "slow.pod5", 3, pieces=4):
        pass

    seen = await run.changes_of("slow.pod5", {Change.CREATED, Change.MODIFIED, Change.CLOSED})
    assert Change.MOVED_IN not in seen


async def test_a_rename_in_from_an_unwatched_folder_is_moved_in(run: Run) -> None:
    write_pod5(run.outside / "b.pod5", 1)
    (run.outside / "b.pod5").rename(run.input_dir / "b.pod5")

    assert await run.changes_of("b.pod5", {Change.MOVED_IN}) == {Change.MOVED_IN}


async def test_a_rename_from_a_staging_name_is_moved_in_of_the_final_name(run: Run) -> None:
    staging = run.input_dir / ".reactor-staging-1.pod5"
    write_pod5(staging, 1)
    staging.rename(run.input_dir / "c.pod5")

    events = await run.until_name("c.pod5")
    assert [(e.change, e.name) for e in events] == [(Change.MOVED_IN, "c.pod5")]


async def test_deleting_a_pod5_gives_gone(run: Run) -> None:
    path = run.outside / "d.pod5"
    write_pod5(path, 1)
    path.rename(run.input_dir / "d.pod5")
    await run.changes_of("d.pod5", {Change.MOVED_IN})

    (run.input_dir / "d.pod5").unlink()

    assert await run.changes_of("d.pod5", {Change.GONE}) == {Change.GONE}


async def test_moving_a_pod5_out_gives_gone(run: Run) -> None:
    path = run.outside / "e.pod5"
    path.write_bytes(b"x")
    path.rename(run.input_dir / "e.pod5")
    await run.changes_of("e.pod5", {Change.MOVED_IN})

    (run.input_dir / "e.pod5").rename(run.outside / "e.pod5")

    assert await run.changes_of("e.pod5", {Change.GONE}) == {Change.GONE}


async def test_hidden_files_other_names_folders_and_subfolders_give_nothing(run: Run) -> None:
    (run.input_dir / ".hidden.pod5").write_bytes(b"x")
    (run.input_dir / "notes.txt").write_bytes(b"x")
    (run.input_dir / "x.pod5.part").write_bytes(b"x")
    (run.input_dir / "folder.pod5").mkdir()
    assigned = run.input_dir / "ASSIGNED_1_e1"
    assigned.mkdir()
    (assigned / "linked.pod5").symlink_to(run.outside / "target.pod5")
    (run.input_dir / "sentinel.pod5").write_bytes(b"x")

    events = await run.until_name("sentinel.pod5")

    assert {e.name for e in events} == {"sentinel.pod5"}


async def test_a_thousand_files_renamed_in_at_once_are_all_seen(run: Run) -> None:
    data = pod5_bytes(1, seed=3)
    names = [f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5" for i in range(1000)]
    for name in names:
        (run.outside / name).write_bytes(data)
    for name in names:
        (run.outside / name).rename(run.input_dir / name)

    wanted = set(names)
    events = await run.collect(
        lambda seen: wanted <= {e.name for e in seen if e.change is Change.MOVED_IN},
        timeout_s=10.0,
    )
    assert run.lost.empty()
    assert {e.name for e in events} == wanted


async def test_outputs_in_pass_and_fail_are_results(run: Run) -> None:
    (run.output_dir / "pass" / "sequencing_summary.txt").write_text("x")
    (run.output_dir / "pass" / "PAK00000_pass_abcdef12_0123abcd_0.fastq").write_text("@r\n")
    (run.output_dir / "fail" / "calls.bam").write_bytes(b"BAM")

    events = await run.collect(
        lambda seen: (
            {"PAK00000_pass_abcdef12_0123abcd_0.fastq", "calls.bam"}
            <= {e.name for e in seen if e.change is Change.CLOSED}
        )
    )

    assert {e.area for e in events} == {Area.RESULTS}
    assert "sequencing_summary.txt" not in {e.name for e in events}


async def test_a_merged_output_renamed_into_place_is_moved_in(run: Run) -> None:
    staging = run.output_dir / "pass" / ".reactor-staging-7.fastq"
    staging.write_text("@r\n")
    staging.rename(run.output_dir / "pass" / "job_id_7_x.fastq")

    events = await run.until_name("job_id_7_x.fastq")
    assert [(e.area, e.change) for e in events] == [(Area.RESULTS, Change.MOVED_IN)]


async def test_job_folders_in_output_are_not_watched(run: Run) -> None:
    """Three watches, however many jobs write: watchdog runs a thread per watch, and
    thousands of job threads would take the interpreter's time from the event loop."""
    job_dir = run.output_dir / "TMPOUTPUT_7_e1"
    (job_dir / "pass").mkdir(parents=True)
    (job_dir / "pass" / "x.fastq").write_text("@r\n")
    (job_dir / "engine.log").write_text("x")
    (run.output_dir / "pass" / "sentinel.fastq").write_text("@r\n")

    events = await run.until_name("sentinel.fastq")

    assert {e.name for e in events} == {"sentinel.fastq"}
    assert run.watcher._observer is not None
    assert len(run.watcher._observer.emitters) == 3


async def test_the_polling_observer_sees_a_new_file_and_its_deletion(
    make_run: RunFactory,
) -> None:
    run = await make_run(polling=True)
    write_pod5(run.input_dir / "p.pod5", 1)
    assert Change.CREATED in await run.changes_of("p.pod5", {Change.CREATED})

    (run.input_dir / "p.pod5").unlink()
    assert Change.GONE in await run.changes_of("p.pod5", {Change.GONE})


async def test_the_polling_observer_reports_a_rename_in_as_created(make_run: RunFactory) -> None:
    """No close events, no move pairing across folders: the settle timer has to cope."""
    run = await make_run(polling=True)
    (run.outside / "q.pod5").write_bytes(b"x")
    (run.outside / "q.pod5").rename(run.input_dir / "q.pod5")

    assert await run.changes_of("q.pod5", {Change.CREATED}) == {Change.CREATED}


# ---------------------------------------------------------------- lost events


async def test_watchdogs_overflow_warning_is_reported_as_lost_events(run: Run) -> None:
    logging.getLogger(OVERFLOW_LOGGER).warning(
        "Inotify queue overflowed; filesystem events were lost"
    )

    assert await run.next_lost() == LOST_OVERFLOW


async def test_a_real_overflow_event_from_the_kernel_is_reported(run: Run) -> None:
    """Feed IN_Q_OVERFLOW to watchdog's own inotify reader: proves the message still matches."""
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, WatchDescriptor

    reader = getattr(run.watcher._observer, "_inotify_fd", None)
    if reader is None:
        skip_for_missing_tool("not the inotify observer: watchdog found no inotify here")
    reader.handle_event(InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b""))

    assert await run.next_lost() == LOST_OVERFLOW


async def test_other_watchdog_warnings_are_not_lost_events(run: Run) -> None:
    logger = logging.getLogger(OVERFLOW_LOGGER)
    logger.warning("something else")
    logger.warning("Inotify queue overflowed; filesystem events were lost")

    assert await run.next_lost() == LOST_OVERFLOW
    assert run.lost.empty()


async def test_the_overflow_hook_works_when_logging_disabled_the_logger(
    make_run: RunFactory,
) -> None:
    """logging.config.dictConfig disables existing loggers by default."""
    logger = logging.getLogger(OVERFLOW_LOGGER)
    logger.disabled = True
    try:
        run = await make_run()
        logger.warning("Inotify queue overflowed; filesystem events were lost")
        assert await run.next_lost() == LOST_OVERFLOW

        run.watcher.stop()
        assert logger.disabled  # put back as found
    finally:
        logger.disabled = False


async def test_stop_removes_the_overflow_hook_and_delivers_nothing_more(
    make_run: RunFactory,
) -> None:
    logger = logging.getLogger(OVERFLOW_LOGGER)
    handlers_before = list(logger.handlers)
    run = await make_run()
    assert len(logger.handlers) == len(handlers_before) + 1
    (run.input_dir / "late.pod5").write_bytes(b"x")

    run.watcher.stop()
    logger.warning("Inotify queue overflowed; filesystem events were lost")
    await loop_turn()

    assert logger.handlers == handlers_before
    assert run.lost.empty()
    assert run.events.empty()  # events already queued on the loop are dropped too
    assert not run.watcher.alive
    run.watcher.stop()  # idempotent


async def test_check_health_leaves_a_healthy_observer_alone(run: Run) -> None:
    assert run.watcher.alive
    run.watcher.check_health()
    assert run.lost.empty()


async def test_check_health_restarts_a_dead_observer_with_all_watches(run: Run) -> None:
    observer = run.watcher._observer
    assert observer is not None
    observer.stop()  # as if its thread had died
    observer.join(TIMEOUT_S)
    assert not run.watcher.alive

    run.watcher.check_health()

    assert await run.next_lost() == LOST_RESTARTED
    assert run.watcher.alive
    (run.input_dir / "after.pod5").write_bytes(b"x")
    (run.output_dir / "fail" / "after.fastq").write_text("@r\n")
    events = await run.collect(lambda seen: {"after.pod5", "after.fastq"} <= {e.name for e in seen})
    assert {(e.area, e.name) for e in events} == {
        (Area.INPUT, "after.pod5"),
        (Area.RESULTS, "after.fastq"),
    }


async def test_a_restart_found_on_a_worker_thread_is_reported_on_the_loop(
    tmp_path: Path,
) -> None:
    """The app runs check_health on a worker thread; the loss it reports must reach its
    owner on the loop's thread, where the reconcile that answers it touches the state."""
    for folder in ("input", "output/pass", "output/fail"):
        (tmp_path / folder).mkdir(parents=True)
    loop = asyncio.get_running_loop()
    reported: asyncio.Future[tuple[str, int]] = loop.create_future()

    def on_lost(reason: str) -> None:
        reported.set_result((reason, threading.get_ident()))

    watcher = Watcher(
        tmp_path / "input", tmp_path / "output", on_event=print, on_lost=on_lost, loop=loop
    )
    watcher.start()
    try:
        observer = watcher._observer
        assert observer is not None
        observer.stop()  # as if its thread had died
        observer.join(TIMEOUT_S)
        await asyncio.to_thread(watcher.check_health)
        async with asyncio.timeout(TIMEOUT_S):
            reason, thread = await reported
    finally:
        watcher.stop()
    assert (reason, thread) == (LOST_RESTARTED, threading.get_ident())


async def test_check_health_waits_for_a_deleted_input_folder_to_come_back(run: Run) -> None:
    run.input_dir.rmdir()
    # The input emitter stops itself once inotify reports the deletion.
    for _ in range(int(TIMEOUT_S / 0.01)):
        try:
            run.watcher.check_health()
        except FileNotFoundError:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("check_health never noticed that the input folder was deleted")
    assert not run.watcher.alive

    run.input_dir.mkdir()
    run.watcher.check_health()
    assert await run.next_lost() == LOST_RESTARTED
    (run.input_dir / "back.pod5").write_bytes(b"x")
    assert Change.CREATED in await run.changes_of("back.pod5", {Change.CREATED})


async def test_start_refuses_missing_folders_and_a_second_start(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    handlers_before = list(logging.getLogger(OVERFLOW_LOGGER).handlers)
    (tmp_path / "input").mkdir()
    watcher = Watcher(
        tmp_path / "input", tmp_path / "output", on_event=print, on_lost=print, loop=loop
    )
    with pytest.raises(FileNotFoundError, match="pass"):
        watcher.start()
    assert logging.getLogger(OVERFLOW_LOGGER).handlers == handlers_before

    (tmp_path / "output" / "pass").mkdir(parents=True)
    (tmp_path / "output" / "fail").mkdir()
    watcher.start()
    try:
        with pytest.raises(RuntimeError):
            watcher.start()
    finally:
        watcher.stop()


async def test_reading_files_costs_no_events(
    make_run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel is asked only for the events the bridge maps: reading a `.pod5` (the
    start-up scan's signature check, an engine's basecaller) raises none at all."""
    raw: list[str] = []
    real_dispatch = EventBridge.dispatch

    def recording(self: EventBridge, event: FileSystemEvent) -> None:
        raw.append(type(event).__name__)
        real_dispatch(self, event)

    monkeypatch.setattr(EventBridge, "dispatch", recording)
    names = [f"r{i}.pod5" for i in range(20)]
    base = await make_run()
    for name in names:
        write_pod5(base.outside / name, 1)
        (base.outside / name).rename(base.input_dir / name)
    await base.collect(lambda seen: {e.name for e in seen} >= set(names))
    raw.clear()
    for name in names:
        (base.input_dir / name).read_bytes()
    write_pod5(base.input_dir / "sentinel.pod5", 1)
    await base.changes_of("sentinel.pod5", {Change.CLOSED})
    assert raw, "the sentinel's own events were recorded"
    assert not {"FileOpenedEvent", "FileClosedNoWriteEvent", "DirModifiedEvent"} & set(raw), raw
