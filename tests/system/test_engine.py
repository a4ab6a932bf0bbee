"""`reactor engine` end to end: a real `reactor serve` process, real engine processes, real
.pod5 files, real commands (reactor's fake basecaller, `sh`, `sleep`). Every scenario ends
with every read id of every input in pass/+fail/ exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_run import (
    FAKE,
    SLOW_FAKE,
    Engine,
    Run,
    gone,
)
from tests.support.records import job_record, job_records
from tests.support.served import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    the_run = Run(tmp_path)
    yield the_run
    the_run.stop()


def started_command(engine: Engine) -> dict[str, Any]:
    """The engine's first `command_started` event, once it has one."""
    wait_for(lambda: engine.has("command_started"), 15, f"a command to start ({engine.log})")
    return engine.events("command_started")[0]


def test_two_engines_basecall_every_read_once_and_exit_when_the_queue_is_empty(run: Run) -> None:
    """Two engines (a preset, a template) with --until-empty share the run and exit 0."""
    run.add_files(12)
    run.start_server()
    first = run.start_engine("gpu-a", "--preset", "fake", "--batch-size", "2", "--until-empty")
    second = run.start_engine("gpu-b", "--command", FAKE, "--batch-size", "3", "--until-empty")
    assert first.wait(30) == 0
    assert second.wait(30) == 0
    assert run.all_done()
    reported = first.events("job_reported") + second.events("job_reported")
    assert {e["state"] for e in reported} == {"DONE"}
    assert len(reported) == len(run.server_events("job_done"))
    # the command's stderr stays with the job's leftovers
    logs = list(run.output_dir.glob("LOGOUTPUT_*/engine.log"))
    assert len(logs) == len(reported)
    assert all("reactor fake-basecaller: files=" in path.read_text() for path in logs)
    run.assert_exactly_once()


def test_a_failing_command_reports_failed_and_a_healthy_engine_redoes_the_files(run: Run) -> None:
    """Exit 1 -> FAILED -> the files go back to the queue and another engine does them."""
    run.add_files(6)
    run.start_server()
    failing = "sh -c 'echo failing on purpose >&2; exit 1'"
    bad = run.start_engine("gpu-bad", "--command", failing, "--batch-size", "4", "--once")
    assert bad.wait(20) == 0
    (exited,) = bad.events("command_exited")
    assert exited["exit_code"] == 1
    assert [e["state"] for e in bad.events("job_reported")] == ["FAILED"]
    assert len(run.server_events("job_failed")) == 1
    (retried,) = run.output_dir.glob("RETRIEDOUTPUT_*_gpu-bad")
    assert "failing on purpose" in (retried / "engine.log").read_text()
    good = run.start_engine("gpu-good", "--preset", "fake", "--until-empty")
    assert good.wait(30) == 0
    assert run.all_done()
    run.assert_exactly_once()


def test_an_engine_killed_mid_batch_loses_its_lease_and_another_engine_finishes(
    run: Run,
) -> None:
    """SIGKILL of an engine: its job expires and a second engine does the files."""
    run.add_files(6)
    run.start_server()
    doomed = run.start_engine("gpu-doomed", "--command", "sleep 30", "--batch-size", "4")
    run.orphans.append(started_command(doomed)["pid"])  # its own session: it outlives the engine
    doomed.process.kill()
    doomed.wait(10)
    healthy = run.start_engine("gpu-healthy", "--preset", "fake")
    wait_for(run.all_done, 30, "all files done by the healthy engine")
    healthy.signal(signal.SIGTERM)
    assert healthy.wait(15) == 0
    assert [e["engine_id"] for e in run.server_events("job_expired")] == ["gpu-doomed"]
    run.assert_exactly_once()


def test_engines_ride_out_a_manager_killed_and_restarted_mid_run(run: Run) -> None:
    """kill -9 of the manager while batches run; restarted on the same port, the run ends."""
    run.add_files(12)
    run.start_server()
    engines = [
        run.start_engine(engine_id, "--command", SLOW_FAKE, "--batch-size", "2")
        for engine_id in ("gpu-a", "gpu-b")
    ]
    wait_for(lambda: run.files_done() >= 2, 30, "some files done")
    wait_for(lambda: bool(run.status()["jobs"]["live"]), 10, "a batch in hand")
    assert run.server is not None
    run.server.kill()
    run.server.wait(timeout=10)
    wait_for(
        lambda: any(engine.has("manager_unreachable") for engine in engines),
        15,
        "an engine to notice the manager is gone",
    )
    run.start_server()
    wait_for(run.all_done, 40, "all files done after the restart")
    for engine in engines:
        engine.signal(signal.SIGTERM)
    assert [engine.wait(15) for engine in engines] == [0, 0]
    assert any(engine.has("manager_reachable") for engine in engines)
    assert not any(engine.has("job_abandoned") for engine in engines)
    run.assert_exactly_once()


def test_a_late_keepalive_stops_the_command_and_reports_nothing(run: Run) -> None:
    """An engine frozen past its lease hears `late: true`: it stops the command, no DONE."""
    run.add_files(3)
    run.start_server()
    frozen = run.start_engine("gpu-frozen", "--command", "sleep 30", "--once")
    started = started_command(frozen)
    job_id = started["job_id"]
    frozen.signal(signal.SIGSTOP)  # no keepalives from here on; the command runs on
    try:
        wait_for(lambda: bool(run.server_events("job_expired")), 15, "the job to expire")
    finally:
        frozen.signal(signal.SIGCONT)
    assert frozen.wait(20) == 0
    assert [e["job_id"] for e in frozen.events("job_late")] == [job_id]
    assert frozen.has("command_stopped")
    assert not frozen.has("job_reported")
    wait_for(lambda: gone(started["pid"]), 5, "the stopped command to be gone")
    rescuer = run.start_engine("gpu-rescuer", "--preset", "fake", "--until-empty")
    assert rescuer.wait(30) == 0
    assert job_id not in {e["job_id"] for e in run.server_events("job_done")}
    run.assert_exactly_once()


def merged_attempts(run: Run) -> dict[str, int]:
    """Each merged file's attempt, from the DONE jobs' records."""
    attempts: dict[str, int] = {}
    for record in job_records(run.output_dir):
        if record["state"] == "done":
            attempts.update(record["files"])
    return attempts


def merged_by(run: Run, engine_id: str) -> set[str]:
    """The files merged from jobs of `engine_id`."""
    merged: set[str] = set()
    for record in job_records(run.output_dir):
        if record["state"] == "done" and record["engine_id"] == engine_id:
            merged.update(record["files"])
    return merged


def test_first_signal_finishes_the_batch_second_signal_stops_it(run: Run) -> None:
    """SIGTERM once: the batch in hand is finished, DONE, exit 0. Twice: the batch is
    handed back, RELEASED, exit 1; another engine basecalls its files once, at attempt 1."""
    run.add_files(4)
    run.start_server()
    calm = run.start_engine("gpu-calm", "--command", SLOW_FAKE, "--batch-size", "2")
    started_command(calm)
    calm.signal(signal.SIGTERM)
    assert calm.wait(20) == 0
    assert [e["state"] for e in calm.events("job_reported")] == ["DONE"]
    assert len(calm.events("job_received")) == 1

    hasty = run.start_engine("gpu-hasty", "--command", "sleep 30", "--batch-size", "2")
    command = started_command(hasty)
    hasty.signal(signal.SIGTERM)
    wait_for(lambda: hasty.has("stopping"), 10, "the first signal to be taken")
    hasty.signal(signal.SIGTERM)
    assert hasty.wait(20) == 1
    assert [e["state"] for e in hasty.events("job_reported")] == ["RELEASED"]
    assert gone(command["pid"])
    assert [e["job_id"] for e in run.server_events("job_released")] == [command["job_id"]]
    assert not run.server_events("job_failed")
    assert run.output_dir.joinpath(f"RELEASEDOUTPUT_{command['job_id']}_gpu-hasty").is_dir()
    handed_back = set(job_record(run.output_dir, command["job_id"])["files"])
    assert len(handed_back) == 2
    (hasty_engine,) = [e for e in run.status()["engines"] if e["engine_id"] == "gpu-hasty"]
    assert (hasty_engine["jobs_released"], hasty_engine["jobs_failed"]) == (1, 0)

    rest = run.start_engine("gpu-rest", "--preset", "fake", "--until-empty")
    assert rest.wait(30) == 0
    run.assert_exactly_once()
    assert handed_back <= merged_by(run, "gpu-rest")
    assert merged_attempts(run) == dict.fromkeys(run.read_ids, 1)  # no attempt counted


def test_release_after_hands_the_batch_back_while_the_first_signal_waits(run: Run) -> None:
    """Slurm's --signal=B:TERM@S with --release-after: a batch still running that long
    after the one SIGTERM is handed back (RELEASED), the engine exits 0, and another
    engine basecalls its files once, at attempt 1."""
    run.add_files(4)
    run.start_server()
    timed = run.start_engine(
        "gpu-timed", "--command", "sleep 30", "--batch-size", "2", "--release-after", "1.5"
    )
    command = started_command(timed)
    timed.signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_for(lambda: timed.has("stopping"), 10, "the signal to be taken")
    time.sleep(0.5)
    assert timed.process.poll() is None  # still finishing its batch, as a first signal asks
    assert not timed.has("job_reported")
    assert timed.wait(20) == 0
    assert time.monotonic() - signalled >= 1.5
    assert [e["release_after_s"] for e in timed.events("release_due")] == [1.5]
    assert [e["state"] for e in timed.events("job_reported")] == ["RELEASED"]
    assert len(timed.events("job_received")) == 1
    assert gone(command["pid"])
    (released,) = run.server_events("job_released")
    assert (released["job_id"], released["files"]) == (command["job_id"], 2)

    rest = run.start_engine("gpu-rest", "--preset", "fake", "--until-empty")
    assert rest.wait(30) == 0
    run.assert_exactly_once()
    assert merged_by(run, "gpu-rest") == set(run.read_ids)
    assert merged_attempts(run) == dict.fromkeys(run.read_ids, 1)


def test_an_idle_engine_is_held_by_the_manager_and_takes_a_new_file_at_once(run: Run) -> None:
    """Long-poll: an engine that found nothing waits in its request (wait_for_work, 60 s
    by default) and takes a file the moment it is ready. This one polls every 30 s
    otherwise, so its command starting within 15 s of the file is the long-poll's doing."""
    run.start_server()
    engine = run.start_engine(
        "gpu-waits", "--preset", "fake", "--poll-interval", "30", "--max-poll-interval", "30"
    )
    wait_for(lambda: run.status()["engines_waiting"] == 1, 15, "the engine to wait")
    run.add_files(1)
    wait_for(lambda: engine.has("command_started"), 15, "the engine to take the new file")
    wait_for(run.all_done, 15, "the file done")
    engine.signal(signal.SIGTERM)
    assert engine.wait(30) == 0  # a waiting engine stops at once on SIGTERM
