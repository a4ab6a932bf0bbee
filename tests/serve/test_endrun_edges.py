"""End of run through the real app, at its edges: shutdown while on_complete runs or
before it is claimed, reconcile_interval 0, relative folders and programs, and a
marker someone else wrote. Real subprocesses; waits are bounded polls."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from reactor.disk.marker import MarkerState, marker_path, read_marker
from reactor.serve.app import create_app
from reactor.serve.app_keys import FINISHER, REACTOR
from reactor.serve.finisher import LOG_NAME
from reactor.settings.serve import load_config
from tests.support.endrun import (
    RECORD_ENV,
    SUMMARY,
    StartRun,
    cli,
    command_ended,
    events,
    marker_state,
    no_exit,
    python_command,
    runs_of,
    wait_until,
)
from tests.support.runs import ManualClock, RunDirs

# Writes its pid to argv[1] (by a rename, so it is never read half written), then blocks
# for at most 60 s: long enough for any test, bounded if a test fails to stop it.
_BLOCK = (
    "import os, pathlib, sys, time\n"
    "path = pathlib.Path(sys.argv[1])\n"
    "path.with_suffix('.tmp').write_text(str(os.getpid()))\n"
    "path.with_suffix('.tmp').rename(path)\n"
    "time.sleep(60)\n"
)

# Writes its pid like _BLOCK, then exits 0 once argv[2] exists (or fails after 60 s).
_WAIT_FOR_GO = (
    "import os, pathlib, sys, time\n"
    "path, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
    "path.with_suffix('.tmp').write_text(str(os.getpid()))\n"
    "path.with_suffix('.tmp').rename(path)\n"
    "deadline = time.monotonic() + 60\n"
    "while not go.exists():\n"
    "    if time.monotonic() > deadline:\n"
    "        sys.exit(9)\n"
    "    time.sleep(0.02)\n"
)


# --- shutdown -----------------------------------------------------------------------------


async def test_a_command_killed_by_someone_else_during_shutdown_is_recorded_stopped(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """systemd signals the whole cgroup: the command may die of SIGTERM before reactor's
    grace wait is over. That end is `stopped`, and the next start says so."""
    pid_file = tmp_path / "pid"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    command = python_command(_BLOCK, pid_file)
    run = await start_run(on_complete=command)
    finisher = run.app[FINISHER]
    assert finisher.stop_grace_s >= 10  # the kill below comes well inside the grace wait
    await run.sweep()
    await wait_until(pid_file.exists, "the command to start")
    with capture_logs() as logs:
        closing = asyncio.create_task(run.client.close())
        await wait_until(lambda: finisher.shutting_down, "the shutdown to begin")
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        await asyncio.wait_for(closing, timeout=15)
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.exit_code) == (MarkerState.STOPPED, -signal.SIGTERM)
    assert [e["event"] for e in logs if e["event"].startswith("on_complete")] == [
        "on_complete_stopped"  # not "stopping": reactor did not have to signal it
    ]
    with capture_logs() as logs:
        await start_run(on_complete=command)
    assert [e["state"] for e in events(logs, "on_complete_interrupted")] == ["stopped"]
    assert not events(logs, "run_already_complete")


async def test_a_command_that_ends_cleanly_during_shutdown_is_recorded_finished(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """The grace wait is for this: exit code 0 during shutdown is a command that did its
    work, not one that was cut short."""
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    (run_dirs.input_dir / SUMMARY).write_text("x")
    run = await start_run(on_complete=python_command(_WAIT_FOR_GO, pid_file, go))
    await run.sweep()
    await wait_until(pid_file.exists, "the command to start")
    closing = asyncio.create_task(run.client.close())
    await wait_until(lambda: run.app[FINISHER].shutting_down, "the shutdown to begin")
    go.touch()
    await asyncio.wait_for(closing, timeout=15)
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.exit_code) == (MarkerState.FINISHED, 0)


async def test_once_shutdown_has_begun_the_run_is_not_claimed(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """The sweeper runs on through on_shutdown and the wait for requests in flight: it
    must not start on_complete then. The next start claims the run instead."""
    env_file = tmp_path / "env.jsonl"
    command = python_command(RECORD_ENV, env_file)
    (run_dirs.input_dir.parent / SUMMARY).write_text("x")
    run = await start_run(on_complete=command)
    await run.app.shutdown()  # aiohttp's on_shutdown signal, as a graceful shutdown sends
    with capture_logs() as logs:
        await run.sweep()
    assert not events(logs, "run_complete")
    assert marker_state(run_dirs) is None
    await run.client.close()
    assert not env_file.exists()
    again = await start_run(on_complete=command)
    await again.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end")
    assert len(runs_of(env_file)) == 1


# --- the stop file with reconcile_interval 0 -------------------------------------------------


async def test_with_reconcile_interval_0_a_summary_there_before_start_is_found(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    """It has no event: the first check lists INPUTDIR once."""
    (run_dirs.input_dir / SUMMARY).write_text("x")
    run = await start_run(reconcile_interval=0.0)
    await run.sweep()
    assert run.phase == "complete"


async def test_with_reconcile_interval_0_later_checks_never_list_the_input_folder(
    start_run: StartRun, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """0 means no periodic rescans of INPUTDIR (O(files)); its events are the way in.
    The run folder, a handful of entries, is still listed at every check."""
    run = await start_run(reconcile_interval=0.0, stall_after=0)  # hours pass: no stall
    await run.sweep()
    (run_dirs.input_dir / SUMMARY).write_text("x")  # no watcher in this app: no event
    for _ in range(3):
        clock.advance(3600)
        await run.sweep()
    assert run.phase == "running"
    (run_dirs.input_dir.parent / SUMMARY).write_text("x")
    await run.sweep()
    assert run.phase == "complete"


# --- relative folders and programs ----------------------------------------------------------


async def test_with_relative_folders_the_marker_and_env_hold_absolute_paths(
    run_dirs: RunDirs, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command runs in OUTPUTDIR, where paths relative to serve's folder mean
    something else. The stop file here arrives by the real watcher's event."""
    monkeypatch.chdir(tmp_path)
    env_file = tmp_path / "env.jsonl"
    relative = RunDirs(Path(run_dirs.input_dir.name), Path(run_dirs.output_dir.name))
    config = relative.config(
        on_complete=python_command(RECORD_ENV, env_file), reconcile_interval=0.0
    )
    app = create_app(config, clock=clock, sweep=False, request_exit=no_exit)
    async with TestClient(TestServer(app)):
        app[FINISHER].check()  # the first check, before the stop file
        (run_dirs.input_dir / SUMMARY).write_text("x")
        await wait_until(lambda: app[REACTOR].phase == "complete", "the run to complete")
        await wait_until(command_ended(run_dirs), "on_complete to end")
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert marker.state is MarkerState.FINISHED
    assert marker.log == str(run_dirs.output_dir / LOG_NAME)
    assert marker.stop_file == str(run_dirs.input_dir / SUMMARY)
    (env,) = runs_of(env_file)
    assert marker.env == env
    paths = {k: path for k, path in env.items() if "FILES" not in k and k != "REACTOR_RUN_END"}
    assert all(Path(path).is_absolute() for path in paths.values())
    assert env["REACTOR_RUN_END"] == "complete"
    assert env["REACTOR_RUN_MARKER"] == str(marker_path(run_dirs.output_dir))


async def test_a_relative_on_complete_program_runs_although_the_command_runs_in_outputdir(
    start_run: StartRun, run_dirs: RunDirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`./align.sh` is found at start relative to serve's folder, and run from there."""
    env_file = tmp_path / "env.jsonl"
    here = tmp_path / "here"
    here.mkdir()
    script = here / "align.sh"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "$@"\n')
    script.chmod(0o755)
    monkeypatch.chdir(here)
    folders = {
        "REACTOR_INPUT_DIR": str(run_dirs.input_dir),
        "REACTOR_OUTPUT_DIR": str(run_dirs.output_dir),
    }
    line = shlex.join(["./align.sh", RECORD_ENV, str(env_file)])
    loaded = load_config(cli("--on-complete", line), folders)
    (run_dirs.input_dir / SUMMARY).write_text("x")
    run = await start_run(on_complete=loaded.on_complete)
    await run.sweep()
    await wait_until(command_ended(run_dirs), "on_complete to end")
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert (marker.state, marker.exit_code) == (MarkerState.FINISHED, 0), marker.detail
    assert marker.command is not None
    assert marker.command[0] == str(script)
    assert len(runs_of(env_file)) == 1


# --- a marker reactor did not write ------------------------------------------------------------


async def test_a_marker_with_a_wrong_typed_field_does_not_stop_serve_from_starting(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    """`"stop_file": null` used to raise TypeError at every start (a restart loop)."""
    marker = {
        "state": "finished",
        "completed_at": "2026-11-25T10:00:00+00:00",
        "stop_file": None,
        "files_done": 1,
        "files_quarantined": 0,
    }
    path = marker_path(run_dirs.output_dir)
    path.parent.mkdir(parents=True)  # the state folder, before the first start
    path.write_text(json.dumps(marker))
    with capture_logs() as logs:
        run = await start_run()
        await run.sweep()
    (unreadable,) = events(logs, "run_complete_marker_unreadable")
    assert "stop_file must be a string, got null" in unreadable["detail"]
    assert run.phase == "complete"
    assert (await run.client.get("/status")).status == 200


async def test_a_marker_where_earlier_versions_kept_it_is_taken_over(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    """A run completed by a version that kept the marker in OUTPUTDIR stays complete: the
    marker moves into the state folder, where engines cannot remove it, once."""
    legacy = run_dirs.output_dir / "reactor-run-complete.json"
    legacy.write_text(
        json.dumps(
            {
                "state": "finished",
                "completed_at": "2026-11-25T10:00:00+00:00",
                "stop_file": str(run_dirs.input_dir / SUMMARY),
                "files_done": 1,
                "files_quarantined": 0,
                "exit_code": 0,
            }
        )
    )
    with capture_logs() as logs:
        run = await start_run()
        await run.sweep()
    (moved,) = events(logs, "run_complete_marker_moved")
    assert moved["was"] == str(legacy.absolute())
    assert not legacy.exists()
    marker = read_marker(marker_path(run_dirs.output_dir))
    assert marker is not None
    assert marker.state is MarkerState.FINISHED
    assert run.phase == "complete"
    assert events(logs, "run_already_complete")


async def test_a_marker_planted_where_earlier_versions_kept_it_is_not_taken_over_later(
    start_run: StartRun, run_dirs: RunDirs
) -> None:
    """Once the state folder exists, a `reactor-run-complete.json` in OUTPUTDIR (where
    engines write) is not reactor's: a restart leaves it, and the run is not complete."""
    first = await start_run()
    await first.client.close()
    planted = run_dirs.output_dir / "reactor-run-complete.json"
    planted.write_text(
        json.dumps(
            {
                "state": "finished",
                "completed_at": "2026-11-25T10:00:00+00:00",
                "stop_file": str(run_dirs.input_dir / SUMMARY),
                "files_done": 0,
                "files_quarantined": 0,
                "exit_code": 0,
            }
        )
    )
    with capture_logs() as logs:
        run = await start_run()
        await run.sweep()
    assert events(logs, "run_complete_marker_moved") == []
    assert planted.exists()
    assert read_marker(marker_path(run_dirs.output_dir)) is None
    assert run.phase != "complete"
