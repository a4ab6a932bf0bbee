"""End of run through the real app: the stop file, `run_complete`, `on_complete` run once
(a real subprocess), restarts, interruptions, late files, exit_on_complete and shutdown.

The sweeper is driven by hand (`sweep_once`), so each check happens when the test says;
the command's end is awaited by bounded polling of its marker.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

import dnaio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from reactor.core.events import Area, Change, FsEvent
from reactor.disk.marker import Marker, MarkerState, marker_path, read_marker, write_marker
from reactor.serve.app import create_app
from reactor.serve.app_keys import FINISHER, REACTOR
from reactor.serve.finisher import LOG_NAME
from tests.support.endrun import (
    RECORD_ENV,
    SUMMARY,
    StartRun,
    command_ended,
    events,
    marker_state,
    no_exit,
    python_command,
    runs_of,
    wait_until,
)
from tests.support.pod5files import pod5_bytes, read_ids, write_pod5
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


def add_files(run_dirs: RunDirs, count: int, start: int = 0) -> list[str]:
    names = [f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5" for i in range(start, start + count)]
    for i, name in enumerate(names, start):
        write_pod5(run_dirs.input_dir / name, n_reads=1, seed=i)
    return names


async def test_summary_after_the_last_file_completes_the_run_and_runs_the_command_once(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """Files done, then final_summary in the run folder (INPUTDIR's parent): run_complete
    once, and the command ran once with the run's folders and counts."""
    env_file = tmp_path / "env.jsonl"
    add_files(run_dirs, 3)
    run = await start_run(on_complete=python_command(RECORD_ENV, env_file))
    await run.finish_all()
    with capture_logs() as logs:
        await run.sweep()
        assert run.phase == "running"
        summary = run_dirs.input_dir.parent / SUMMARY
        summary.write_text("protocol_run_id=abcdef12\n")
        await run.sweep()
        assert await run.status_phase() == "complete"
        await wait_until(command_ended(run_dirs), "on_complete to end")
        for _ in range(3):
            await run.sweep()
    assert [e["event"] for e in logs if e["event"].startswith(("run_", "on_complete", "seq"))] == [
        "sequencing_finished",
        "run_complete",
        "on_complete_started",
        "on_complete_finished",
    ]
    (complete,) = events(logs, "run_complete")
    assert (complete["files_done"], complete["files_quarantined"]) == (3, 0)
    assert events(logs, "on_complete_finished")[0]["exit_code"] == 0
    output = run_dirs.output_dir
    assert runs_of(env_file) == [
        {
            "REACTOR_RUN_INPUT_DIR": str(run_dirs.input_dir),
            "REACTOR_RUN_OUTPUT_DIR": str(output),
            "REACTOR_RUN_PASS_DIR": str(output / "pass"),
            "REACTOR_RUN_FAIL_DIR": str(output / "fail"),
            "REACTOR_RUN_DIR": str(summary.parent),
            "REACTOR_RUN_STOP_FILE": str(summary),
            "REACTOR_RUN_FILES_DONE": "3",
            "REACTOR_RUN_FILES_QUARANTINED": "0",
            "REACTOR_RUN_MARKER": str(marker_path(output)),
            "REACTOR_RUN_END": "complete",
        }
    ]
    marker = read_marker(marker_path(output))
    assert marker is not None
    assert (marker.state, marker.exit_code, marker.files_done) == (MarkerState.FINISHED, 0, 3)
    assert marker.command == shlex.split(python_command(RECORD_ENV, env_file))
    assert marker.env == runs_of(env_file)[0]  # what a person needs to run it by hand
    assert "aligned 3 files" in (output / LOG_NAME).read_text()


async def test_summary_first_waits_for_the_files_still_pending(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """final_summary while files are ready, incomplete or assigned: finishing, not complete."""
    env_file = tmp_path / "env.jsonl"
    add_files(run_dirs, 2)
    partial = run_dirs.input_dir / "PAK00000_pass_abcdef12_0123abcd_9.pod5"
    data = pod5_bytes(1, 9)
    partial.write_bytes(data[:-8])  # no trailing signature yet: still being written
    run = await start_run(on_complete=python_command(RECORD_ENV, env_file))
    (run_dirs.input_dir / SUMMARY).write_text("x")
    await run.sweep()
    assert await run.status_phase() == "finishing"
    await run.finish_all()  # the two complete files; the partial one is still pending
    await run.sweep()
    assert run.phase == "finishing"
    partial.write_bytes(data)
    run.app[REACTOR].reconcile("test")  # as its close event would
    response = await run.client.get("/assignwork", params={"engineid": "gpu-0"})
    job = await response.json()
    assert job["batch"] == [partial.name]
    await run.sweep()
    assert run.phase == "finishing"  # assigned is not done
    params = {"job_id": job["jobid"], "job_state": "DONE"}
    assert (await run.client.get("/completed", params=params)).status == 200
    await run.sweep()
    assert run.phase == "complete"
    await wait_until(command_ended(run_dirs), "on_complete to end")
    assert [r["REACTOR_RUN_FILES_DONE"] for r in runs_of(env_file)] == ["3"]


async def test_files_written_just_before_the_summary_are_counted_before_judging(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    """Their events may still be on the way: the first sight of the summary reconciles."""
    run = await start_run()
    add_files(run_dirs, 2)  # never announced: this app has no watcher
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        await run.sweep()
    assert run.phase == "finishing"
    assert run.app[REACTOR].count_fields()["ready"] == 2
    assert [e["reason"] for e in events(logs, "reconciled")] == ["run_end"]
    assert not events(logs, "file_after_run_end")
    await run.finish_all()
    await run.sweep()
    assert run.phase == "complete"
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.files_done, marker.command) == (MarkerState.NO_COMMAND, 2, None)


async def test_a_restart_after_completion_does_not_run_the_command_again(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.jsonl"
    command = python_command(RECORD_ENV, env_file)
    add_files(run_dirs, 1)
    (run_dirs.input_dir.parent / SUMMARY).write_text("x")
    first = await start_run(on_complete=command)
    await first.finish_all()
    await first.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end")
    await first.client.close()
    with capture_logs() as logs:
        second = await start_run(on_complete=command)
        assert await second.status_phase() == "complete"
        for _ in range(3):
            await second.sweep()
        await second.client.close()
    assert len(runs_of(env_file)) == 1
    assert [e["state"] for e in events(logs, "run_already_complete")] == ["finished"]
    assert not events(logs, "run_complete")
    assert not events(logs, "on_complete_started")


async def test_a_claim_without_a_result_is_reported_and_not_run_again(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """A crash between the claim and the command's end: say so, say what to do, do not
    run it a second time."""
    env_file = tmp_path / "env.jsonl"
    command = python_command(RECORD_ENV, env_file)
    (run_dirs.input_dir / SUMMARY).write_text("x")
    marker_file = marker_path(run_dirs.output_dir)
    marker_file.parent.mkdir(parents=True)  # the state folder, before the first start
    write_marker(
        marker_file,
        Marker(
            state=MarkerState.CLAIMED,
            completed_at="2026-11-25T10:00:00+00:00",
            stop_file=str(run_dirs.input_dir / SUMMARY),
            files_done=0,
            files_quarantined=0,
            command=shlex.split(command),
        ),
    )
    with capture_logs() as logs:
        run = await start_run(on_complete=command)
        for _ in range(3):
            await run.sweep()
    (interrupted,) = events(logs, "on_complete_interrupted")
    assert interrupted["log_level"] == "error"
    assert interrupted["marker"] == str(marker_file)
    assert interrupted["command"] == command
    assert "run it by hand" in interrupted["action"]
    assert run.phase == "complete"
    assert not env_file.exists()
    assert marker_state(run_dirs) is MarkerState.CLAIMED  # left for a person to see


async def test_removing_the_marker_has_the_next_start_run_the_command(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """What a person does after an interruption, to have reactor run it again."""
    env_file = tmp_path / "env.jsonl"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    run = await start_run(on_complete=python_command(RECORD_ENV, env_file))
    await run.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end")
    await run.client.close()
    (marker_path(run_dirs.output_dir)).unlink()
    again = await start_run(on_complete=python_command(RECORD_ENV, env_file))
    await again.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end again")
    assert len(runs_of(env_file)) == 2


async def test_files_after_the_end_are_basecalled_and_logged_but_do_not_rerun(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.jsonl"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    run = await start_run(on_complete=python_command(RECORD_ENV, env_file))
    await run.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end")
    (late,) = add_files(run_dirs, 1)
    with capture_logs() as logs:
        run.app[REACTOR].reconcile("test")
        await run.finish_all()
        await run.sweep()
    assert [e["name"] for e in events(logs, "file_after_run_end")] == [late]
    assert events(logs, "file_after_run_end")[0]["log_level"] == "warning"
    assert run.app[REACTOR].count_fields()["done"] == 1
    assert run.phase == "complete"
    assert len(runs_of(env_file)) == 1


@pytest.mark.parametrize(
    ("executable", "problem"),
    [(None, "is not found; install it or give its full path"),
     (False, "is not executable by this user; fix its permissions")],
)  # fmt: skip
async def test_a_command_that_cannot_start_is_reported_and_recorded(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path, executable: bool | None, problem: str
) -> None:
    program = tmp_path / "aligner"
    if executable is not None:
        program.write_text("#!/bin/sh\n")
        program.chmod(0o644)
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        run = await start_run(on_complete=f"{program} --all")
        await run.sweep()
        await wait_until(command_ended(run_dirs), "the failed start to be recorded")
    (failed,) = events(logs, "on_complete_failed")
    assert failed["detail"] == f"program '{program}' {problem}"
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.detail) == (MarkerState.NOT_STARTED, failed["detail"])
    assert not events(logs, "on_complete_started")


async def test_a_failing_command_is_logged_with_its_exit_code_and_last_lines(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    code = "import sys; print('reference genome missing'); sys.exit(3)"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        run = await start_run(on_complete=python_command(code))
        await run.sweep()
        await wait_until(command_ended(run_dirs), "on_complete to end")
    (finished,) = events(logs, "on_complete_finished")
    assert (finished["exit_code"], finished["log_level"]) == (3, "error")
    assert finished["output_tail"][-1] == "reference genome missing"
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.exit_code) == (MarkerState.FINISHED, 3)


async def test_exit_on_complete_asks_to_exit_after_the_command(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.jsonl"
    asked: list[float] = []
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        run = await start_run(
            on_complete=python_command(RECORD_ENV, env_file),
            exit_on_complete=True,
            request_exit=lambda: asked.append(1.0),
        )
        await run.sweep()
        assert not asked  # the command is still running
        await wait_until(lambda: bool(asked), "the request to exit")
        await run.sweep()
    assert len(asked) == 1
    assert len(runs_of(env_file)) == 1  # the command ended before the exit
    assert [e["reason"] for e in events(logs, "exiting")] == ["run_complete"]
    names = [e["event"] for e in logs]
    assert names.index("on_complete_finished") < names.index("exiting")


async def test_exit_on_complete_without_a_command_exits_at_once_and_again_after_restart(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    asked: list[str] = []
    (run_dirs.input_dir / SUMMARY).write_text("x")
    first = await start_run(exit_on_complete=True, request_exit=lambda: asked.append("first"))
    await first.sweep()
    assert asked == ["first"]
    await first.client.close()
    with capture_logs() as logs:
        second = await start_run(exit_on_complete=True, request_exit=lambda: asked.append("2nd"))
        await second.sweep()
    assert asked == ["first", "2nd"]
    assert [e["reason"] for e in events(logs, "exiting")] == ["already_complete"]


async def test_shutdown_stops_a_command_that_runs_on_and_records_it(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """Bounded wait, then SIGTERM; the marker says stopped, and the next start says so."""
    started = tmp_path / "started"
    code = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        run = await start_run(on_complete=python_command(code, started))
        run.app[FINISHER].stop_grace_s = 0.2
        await run.sweep()
        await wait_until(started.exists, "the command to start")
        await run.client.close()
    assert [e["event"] for e in logs if e["event"].startswith("on_complete")] == [
        "on_complete_started",
        "on_complete_stopping",
        "on_complete_stopped",
    ]
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.exit_code) == (MarkerState.STOPPED, -15)
    with capture_logs() as logs:
        await start_run(on_complete=python_command(code, started))
    assert [e["state"] for e in events(logs, "on_complete_interrupted")] == ["stopped"]


async def test_a_stop_file_event_in_the_input_folder_completes_without_a_sweep(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """The real watcher passes the stop file's name on; no sweeper runs in this app."""
    app = create_app(run_dirs.config(), clock=clock, sweep=False, request_exit=no_exit)
    await aiohttp_client(app)
    assert app[REACTOR].phase == "running"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    await wait_until(lambda: app[REACTOR].phase == "complete", "the run to complete")


async def test_a_custom_stop_file_is_the_only_one_that_ends_the_run(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    run = await start_run(stop_file="RUN_DONE")
    (run_dirs.input_dir.parent / SUMMARY).write_text("x")
    await run.sweep()
    assert run.phase == "running"
    (run_dirs.input_dir.parent / "RUN_DONE").write_text("")
    await run.sweep()
    assert run.phase == "complete"


async def test_without_the_claim_on_disk_the_command_does_not_start_until_it_is(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """At most once needs the claim first: a marker that cannot be written holds it back."""
    env_file = tmp_path / "env.jsonl"
    marker = marker_path(run_dirs.output_dir)
    blocker = marker.with_name(f"{marker.name}.tmp")
    blocker.mkdir(parents=True)  # the marker's staging name is taken: writing it fails
    (run_dirs.input_dir / SUMMARY).write_text("x")
    with capture_logs() as logs:
        run = await start_run(on_complete=python_command(RECORD_ENV, env_file))
        await run.sweep()
        assert run.phase == "finishing"
        assert not events(logs, "run_complete")
        blocker.rmdir()
        await run.sweep()
        await wait_until(command_ended(run_dirs), "on_complete to end")
    (failed,) = events(logs, "run_complete_marker_failed")
    assert failed["action"] == "make output_dir writable; reactor tries again at the next sweep"
    assert len(events(logs, "run_complete")) == 1
    assert len(runs_of(env_file)) == 1


async def test_without_events_the_input_folder_is_listed_at_the_reconcile_pace(
    start_run: StartRun, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Sweeps list the run folder (a few entries) every time, but INPUTDIR (maybe a
    million files) only every reconcile_interval: its own events are the fast path."""
    run = await start_run()
    await run.sweep()
    (run_dirs.input_dir / SUMMARY).write_text("x")
    await run.sweep()
    assert run.phase == "running"
    clock.advance(run_dirs.config().reconcile_interval)
    await run.sweep()
    assert run.phase == "complete"


async def test_a_single_run_is_checked_against_minknows_output_hash_at_its_end(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    names = add_files(run_dirs, 2)
    run_folder = run_dirs.input_dir.parent
    folder = run_dirs.input_dir.name
    rows = [f"0123abcd,g,PAK00000,s,,{folder}/{name},," for name in [*names, "gone.pod5"]]
    (run_folder / "output_hash_PAK00000_abcdef12_0123abcd.csv").write_text(
        "runid,protocol_group_id,flow_cell_id,sample_id,file_hash,file_path,barcode,"
        "barcode_alias\n" + "\n".join(rows) + "\n"
    )
    run = await start_run()
    await run.finish_all()
    (run_folder / SUMMARY).write_text("protocol_run_id=abcdef12\n")
    await run.sweep()
    reactor = run.app[REACTOR]
    await wait_until(lambda: reactor.hash_check is not None, "the cross-check")
    assert reactor.hash_check is not None
    assert (reactor.hash_check["pod5_listed"], reactor.hash_check["missing"]) == (3, 1)
    assert reactor.hash_check["not_done"] == 0
    body = await (await run.client.get("/status")).json()
    assert body["output_hash"]["missing"] == 1


async def test_a_single_run_stalls_when_quiet_and_is_active_again_at_its_next_file(
    start_run: StartRun, run_dirs: RunDirs, clock: ManualClock
) -> None:
    add_files(run_dirs, 1)
    truncated = run_dirs.input_dir / "PAK00000_pass_abcdef12_0123abcd_9.pod5"
    truncated.write_bytes(pod5_bytes(1, seed=9)[:-50])
    run = await start_run(stall_after=300)
    await run.finish_all()
    with capture_logs() as logs:
        clock.advance(299)
        await run.sweep()
        assert run.phase == "running"
        clock.advance(2)
        await run.sweep()
        assert await run.status_phase() == "stalled"
        (name,) = add_files(run_dirs, 1, start=5)
        run.app[REACTOR].on_fs_event(FsEvent(Area.INPUT, Change.CLOSED, name, clock()))
        await run.sweep()
        assert run.phase == "running"
    assert [e["event"] for e in logs if e["event"].startswith("run_")] == [
        "run_stalled",
        "run_active_again",
    ]
    (stalled,) = events(logs, "run_stalled")
    assert stalled["incomplete"] == [truncated.name]


LIST_MERGED = (
    "import os, sys\n"
    "folder = sys.argv[1]\n"
    "names = sorted(os.listdir(folder)) if os.path.isdir(folder) else ['none']\n"
    "open(sys.argv[2], 'w').write(' '.join(names))\n"
)


async def test_merged_outputs_are_written_whole_before_on_complete_runs(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """merge_outputs: at the end, one file per pass/fail of the run's reads in merged/,
    there before the command starts (it lists them), made of every job's reads."""
    names = add_files(run_dirs, 3)
    listing = tmp_path / "listing"
    merged = run_dirs.output_dir / "merged"
    run = await start_run(
        output_layout="minknow",
        merge_outputs=True,
        min_qscore=10.0,
        on_complete=python_command(LIST_MERGED, merged, listing),
    )
    written: dict[str, list[str]] = {"pass": [], "fail": []}
    while (job := await (await run.client.get("/assignwork?engineid=e&batchsize=1")).json())[
        "jobid"
    ] != "-1":
        (read_id,) = read_ids(run_dirs.input_dir / job["batch"][0])
        verdict = "pass" if len(written["pass"]) < 2 else "fail"
        written[verdict].append(read_id)
        qs = 20.0 if verdict == "pass" else 5.0
        out = run_dirs.output_dir / job["job_output_dir"] / "pass" / "calls.fastq"
        out.write_text(f"@{read_id}\tqs:f:{qs}\nACGT\n+\nIIII\n")
        params = {"job_id": job["jobid"], "job_state": "DONE"}
        assert (await run.client.get("/completed", params=params)).status == 200
    assert sorted(written["pass"] + written["fail"]) == sorted(
        r for n in names for r in read_ids(run_dirs.input_dir / n)
    )
    with capture_logs() as logs:
        (run_dirs.input_dir.parent / SUMMARY).write_text("protocol_run_id=abcdef12\n")
        await run.sweep()
        await wait_until(lambda: marker_state(run_dirs) is not None, "the run to complete")
        await wait_until(command_ended(run_dirs), "on_complete to end")
    order = [e["event"] for e in logs if e["event"] in ("outputs_merged", "run_complete")]
    assert order == ["outputs_merged", "run_complete"]
    assert listing.read_text() == "fail.fastq.gz pass.fastq.gz"
    for verdict, ids in written.items():
        with dnaio.open(merged / f"{verdict}.fastq.gz") as reader:
            assert sorted(r.name.split("\t")[0] for r in reader) == sorted(ids)
    (complete,) = events(logs, "run_complete")
    assert (complete["reads"], complete["reads_exactly_once"]) == (3, True)
