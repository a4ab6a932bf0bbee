"""Live ingestion through the real app with a real watchdog observer on tmp folders."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from reactor.core.state import FileState
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from reactor.serve.watcher import Watcher
from tests.support.pod5files import pod5_bytes, write_pod5, write_pod5_in_pieces
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
WAIT_S = 10.0


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> Callable[..., Awaitable[Client]]:
    async def make(**overrides: Any) -> Client:
        config = run_dirs.config(**overrides)
        return await aiohttp_client(create_app(config, clock=clock, sweep=False))

    return make


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition` holds; fail after WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def state_of(client: Client, name: str) -> FileState | None:
    return client.server.app[REACTOR].state.state_of(name)


async def assign(client: Client, batchsize: int = 10) -> list[str]:
    response = await client.get("/assignwork", params={"engineid": "e", "batchsize": batchsize})
    assert response.status == 200
    batch: list[str] = (await response.json())["batch"]
    return batch


async def test_file_written_in_pieces_is_not_assigned_until_complete(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """While a .pod5 lacks its trailing signature it is never handed out; its close makes it
    ready at once."""
    client = await make_client()
    path = run_dirs.input_dir / "PAK00000_pass_abc_def_0.pod5"
    pieces = write_pod5_in_pieces(path, n_reads=3, pieces=4, seed=7)
    for _written in pieces:
        await eventually(lambda: state_of(client, path.name) is not None, "file seen")
        assert await assign(client) == []
        assert state_of(client, path.name) is FileState.INCOMPLETE
    # the generator closed the file (close-after-write): now it is complete
    await eventually(lambda: state_of(client, path.name) is FileState.READY, "file ready")
    assert await assign(client) == [path.name]


async def test_file_renamed_in_is_ready_at_once(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, tmp_path: Path
) -> None:
    client = await make_client()
    staged = tmp_path / "staged.pod5"
    write_pod5(staged, n_reads=2, seed=1)
    staged.rename(run_dirs.input_dir / "moved.pod5")
    await eventually(lambda: state_of(client, "moved.pod5") is FileState.READY, "moved ready")
    assert await assign(client) == ["moved.pod5"]


async def test_thousand_files_dropped_at_once_are_all_seen(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, tmp_path: Path
) -> None:
    client = await make_client()
    data = pod5_bytes(n_reads=1, seed=3)
    staging = tmp_path / "staging"
    staging.mkdir()
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(1000)]
    for name in names:
        (staging / name).write_bytes(data)
    for name in names:
        (staging / name).rename(run_dirs.input_dir / name)
    reactor = client.server.app[REACTOR]
    await eventually(lambda: reactor.state.counts()[FileState.READY] == 1000, "all 1000 ready")
    handed_out = await assign(client, batchsize=2000)
    assert sorted(handed_out) == sorted(names)


async def test_deleted_ready_file_leaves_the_queue(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    write_pod5(run_dirs.input_dir / "a.pod5", n_reads=1, seed=1)
    write_pod5(run_dirs.input_dir / "b.pod5", n_reads=1, seed=2)
    client = await make_client()
    assert state_of(client, "a.pod5") is FileState.READY
    (run_dirs.input_dir / "a.pod5").unlink()
    await eventually(lambda: state_of(client, "a.pod5") is None, "a.pod5 forgotten")
    assert await assign(client) == ["b.pod5"]


async def test_files_present_at_start_are_queued_oldest_first(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    for i, name in enumerate(["c.pod5", "a.pod5", "b.pod5"]):
        write_pod5(run_dirs.input_dir / name, n_reads=1, seed=i)
        os.utime(run_dirs.input_dir / name, (1_000_000 + i, 1_000_000 + i))
    (run_dirs.input_dir / "notes.txt").write_text("not a pod5")
    (run_dirs.input_dir / ".hidden.pod5").write_bytes(pod5_bytes(1, seed=9))
    client = await make_client()
    assert await assign(client) == ["c.pod5", "a.pod5", "b.pod5"]


async def test_output_named_after_a_pod5_marks_it_done_live(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """The seed's rule, live: a FASTQ appearing in pass/ with a .pod5's stem marks it done."""
    write_pod5(run_dirs.input_dir / "x.pod5", n_reads=1, seed=1)
    client = await make_client()
    # an output that matches no .pod5 (dorado's names) invents no file
    (run_dirs.output_dir / "pass" / "job_id_7_calls_0.fastq").write_text("@r\nA\n+\n!\n")
    (run_dirs.output_dir / "pass" / "x.fastq").write_text("@r\nA\n+\n!\n")
    await eventually(lambda: state_of(client, "x.pod5") is FileState.DONE, "x.pod5 done")
    assert await assign(client) == []
    assert sum(client.server.app[REACTOR].state.counts().values()) == 1
    assert state_of(client, "calls_0.pod5") is None


async def test_live_jobs_add_no_threads(
    make_client: Callable[..., Awaitable[Client]],
    run_dirs: RunDirs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's thread count does not grow with its live jobs: job folders are not
    watched (a watch per live job would be a watchdog thread per job, thousands of
    them under load, taking the interpreter's time from the event loop)."""
    jobs = 50
    data = pod5_bytes(n_reads=1, seed=1)
    for k in range(jobs + 1):
        (run_dirs.input_dir / f"PAK00000_pass_abc_def_{k}.pod5").write_bytes(data)
    loop = asyncio.get_running_loop()
    checked: asyncio.Queue[None] = asyncio.Queue()
    real_check_health = Watcher.check_health

    def check_health_then_tell(watcher: Watcher) -> None:
        real_check_health(watcher)
        loop.call_soon_threadsafe(checked.put_nowait, None)

    monkeypatch.setattr(Watcher, "check_health", check_health_then_tell)
    client = await make_client()
    health_check = client.server.app[SWEEPER].health_check
    assert health_check is not None

    async def threads_once_the_watch_worker_is_idle() -> int:
        # The app changes its watcher on one worker thread, in order: once a health check
        # queued now has run, so has everything the assignments before it queued there.
        health_check()
        async with asyncio.timeout(WAIT_S):
            await checked.get()
        return threading.active_count()

    assert len(await assign(client, batchsize=1)) == 1
    before = await threads_once_the_watch_worker_is_idle()
    for _ in range(jobs):
        assert len(await assign(client, batchsize=1)) == 1
    after = await threads_once_the_watch_worker_is_idle()

    assert len(list(client.server.app[REACTOR].state.live_jobs())) == jobs + 1
    assert after <= before + 2, f"threads: {before} with 1 live job, {after} with {jobs + 1}"


async def test_polling_observer_settles_a_file_without_close_events(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, clock: ManualClock
) -> None:
    """With the polling observer (NFS) there are no close events: a file completed in place
    becomes ready when the settle timer re-checks it."""
    client = await make_client(observer="polling", poll_interval=0.05, settle_seconds=2.0)
    path = run_dirs.input_dir / "slow.pod5"
    data = pod5_bytes(n_reads=2, seed=5)
    with open(path, "wb") as out:
        out.write(data[: len(data) // 2])
        out.flush()
        await eventually(lambda: state_of(client, "slow.pod5") is not None, "polled")
        assert state_of(client, "slow.pod5") is FileState.INCOMPLETE
        out.write(data[len(data) // 2 :])
    sweeper = client.server.app[SWEEPER]
    await sweeper.sweep_once(clock.advance(1.0))  # not quiet for settle_seconds yet
    assert state_of(client, "slow.pod5") in (FileState.INCOMPLETE, FileState.READY)
    await sweeper.sweep_once(clock.advance(5.0))
    assert state_of(client, "slow.pod5") is FileState.READY


async def test_lost_events_trigger_a_reconcile(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """When the kernel drops events (watchdog only logs the inotify overflow), the watcher
    reports the loss and a reconcile scan finds the file no event announced."""
    client = await make_client()
    reactor = client.server.app[REACTOR]
    write_pod5(run_dirs.input_dir / "late.pod5", n_reads=1, seed=2)
    await eventually(lambda: reactor.state.state_of("late.pod5") is not None, "seen")
    reactor.state.file_gone("late.pod5", reactor.clock())  # as if its events were dropped
    before = reactor.reconciles
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    await eventually(lambda: reactor.reconciles > before, "reconcile after overflow")
    assert reactor.state.state_of("late.pod5") is FileState.READY


async def test_an_overflow_storm_in_the_service_costs_one_scan(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """Through the real app: 200 overflow warnings from watchdog are answered by one
    reconcile, which takes every report with it (so no second scan is left to come)."""
    client = await make_client()
    reactor = client.server.app[REACTOR]
    before = reactor.reconciles
    with capture_logs() as logs:
        for _ in range(200):
            logging.getLogger("watchdog.observers.inotify_c").warning(
                "Inotify queue overflowed; filesystem events were lost"
            )
        await eventually(lambda: reactor.reconciles > before, "reconcile after the storm")
    assert reactor.reconciles == before + 1
    debounced = [entry for entry in logs if entry["event"] == "reconcile_debounced"]
    assert [(e["reasons"], e["reports"]) for e in debounced] == [(["inotify_overflow"], 200)]


async def test_a_file_written_during_start_up_is_seen_without_a_second_scan(
    aiohttp_client: AiohttpClient,
    run_dirs: RunDirs,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The observer watches before the scan lists INPUTDIR: a file that lands just after
    the listing arrives as a held event, delivered once recovery is done (no reconcile)."""
    from reactor.serve.service import Reactor
    from reactor.serve.start_scan import StartScan

    real_slices = StartScan.slices

    def scan_then_a_file_lands(self: StartScan, *args: Any) -> Iterator[int]:
        yield from real_slices(self, *args)
        write_pod5(run_dirs.input_dir / "late.pod5", n_reads=1, seed=7)

    monkeypatch.setattr(StartScan, "slices", scan_then_a_file_lands)
    reconciles: list[str] = []
    monkeypatch.setattr(Reactor, "reconcile", lambda _self, reason: reconciles.append(reason))
    client = await aiohttp_client(create_app(run_dirs.config(), clock=clock, sweep=False))
    await eventually(lambda: state_of(client, "late.pod5") is FileState.READY, "late.pod5 ready")
    assert reconciles == []


def test_held_events_are_delivered_in_order_once_released() -> None:
    """Before release: held (and a lost-events signal noted once); release delivers
    them in order, then the reconcile; after hold() nothing is delivered."""
    from reactor.core.events import Area, Change, FsEvent
    from reactor.serve.held_events import HeldEvents

    delivered: list[str] = []
    lost: list[str] = []
    events = HeldEvents(lambda e: delivered.append(e.name), lost.append)
    first, second = (FsEvent(Area.INPUT, Change.CLOSED, n, 0.0) for n in ("a.pod5", "b.pod5"))
    events.on_event(first)
    events.on_lost("overflow")
    events.on_lost("overflow")
    events.on_event(second)
    assert (delivered, lost) == ([], [])
    assert events.release() == 2
    assert (delivered, lost) == (["a.pod5", "b.pod5"], ["overflow"])
    events.on_event(FsEvent(Area.INPUT, Change.CLOSED, "c.pod5", 0.0))
    assert delivered[-1] == "c.pod5"
    events.hold()
    events.on_event(FsEvent(Area.INPUT, Change.CLOSED, "d.pod5", 0.0))
    assert delivered[-1] == "c.pod5"
