"""Serving during the start-up scan (docs/journal.md, "Serving during the start-up scan"):
files go out before the service is ready, never twice, across a crash in that window too."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from reactor.commands.serve import _early_lister
from reactor.core.events import Area, Change, FsEvent
from reactor.core.names import INPUT_STAGING_NAME
from reactor.core.state import FileState, Job
from reactor.disk.input_lister import spawn
from reactor.disk.journal import Journal
from reactor.disk.signature import POD5_SIGNATURE
from reactor.serve.app import create_app
from reactor.serve.finisher import Finisher
from reactor.serve.service import Reactor, StartupError
from reactor.serve.start_scan import ChildLister, StartScan
from reactor.serve.watcher import Watcher
from tests.support.api import MakeClient
from tests.support.runs import ManualClock, RunDirs
from tests.support.started import STARTED

LEASE_S = 60.0
pytestmark = pytest.mark.usefixtures("stop_started_reactors")


def add_files(dirs: RunDirs, count: int) -> list[str]:
    names = [f"f{n:03}.pod5" for n in range(count)]
    for name in names:
        (dirs.input_dir / name).write_bytes(POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE)
    return names


def begun(dirs: RunDirs, clock: ManualClock, first_id: int = 1, *, child: bool = False) -> Reactor:
    """A reactor that has recovered and serves, its scan not started (with `child`, its
    looks under way in a child process, as `reactor serve` starts them)."""
    numbers = itertools.count(first_id)
    config = dirs.config(report_back_interval=LEASE_S)
    reactor = Reactor(
        config, clock=clock, job_id_factory=lambda: str(next(numbers)), scan_child=child
    )
    reactor.begin()
    STARTED.append(reactor)
    return reactor


def begun_after(
    dirs: RunDirs,
    clock: ManualClock,
    program: list[str] | None = None,
    *,
    before: Callable[[subprocess.Popen[bytes]], None] = lambda _process: None,
    first_id: int = 1,
) -> Reactor:
    """A reactor begun with a child started before it (as `reactor serve` starts one,
    before its imports and its watch; `program`: the child's command line), `before`
    done in between: `begin` tells the child its watch is up and takes its report."""
    config = dirs.config(report_back_interval=LEASE_S)  # pass/ and fail/ made, as serve does
    process, report = spawn(dirs.input_dir, dirs.output_dir, until_watched=True, program=program)
    lister = ChildLister(process, report)
    try:
        before(process)
    except BaseException:
        lister.stop()
        raise
    numbers = itertools.count(first_id)
    reactor = Reactor(config, clock=clock, job_id_factory=lambda: str(next(numbers)), lister=lister)
    reactor.begin()
    STARTED.append(reactor)
    return reactor


def slices(reactor: Reactor, size: int) -> Iterator[int]:
    scan = reactor._scan
    assert scan is not None
    return scan.slices(size)


async def test_a_file_goes_out_before_the_scan_ends_and_the_service_is_ready(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """After one slice, an engine gets a batch while the service is not ready yet; the
    rest of the scan never queues that file again."""
    names = add_files(run_dirs, 20)
    reactor = begun(run_dirs, clock)
    assert (reactor.ready, reactor.scanning, reactor.phase) == (False, True, "scanning")
    scanning = slices(reactor, 4)
    next(scanning)
    job = await reactor.assign("e1", 3)
    assert job is not None and len(job.files) == 3
    assert not reactor.ready
    for _ in scanning:
        pass
    await reactor.scan()  # what is left: the end of the scan
    assert (reactor.ready, reactor.scanning, reactor.phase) == (True, False, "running")
    counts = reactor.count_fields()
    assert (counts["assigned"], counts["ready"]) == (3, 17)
    assert set(reactor.state.ready_names()).isdisjoint(job.files)
    assert set(reactor.state.files) == set(names)


async def test_the_scan_queues_oldest_first_once_it_ends(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Files go out in listing order during the scan, and oldest first after it."""
    names = add_files(run_dirs, 12)
    for age, name in enumerate(names):  # f000 the newest
        os.utime(run_dirs.input_dir / name, (1_000_000 - age, 1_000_000 - age))
    reactor = begun(run_dirs, clock)
    await reactor.scan()
    assert list(reactor.state.ready_names()) == list(reversed(names))


async def test_no_file_goes_out_twice_across_a_crash_during_the_scan(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """A batch handed out during the scan, then the process dies: the next start knows
    the job before it serves, and hands out every other file once."""
    add_files(run_dirs, 30)
    first = begun(run_dirs, clock)
    next(slices(first, 5))
    early = await first.assign("e1", 4)
    assert early is not None
    await first.writer.stop()  # the process dies mid-scan: what is on disk stays
    STARTED.remove(first)
    second = begun(run_dirs, clock, first_id=100)
    assert all(second.state.state_of(n) is FileState.ASSIGNED for n in early.files)
    handed: list[str] = []
    scanning = slices(second, 3)
    while True:
        job = await second.assign("e2", 2)
        if job is not None:
            handed.extend(job.files)
        if next(scanning, None) is None and job is None:
            break
    await second.scan()
    while (job := await second.assign("e2", 5)) is not None:
        handed.extend(job.files)
    assert len(handed) == len(set(handed)) == 26
    assert set(handed).isdisjoint(early.files)


async def test_a_live_jobs_missing_file_is_not_requeued_during_the_scan(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Presence of a live job's files is looked up before serving: an expiry during the
    scan requeues the files that are there and drops the one that is gone."""
    job = await stopped_with_a_live_job(run_dirs, clock, 6)
    gone, kept = sorted(job.files)
    (run_dirs.input_dir / gone).unlink()
    second = begun(run_dirs, clock, first_id=100)
    assert second.scanning
    assert (second.state.files[gone].present, second.state.files[kept].present) == (False, True)
    clock.advance(LEASE_S + 1)
    await second.expire_due(clock())
    assert second.state.state_of(kept) is FileState.READY
    assert second.state.state_of(gone) is None


async def test_the_run_never_ends_while_the_scan_goes_on(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finisher counts the scan as a file still waiting."""
    reactor = begun(run_dirs, clock)
    finisher = Finisher(reactor)
    assert finisher._pending() == 1
    await reactor.scan()
    assert finisher._pending() == 0


def test_a_scan_slice_yields_the_entries_seen(run_dirs: RunDirs, clock: ManualClock) -> None:
    """`slices` yields every `size` entries."""
    add_files(run_dirs, 7)
    reactor = Reactor(run_dirs.config(), clock=clock)
    reactor._begin()
    scan = reactor._scan
    assert isinstance(scan, StartScan)
    assert list(scan.slices(3)) == [3, 6]


async def test_readyz_says_scanning_while_assignwork_answers(
    make_client: MakeClient, run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP, while the scan waits: /readyz 503 saying the scan goes on, /status in
    phase scanning, /assignwork answering; once the scan ends, 200 and phase running."""
    add_files(run_dirs, 3)
    go = asyncio.Event()
    real_scan = Reactor.scan

    async def held_scan(self: Reactor) -> None:
        await go.wait()
        await real_scan(self)

    monkeypatch.setattr(Reactor, "scan", held_scan)
    client = await make_client()
    reply = await client.get("/readyz")
    assert reply.status == 503
    assert "start-up scan" in (await reply.json())["detail"]
    assert (await (await client.get("/status")).json())["phase"] == "scanning"
    work = await client.get("/assignwork", params={"engineid": "gpu-0", "batchsize": "2"})
    assert work.status == 200  # nothing seen yet: an empty answer, not an error
    go.set()
    async with asyncio.timeout(5):
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.01)
    assert (await (await client.get("/status")).json())["phase"] == "running"
    work = await client.get("/assignwork", params={"engineid": "gpu-0", "batchsize": "2"})
    assert len((await work.json())["batch"]) == 2


# ------------------------------------------------- what recovery leaves to the scan


def recovery_repairs(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["repair"], e["folder"]) for e in logs if e["event"] == "recovery_repair"]


async def stopped_with_a_live_job(dirs: RunDirs, clock: ManualClock, files: int) -> Job:
    """`files` files, a first start that scans them all and hands 2 to "e1", then a clean
    stop: the job is live on disk for the next start."""
    add_files(dirs, files)
    first = begun(dirs, clock)
    await first.scan()
    job = await first.assign("e1", 2)
    assert job is not None
    await first.stop()
    STARTED.remove(first)
    return job


async def ran_once(dirs: RunDirs, clock: ManualClock) -> None:
    """A first start and stop: the state folder exists (a later start takes no run over)."""
    reactor = begun(dirs, clock, first_id=900)
    await reactor.stop()
    STARTED.remove(reactor)


async def test_recovery_does_not_list_the_input_folder_of_a_single_run(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live job's folder is looked up by the name its record gives it: recovery lists
    neither INPUTDIR nor its own staging folder's parent (the scan lists INPUTDIR)."""
    job = await stopped_with_a_live_job(run_dirs, clock, 4)
    real_scandir = os.scandir
    listed: list[str] = []

    def scandir(path: Any = ".") -> Any:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr("reactor.disk.recovery.os.scandir", scandir)
    second = begun(run_dirs, clock, first_id=100)
    assert str(run_dirs.input_dir) not in listed
    assert [j.job_id for j in second.state.live_jobs()] == [job.job_id]
    assert all(second.state.state_of(n) is FileState.ASSIGNED for n in job.files)


async def test_a_folder_of_links_without_a_record_is_found_by_the_scan_and_left_alone(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """A stray `ASSIGNED_` folder (no record names its job) is reported by the start-up
    scan as recovery reported it (`links_without_record`), left where it is, and the
    files it links to are queued like any other."""
    names = add_files(run_dirs, 3)
    await ran_once(run_dirs, clock)
    stray = run_dirs.input_dir / "ASSIGNED_424242_someone"
    stray.mkdir()
    (stray / names[0]).symlink_to(f"../{names[0]}")
    with capture_logs() as logs:
        reactor = begun(run_dirs, clock)
        assert recovery_repairs(logs) == []  # not before serving: the scan finds it
        await reactor.scan()
    assert recovery_repairs(logs) == [("links_without_record", stray.name)]
    assert (stray / names[0]).is_symlink()
    assert reactor.count_fields()["ready"] == 3


async def test_a_job_assigned_during_the_scan_is_not_taken_for_a_stray(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """The scan may meet the `ASSIGNED_` folder of a job made while it runs (a listing
    may or may not show entries made during it): that job is the service's own, not a
    folder without a record."""
    add_files(run_dirs, 8)
    reactor = begun(run_dirs, clock)
    scanning = slices(reactor, 4)
    next(scanning)
    job = await reactor.assign("e1", 2)
    assert job is not None
    scan = reactor._scan
    assert scan is not None
    met: list[str] = []
    with capture_logs() as logs, os.scandir(run_dirs.input_dir) as entries:
        for entry in entries:
            if not entry.name.endswith(".pod5"):
                met.append(entry.name)
                # what the scan does with each entry that is not a .pod5
                scan.others(entry.name, entry.is_dir(follow_symlinks=False))
    assert reactor.journal.input_folder(job).name in met
    assert recovery_repairs(logs) == []


async def test_staging_leftovers_in_the_input_folder_are_removed(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """What a crash left in the journal's staging folder goes before serving (looked up
    by name); another `.reactor-staging-*` entry (an older version's) goes when the scan
    meets it; the staging folder itself stays."""
    add_files(run_dirs, 2)
    await ran_once(run_dirs, clock)
    staging = run_dirs.input_dir / INPUT_STAGING_NAME
    (staging / "77").mkdir(parents=True)
    (staging / "77" / "f000.pod5").symlink_to("../f000.pod5")
    older = run_dirs.input_dir / ".reactor-staging-12"
    older.mkdir()
    (older / "f001.pod5").symlink_to("../f001.pod5")
    with capture_logs() as logs:
        reactor = begun(run_dirs, clock)
        assert recovery_repairs(logs) == [("staging_removed", f"{INPUT_STAGING_NAME}/77")]
        assert list(staging.iterdir()) == []
        assert older.is_dir()
        await reactor.scan()
    assert recovery_repairs(logs)[1:] == [("staging_removed", older.name)]
    assert not older.exists() and staging.is_dir()
    assert reactor.count_fields()["ready"] == 2


# ------------------------------------------------- the looks made by a child process


async def mixed_run_folders(
    dirs: RunDirs, other: RunDirs, clock: ManualClock, outside: Path
) -> None:
    """Two runs on one INPUTDIR, started once: whole and half-written files with
    distinct ages, one done by an output in both, a link inside INPUTDIR and one leading
    out of it, a folder of links that no record names."""
    names = add_files(dirs, 40)
    for number, name in enumerate(names):
        os.utime(dirs.input_dir / name, (1_000 + (number * 7) % 40, 1_000 + (number * 7) % 40))
    (dirs.input_dir / "half.pod5").write_bytes(POD5_SIGNATURE + b"\0" * 32)
    (dirs.output_dir / "pass").mkdir(parents=True, exist_ok=True)
    (dirs.output_dir / "pass" / "f003.fastq").write_text("")
    (dirs.input_dir / "inside.pod5").symlink_to(dirs.input_dir / names[5])
    (outside / "away.pod5").write_bytes(POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE)
    (dirs.input_dir / "outside.pod5").symlink_to(outside / "away.pod5")
    shutil.copytree(dirs.output_dir / "pass", other.output_dir / "pass")
    await ran_once(dirs, clock)
    await ran_once(other, clock)
    stray = dirs.input_dir / "ASSIGNED_424242_e9"
    stray.mkdir()
    (stray / names[0]).symlink_to(f"../{names[0]}")


def scanned_state(reactor: Reactor) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    files = reactor.state.files
    return (
        list(reactor.state.ready_names()),
        {name: (record.state, record.present) for name, record in files.items()},
        reactor.count_fields(),
    )


async def test_the_scan_in_a_child_leaves_what_the_scan_in_the_service_leaves(
    run_dirs: RunDirs, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same INPUTDIR, two OUTPUTDIRs alike: the same records, the same queue (oldest
    first), the same refusals and repairs, whether a child looked or the service did."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    other = RunDirs(run_dirs.input_dir, tmp_path / "output-2")
    await mixed_run_folders(run_dirs, other, clock, outside)

    with capture_logs() as by_child:
        child = begun(run_dirs, clock, child=True)
        with monkeypatch.context() as patched:  # the service must not look by itself
            patched.setattr(StartScan, "slices", _must_not_run)
            await child.scan()
    with capture_logs() as by_service:
        service = begun(other, clock)
        await service.scan()

    assert scanned_state(child) == scanned_state(service)
    ready, records, _ = scanned_state(child)
    assert len(ready) == 40 - 1 + 1  # 40 whole files, f003 done, the link inside
    assert records["f003.pod5"] == (FileState.DONE, True)
    assert records["half.pod5"][0] is FileState.INCOMPLETE
    assert "outside.pod5" not in records
    assert [e["event"] for e in by_child if e["event"] == "scan_child_failed"] == []
    for logs in (by_child, by_service):
        assert recovery_repairs(logs) == [("links_without_record", "ASSIGNED_424242_e9")]
        assert [e["name"] for e in logs if e["event"] == "file_refused"] == ["outside.pod5"]


def _must_not_run(_scan: StartScan, _size: int = 0) -> Iterator[int]:
    msg = "the service scanned by itself"
    raise AssertionError(msg)


def _child_program(code: str) -> Callable[[Path, Path], list[str]]:
    def program(input_dir: Path, output_dir: Path) -> list[str]:
        return [sys.executable, "-c", code, str(input_dir), str(output_dir)]

    return program


_FIRST_CHUNK_ONLY = """
import subprocess, sys
from reactor.disk.input_lister import HEADER, body_size, command
from pathlib import Path
out = subprocess.run(command(Path(sys.argv[1]), Path(sys.argv[2])), capture_output=True).stdout
count, names_bytes = HEADER.unpack_from(out)
sys.stdout.buffer.write(out[: HEADER.size + body_size(count, names_bytes)])
"""


@pytest.mark.parametrize(
    ("program", "said"),
    [
        pytest.param(
            _child_program("import sys; print('garbage'); sys.exit(3)"),
            "not a chunk",
            id="garbage",
        ),
        pytest.param(_child_program(_FIRST_CHUNK_ONLY), "exit 0", id="one-chunk-then-gone"),
        pytest.param(
            _child_program("import sys; sys.stderr.write('OSError: disk gone\\n'); sys.exit(1)"),
            "OSError: disk gone",
            id="says-why",
        ),
        pytest.param(lambda _i, _o: ["/nonexistent/python"], "could not start", id="cannot-start"),
    ],
)
async def test_a_child_that_fails_leaves_the_scan_to_the_service(
    run_dirs: RunDirs,
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    program: Callable[[Path, Path], list[str]],
    said: str,
) -> None:
    """Whatever the child did before it failed, the service scans by itself after it
    and ends where a scan of its own ends; the failure is logged with what went wrong."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    other = RunDirs(run_dirs.input_dir, tmp_path / "output-2")
    await mixed_run_folders(run_dirs, other, clock, outside)
    monkeypatch.setattr("reactor.serve.start_scan.command", program)

    with capture_logs() as logs:
        failing = begun(run_dirs, clock, child=True)
        await failing.scan()
    service = begun(other, clock)
    await service.scan()

    assert scanned_state(failing) == scanned_state(service)
    (failed,) = [e for e in logs if e["event"] == "scan_child_failed"]
    assert said in failed["detail"], failed["detail"]
    assert failed["action"]
    assert failing.ready


async def test_stopping_during_the_scan_ends_the_child(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child still looking when the service stops (before its scan ran, or during
    it) is killed, not left behind."""
    add_files(run_dirs, 3)
    monkeypatch.setattr(
        "reactor.serve.start_scan.command", _child_program("import time; time.sleep(120)")
    )
    before_scan = begun(run_dirs, clock, child=True)
    lister = before_scan._lister
    assert lister is not None
    await before_scan.stop()
    assert lister._process.poll() is not None

    during_scan = begun(run_dirs, clock, child=True)
    lister = during_scan._lister
    assert lister is not None
    during_scan.start_scan()
    await asyncio.sleep(0)  # the scan waits for the child's first chunk
    assert during_scan.scanning
    await during_scan.stop()
    assert lister._process.poll() is not None


async def test_work_held_for_the_end_of_the_scan_runs_at_its_end(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """`when_scanned` (the read workers start so: not while the scan needs the CPU):
    held while the scan goes on, run once at its end; at once when nothing scans."""
    add_files(run_dirs, 5)
    reactor = begun(run_dirs, clock)
    ran: list[bool] = []
    reactor.when_scanned(lambda: ran.append(reactor.ready))
    assert ran == []
    await reactor.scan()
    assert ran == [True]
    reactor.when_scanned(lambda: ran.append(reactor.scanning))
    assert ran == [True, False]


_STALE_LOOK = """
import os, sys
from reactor.disk.input_lister import COMPLETE, HEADER, _Chunk
chunk = _Chunk(1)
for name in sys.argv[3:]:
    chunk.add(name, COMPLETE, 1000.0)  # looked at before it went
chunk.send()
os.write(1, HEADER.pack(0, 0))
"""


async def test_a_file_gone_after_the_childs_look_is_not_recorded_from_it(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The children look ahead of the loop: a file they found whole and whose GONE event
    came before the service recorded it is looked at again, so it is not queued; a
    live job's file gone meanwhile is not marked present again."""
    job = await stopped_with_a_live_job(run_dirs, clock, 4)
    live_gone = sorted(job.files)[0]
    names = ["gone.pod5", live_gone, "kept.pod5"]
    for name in ("gone.pod5", "kept.pod5"):
        (run_dirs.input_dir / name).write_bytes(POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE)

    def program(input_dir: Path, output_dir: Path) -> list[str]:
        return [sys.executable, "-c", _STALE_LOOK, str(input_dir), str(output_dir), *names]

    monkeypatch.setattr("reactor.serve.start_scan.command", program)
    reactor = begun(run_dirs, clock, first_id=50, child=True)
    for name in ("gone.pod5", live_gone):
        (run_dirs.input_dir / name).unlink()
        reactor.on_fs_event(FsEvent(Area.INPUT, Change.GONE, name, clock()))
    await reactor.scan()

    files = reactor.state.files
    assert "gone.pod5" not in files
    assert files[live_gone].present is False
    assert files["kept.pod5"].state is FileState.READY


async def test_after_a_child_that_failed_half_way_each_stray_is_reported_once(
    run_dirs: RunDirs, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan in the service after it lists every entry again: a folder no record
    names, which the child had reported, is not reported (nor counted) twice."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    other = RunDirs(run_dirs.input_dir, tmp_path / "output-2")
    await mixed_run_folders(run_dirs, other, clock, outside)
    reported_all = """
import subprocess, sys
from pathlib import Path
from reactor.disk.input_lister import command
out = subprocess.run(command(Path(sys.argv[1]), Path(sys.argv[2])), capture_output=True).stdout
sys.stdout.buffer.write(out[:-8])  # everything but the end
"""
    monkeypatch.setattr("reactor.serve.start_scan.command", _child_program(reported_all))
    with capture_logs() as logs:
        reactor = begun(run_dirs, clock, child=True)
        await reactor.scan()
    assert [e["event"] for e in logs].count("scan_child_failed") == 1
    assert recovery_repairs(logs) == [("links_without_record", "ASSIGNED_424242_e9")]
    (recovered,) = [e for e in logs if e["event"] == "recovered"]
    assert (recovered["repairs"], recovered["looked_by"]) == (1, "service")


async def test_engines_waiting_are_woken_while_the_scan_waits_for_the_child(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the scan waits for the children's next chunk, a file that becomes ready
    (here by its event) wakes the engines waiting for work at once."""
    monkeypatch.setattr(
        "reactor.serve.start_scan.command", _child_program("import time; time.sleep(60)")
    )
    reactor = begun(run_dirs, clock, child=True)
    reactor.start_scan()
    waiting = asyncio.ensure_future(reactor.waiters.wait(30.0))
    await asyncio.sleep(0)
    assert reactor.scanning and not waiting.done()
    add_files(run_dirs, 1)
    reactor.on_fs_event(FsEvent(Area.INPUT, Change.CLOSED, "f000.pod5", clock()))
    assert await asyncio.wait_for(waiting, 5.0) is True  # woken, not timed out
    assert reactor.scanning
    await reactor.stop()


WHOLE = POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE


def _reporting_child(
    inputs: list[str], outputs: list[str], looks: str, done: list[str] | None = None
) -> str:
    """A stand-in for the child started before the watch: waits for the service's word,
    reports these changed names (`done`: those its list of outputs names), then sends
    `looks` (code adding to `chunk`)."""
    return f"""
import os, sys
from reactor.disk import lister_report as r
from reactor.disk.input_lister import COMPLETE, DONE, HEADER, INCOMPLETE, _Chunk
report = int(sys.argv[sys.argv.index("--report-fd") + 1])
sys.stdin.read()  # until the service's watch is up, as the real child waits
os.write(report, r.frame(r.CHANGED_INPUTS, {inputs!r}) + r.frame(r.CHANGED_DONE, {done or []!r})
         + r.frame(r.CHANGED_OUTPUTS, {outputs!r}) + r.FRAME.pack(r.END, 0))
os.close(report)
chunk = _Chunk(1)
{looks}
chunk.send()
os.write(1, HEADER.pack(0, 0))
"""


async def test_names_changed_before_the_watch_are_looked_at_again(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """A child started before the service's watch reports what changed until the watch
    was up: before anything goes out, those names are looked at as events would be
    (completed, gone, a live job's file gone, new; one an output names stays done),
    and the child's looks at them, made before, are not believed."""
    job = await stopped_with_a_live_job(run_dirs, clock, 4)
    live_gone = sorted(job.files)[0]
    for name in ("half.pod5", "kept.pod5", "new.pod5", "touched.pod5"):
        (run_dirs.input_dir / name).write_bytes(WHOLE)  # half.pod5: completed since
    (run_dirs.input_dir / live_gone).unlink()  # gone.pod5 was never left on disk
    looks = (
        "chunk.add('half.pod5', INCOMPLETE, 1000.0)\n"
        "chunk.add('gone.pod5', COMPLETE, 1000.0)\n"
        f"chunk.add({live_gone!r}, COMPLETE, 1000.0)\n"
        "chunk.add('kept.pod5', COMPLETE, 1000.0)"
    )
    changed = ["half.pod5", "gone.pod5", live_gone, "new.pod5", "touched.pod5"]
    code = _reporting_child(changed, [], looks, done=["touched.pod5"])

    with capture_logs() as logs:
        reactor = begun_after(run_dirs, clock, [sys.executable, "-c", code], first_id=50)
        files = reactor.state.files
        assert files["half.pod5"].state is FileState.READY  # before serving: no stale look
        assert files["touched.pod5"].state is FileState.DONE
        assert files[live_gone].present is False
        await asyncio.wait_for(reactor.scan(), 30.0)

    assert "gone.pod5" not in files
    assert files[live_gone].present is False
    for name in ("half.pod5", "kept.pod5", "new.pod5"):
        assert files[name].state is FileState.READY, name
    (recovered,) = [e for e in logs if e["event"] == "recovered"]
    assert (recovered["looked_by"], recovered["looks_began"]) == ("children", "before_watch")


async def test_the_childs_list_of_outputs_decides_what_is_done(
    run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service does not list pass/ and fail/ itself: the child listed them under its
    watch. Its looks say what is done (DONE), with the outputs it saw made since."""
    add_files(run_dirs, 5)  # f000 .. f004
    results = run_dirs.output_dir / "pass"
    results.mkdir(parents=True, exist_ok=True)
    (results / "f002.fastq").write_text("")  # made after the child's listing...
    (results / "job_id_9_f003.bam").write_text("")  # ...as this one, both reported
    looks = "\n".join(
        f"chunk.add('f{n:03}.pod5', {'DONE' if n == 0 else 'COMPLETE'}, 1000.0)" for n in range(5)
    )
    code = _reporting_child([], ["f002.fastq", "job_id_9_f003.bam"], looks)

    def listed_by_the_service() -> set[str]:
        msg = "the service listed pass/ and fail/ itself"
        raise AssertionError(msg)

    with monkeypatch.context() as patched:
        patched.setattr(Journal, "result_stems", lambda _self: listed_by_the_service())
        reactor = begun_after(run_dirs, clock, [sys.executable, "-c", code])
    await asyncio.wait_for(reactor.scan(), 30.0)

    states = {name: record.state for name, record in reactor.state.files.items()}
    done = {name for name, state in states.items() if state is FileState.DONE}
    assert done == {"f000.pod5", "f002.pod5", "f003.pod5"}
    assert states["f001.pod5"] is FileState.READY


def _output_changed_meanwhile(
    results: Path, change: Callable[[Path], None]
) -> Callable[[subprocess.Popen[bytes]], None]:
    """`begun_after`'s `before`: once the child has listed (its first chunk), change
    pass/ (under the child's watch, before the service's)."""

    def before(process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 30.0)[0], "the child wrote nothing"
        change(results)

    return before


async def test_an_output_removed_before_the_watch_leaves_its_file_to_be_basecalled(
    run_dirs: RunDirs, clock: ManualClock
) -> None:
    """The child's list of outputs named f001, whose output went before the service's
    watch was up: its DONE is stale, so the service lists the outputs and decides (as
    a scan after the watch would: f001 is ready)."""
    add_files(run_dirs, 3)
    results = run_dirs.output_dir / "pass"
    results.mkdir(parents=True, exist_ok=True)
    (results / "f001.fastq").write_text("")
    remove = _output_changed_meanwhile(results, lambda pass_: (pass_ / "f001.fastq").unlink())
    with capture_logs() as logs:
        early = begun_after(run_dirs, clock, before=remove)
        await asyncio.wait_for(early.scan(), 30.0)
    assert early.state.files["f001.pod5"].state is FileState.READY
    (recovered,) = [e for e in logs if e["event"] == "recovered"]
    assert (recovered["looked_by"], recovered["looks_began"]) == ("children", "before_watch")


async def test_an_output_made_before_the_watch_as_a_dangling_link_makes_its_file_done(
    run_dirs: RunDirs, clock: ManualClock, tmp_path: Path
) -> None:
    """A symlink in pass/ is an output by its name, wherever it leads (the service's own
    listing counts it): made under the child's watch, its file is done."""
    add_files(run_dirs, 3)

    def link(results: Path) -> None:
        (results / "f002.fastq").symlink_to(tmp_path / "nowhere.fastq")

    early = begun_after(
        run_dirs, clock, before=_output_changed_meanwhile(run_dirs.output_dir / "pass", link)
    )
    await asyncio.wait_for(early.scan(), 30.0)
    assert "f002" in early.journal.result_stems()
    assert early.state.files["f002.pod5"].state is FileState.DONE


async def test_a_child_started_before_the_watch_leaves_what_a_scan_after_it_leaves(
    run_dirs: RunDirs, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real child, started before any watch, the folders changed while it looks:
    the same records as the service's own scan made after the changes; the same queue
    but for the changed names, which go in as their events would."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    other = RunDirs(run_dirs.input_dir, tmp_path / "output-2")
    await mixed_run_folders(run_dirs, other, clock, outside)
    inputs = run_dirs.input_dir
    changed = {"half.pod5", "f010.pod5", "f011.pod5", "moved.pod5", "late.pod5", "f003.pod5"}

    def change(process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 30.0)[0], "the child wrote nothing"
        with (inputs / "half.pod5").open("ab") as half:
            half.write(POD5_SIGNATURE)
        (inputs / "f010.pod5").unlink()
        (inputs / "f011.pod5").rename(inputs / "moved.pod5")
        (inputs / "late.pod5").write_bytes(WHOLE)
        os.utime(inputs / "f003.pod5")  # done by its output: stays done
        for dirs in (run_dirs, other):  # an output made meanwhile, in both runs alike
            (dirs.output_dir / "pass" / "f012.fastq").write_text("")

    seen: list[str] = []
    looked_again = Reactor._changed_unwatched
    monkeypatch.setattr(
        Reactor,
        "_changed_unwatched",
        lambda self, scan, names, done: (
            seen.extend(names),
            looked_again(self, scan, names, done),
        ),
    )
    early = begun_after(run_dirs, clock, before=change)
    with monkeypatch.context() as patched:  # the service must not look by itself
        patched.setattr(StartScan, "slices", _must_not_run)
        await asyncio.wait_for(early.scan(), 30.0)
    service = begun(other, clock)
    await service.scan()

    assert sorted(seen) == sorted(changed)
    early_ready, early_records, early_counts = scanned_state(early)
    ready, records, counts = scanned_state(service)
    assert (early_records, early_counts) == (records, counts)
    assert sorted(early_ready) == sorted(ready)
    assert [n for n in early_ready if n not in changed] == [n for n in ready if n not in changed]
    assert records["half.pod5"][0] is FileState.READY
    assert records["f012.pod5"][0] is FileState.DONE
    assert records["f003.pod5"][0] is FileState.DONE
    assert "f010.pod5" not in records


_STALE_AND_LOST = """
import os, sys
from reactor.disk import lister_report as r
from reactor.disk.input_lister import COMPLETE, HEADER, _Chunk
report = int(sys.argv[sys.argv.index("--report-fd") + 1])
chunk = _Chunk(1)
chunk.add("gone.pod5", COMPLETE, 1000.0)  # looked at before it went
chunk.send()
sys.stdin.read()
os.write(report, r.frame(r.LOST, ["a watched folder was moved"]))
sys.exit(1)
"""


@pytest.mark.parametrize(
    ("code", "said"),
    [
        pytest.param(_STALE_AND_LOST, "a watched folder was moved", id="lost"),
        pytest.param("import sys; sys.exit(0)", "ended early", id="no-report"),
    ],
)
async def test_a_child_whose_watch_cannot_be_trusted_is_not_read(
    run_dirs: RunDirs, clock: ManualClock, code: str, said: str
) -> None:
    """Its report says changes may have been missed, or there is none: the child is
    ended before any of its looks is taken, and the service lists and scans by itself
    after its watch (nothing stale is left: the look at a file gone since is not used)."""
    (run_dirs.input_dir / "kept.pod5").write_bytes(WHOLE)
    with capture_logs() as logs:
        reactor = begun_after(run_dirs, clock, [sys.executable, "-c", code])
        await asyncio.wait_for(reactor.scan(), 30.0)

    (failed,) = [e for e in logs if e["event"] == "scan_child_failed"]
    assert said in failed["detail"], failed["detail"]
    files = reactor.state.files
    assert "gone.pod5" not in files
    assert files["kept.pod5"].state is FileState.READY
    (recovered,) = [e for e in logs if e["event"] == "recovered"]
    assert recovered["looked_by"] == "service"


@pytest.mark.parametrize(
    ("settings", "big", "early"),
    [
        pytest.param({}, True, True, id="large-native"),
        pytest.param({}, False, False, id="small"),
        pytest.param({"observer": "polling"}, True, False, id="polling"),
    ],
)
def test_serve_starts_the_child_before_its_imports_only_where_its_watch_stands_in(
    run_dirs: RunDirs, settings: dict[str, Any], big: bool, early: bool
) -> None:
    """Only for a large INPUTDIR watched by inotify: the polling observer (NFS, SMB)
    sees writes made on other hosts, which the child's inotify watch would not."""
    if big:
        for number in range(2000):
            (run_dirs.input_dir / f"PAK00000_pass_0123abcd_{number:05}.pod5").touch()
    started = _early_lister(run_dirs.config(**settings))
    try:
        assert (started is not None) == early
    finally:
        if started is not None:
            ChildLister(*started).stop()


async def test_a_watch_refused_for_the_childs_inotify_instance_is_tried_again_without_it(
    aiohttp_client: Any, run_dirs: RunDirs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the per-user inotify limit, the child started before the app holds the
    instance the service's watch needs: the child is ended (and says so) and the watch
    is tried once more; the service starts and scans by itself."""
    add_files(run_dirs, 3)
    config = run_dirs.config(report_back_interval=LEASE_S)
    process, report = spawn(run_dirs.input_dir, run_dirs.output_dir, until_watched=True)
    tries: list[bool] = []
    real_start = Watcher.start

    def start(watcher: Watcher) -> None:
        tries.append(process.poll() is None)  # the child still there?
        if len(tries) == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        real_start(watcher)

    monkeypatch.setattr(Watcher, "start", start)
    with capture_logs() as logs:
        app = create_app(config, clock=clock, sweep=False, lister=ChildLister(process, report))
        client = await aiohttp_client(app)
        async with asyncio.timeout(30):
            while (await client.get("/readyz")).status != 200:
                await asyncio.sleep(0.01)
    assert tries == [True, False]  # the second try, with the child gone
    (failed,) = [e for e in logs if e["event"] == "scan_child_failed"]
    assert "Too many open files" in failed["detail"]
    (recovered,) = [e for e in logs if e["event"] == "recovered"]
    assert recovered["looked_by"] == "service"
    assert (await (await client.get("/status")).json())["files"]["ready"] == 3


@pytest.mark.parametrize("early", [True, False], ids=["early-child", "no-child"])
async def test_a_watch_refused_again_stops_the_start_and_ends_the_child(
    run_dirs: RunDirs,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    early: bool,
) -> None:
    """Tried once more without the child (or not at all: no child), a watch still
    refused stops the start with the cause; no child is left running."""
    add_files(run_dirs, 3)
    config = run_dirs.config(report_back_interval=LEASE_S)
    lister = None
    if early:
        lister = ChildLister(*spawn(run_dirs.input_dir, run_dirs.output_dir, until_watched=True))
    tries: list[int] = []

    def start(_watcher: Watcher) -> None:
        tries.append(1)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(Watcher, "start", start)
    runner = web.AppRunner(create_app(config, clock=clock, sweep=False, lister=lister))
    try:
        with pytest.raises(StartupError, match=r"cannot watch the run folders: .*Too many open"):
            await runner.setup()  # the app's start-up: its contexts
    finally:
        await runner.cleanup()
    assert len(tries) == (2 if early else 1)
    if lister is not None:
        assert lister._process.poll() is not None
        lister.stop()
