"""The fleet against a real Slurm: submissions, the queue read back, cancels, backoff,
adoption. The fleet is driven tick by tick on a manual clock with a work source the
test sets; the jobs are real (their engine is a sleeping stand-in here: the end-to-end
runs with real engines are in tests/system/test_fleet_served.py)."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from reactor.cluster.fleet import Fleet
from reactor.core.fleet import EngineSeen, EngineWork
from reactor.ops.fleet_view import fleet_lines
from reactor.ops.status_view import Glyphs
from reactor.settings.fleet import FleetConfig
from tests.support.runs import ManualClock
from tests.support.slurm import SlurmCluster

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, name: str, **changes: object) -> FleetConfig:
    # A stand-in for `reactor engine`: it records its arguments and sleeps, so a job
    # stays RUNNING until the test cancels it.
    stand_in = tmp_path / "engine.py"
    stand_in.write_text(
        "import os, sys, time\n"
        f"open({str(tmp_path / 'argv')!r} + os.environ['SLURM_JOB_ID'], 'w')"
        ".write('\\n'.join(sys.argv[1:]))\n"
        "time.sleep(300)\n"
    )
    config = FleetConfig(
        manager_url="http://127.0.0.1:1",
        engine_command=shlex.join([sys.executable, str(stand_in)]),
        name=name,
        max_engines=3,
        idle_s=30.0,
        time_limit="10",
        log_dir=str(tmp_path),
        check_interval=5.0,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


class Work:
    """The service's work as the test sets it."""

    def __init__(self) -> None:
        self.waiting = 0
        self.known: int | None = None  # files known; as many as wait unless set
        self.engines: dict[str, EngineSeen] = {}

    def __call__(self) -> EngineWork:
        known = self.waiting if self.known is None else self.known
        return EngineWork(self.waiting, known, 10, dict(self.engines))


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.1)


async def test_work_submits_jobs_up_to_max_and_no_more(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    clock, work = ManualClock(), Work()
    config = _config(tmp_path, "reactor-test-up")
    fleet = Fleet(config, work, clock=clock)
    await fleet.tick()
    assert slurm_env.jobs(config.name) == {}  # nothing to do, min_engines 0
    work.waiting = 45  # five batches of 10: more than max_engines
    await fleet.tick()
    assert len(slurm_env.jobs(config.name)) == 3
    for _ in range(3):  # ticks with the jobs queued or running: nothing more
        clock.advance(config.check_interval)
        await fleet.tick()
    jobs = slurm_env.jobs(config.name)
    assert len(jobs) == 3, jobs
    assert fleet.counts.submitted == 3
    _wait(lambda: len(list(tmp_path.glob("argv*"))) == 3, "three engines started")
    lines = fleet_lines(fleet.view(), Glyphs.for_encoding("utf-8"))
    assert lines[0].startswith(f"fleet    {config.name}") and "wanted 3 of 0-3" in lines[0]
    assert sum(line.startswith("  slurm ") for line in lines) == 3
    assert "submitted 3" in lines[-1]
    argv = (tmp_path / f"argv{min(jobs)}").read_text().splitlines()
    assert argv[argv.index("--manager") + 1] == config.manager_url
    assert argv[argv.index("--engine-id") + 1] == f"slurm-{min(jobs)}"
    assert argv[argv.index("--exit-when-idle") + 1] == "30"
    slurm_env.cancel_all(config.name)


async def test_a_failed_sbatch_is_reported_and_retried_with_backoff(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    clock, work = ManualClock(), Work()
    config = _config(tmp_path, "reactor-test-bad", partition="no-such-partition")
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 5
    await fleet.tick()
    assert fleet.counts.submit_failures == 1
    assert fleet.last_error is not None and "partition" in fleet.last_error.lower()
    view = fleet.view()
    assert view["failures_in_a_row"] == 1 and view["retry_in_s"] == 10.0
    shown = "\n".join(fleet_lines(view, Glyphs.for_encoding("utf-8")))
    assert "last submission failed: sbatch failed" in shown and "next try in 10 s" in shown
    clock.advance(9.0)  # within the backoff: no sbatch at all
    await fleet.tick()
    assert fleet.counts.submit_failures == 1
    clock.advance(1.0)
    await fleet.tick()  # the backoff passed: tried again, failed again, waits twice as long
    assert fleet.counts.submit_failures == 2
    assert fleet.view()["retry_in_s"] == 20.0
    # The partition fixed (as a restart with the right setting would): submitted.
    fleet.slurm.config = replace(config, partition=slurm_env.partition)
    clock.advance(20.0)
    await fleet.tick()
    assert fleet.counts.submitted == 1 and fleet.failures_in_a_row == 0
    assert len(slurm_env.jobs(config.name)) == 1
    slurm_env.cancel_all(config.name)


async def test_a_restarted_fleet_adopts_its_jobs_and_submits_none_twice(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    clock, work = ManualClock(), Work()
    config = _config(tmp_path, "reactor-test-adopt", max_engines=2)
    other = _config(tmp_path, "reactor-test-other", max_engines=1)
    work.waiting = 30
    await Fleet(config, work, clock=clock).tick()
    await Fleet(other, work, clock=clock).tick()  # another service's job, same account
    before = slurm_env.jobs(config.name)
    assert len(before) == 2
    restarted = Fleet(config, work, clock=clock)  # the service restarted: a new fleet
    await restarted.tick()
    assert set(restarted.jobs) == set(before)  # its own, not the other service's
    assert restarted.counts.adopted == 2 and restarted.counts.submitted == 0
    assert slurm_env.jobs(config.name).keys() == before.keys()
    slurm_env.cancel_all(config.name)
    slurm_env.cancel_all(other.name)


async def test_queued_jobs_not_wanted_are_cancelled_after_idle_s_never_running_ones(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    clock, work = ManualClock(), Work()
    # Two jobs: one runs, one is held in the queue (--hold), as a busy cluster would.
    config = _config(tmp_path, "reactor-test-cancel", max_engines=2, idle_s=30.0)
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 20
    await fleet.tick()
    jobs = sorted(slurm_env.jobs(config.name), key=int)
    assert len(jobs) == 2
    slurm_env.run("scontrol", "hold", jobs[1], check=False)  # may have started already
    slurm_env.run("scontrol", "requeuehold", jobs[1], check=False)
    _wait(
        lambda: slurm_env.jobs(config.name).get(jobs[0]) == "RUNNING",
        "the first job running",
    )
    _wait(
        lambda: slurm_env.jobs(config.name).get(jobs[1]) == "PENDING",
        "the second job pending",
    )
    work.waiting = 0  # the work is gone
    clock.advance(config.check_interval)
    await fleet.tick()
    assert fleet.counts.cancelled == 0  # not yet: a gap between files keeps its place
    clock.advance(config.idle_s)
    await fleet.tick()
    assert fleet.counts.cancelled == 1
    _wait(lambda: jobs[1] not in slurm_env.jobs(config.name), "the queued job cancelled")
    assert slurm_env.jobs(config.name).get(jobs[0]) == "RUNNING"  # never a running one
    slurm_env.cancel_all(config.name)


async def test_a_job_gone_while_its_engine_held_a_batch_is_replaced(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    clock, work = ManualClock(), Work()
    config = _config(tmp_path, "reactor-test-lost", max_engines=1)
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 10
    await fleet.tick()
    (job_id,) = slurm_env.jobs(config.name)
    work.waiting = 5  # its engine took a batch, some still wait
    work.engines = {f"slurm-{job_id}": EngineSeen(1.0, 1, 0, 0.0)}
    clock.advance(config.check_interval)
    await fleet.tick()
    slurm_env.run("scancel", "--signal=KILL", job_id)  # the node died
    _wait(lambda: job_id not in slurm_env.jobs(config.name), "the job gone")
    clock.advance(config.check_interval)
    await fleet.tick()
    assert fleet.counts.lost == 1 and fleet.counts.replaced == 1
    (replacement,) = slurm_env.jobs(config.name)
    assert replacement != job_id
    slurm_env.cancel_all(config.name)


async def test_through_a_command_prefix_the_commands_and_answers_are_the_same(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    """`submit_via` hands each command to the prefix as one shell line, as ssh does: a
    local shell stands in for `ssh login-node` here. A command word with a space and a
    quote arrives whole."""
    clock, work = ManualClock(), Work()
    odd = tmp_path / "an engine's folder"
    odd.mkdir()
    config = _config(odd, "reactor-test-via", max_engines=1, submit_via=("sh", "-c"))
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 3
    await fleet.tick()
    (job_id,) = slurm_env.jobs(config.name)
    assert fleet.counts.submitted == 1
    _wait(lambda: (odd / f"argv{job_id}").exists(), "the engine started")
    argv = (odd / f"argv{job_id}").read_text().splitlines()
    assert argv[argv.index("--engine-id") + 1] == f"slurm-{job_id}"
    clock.advance(config.check_interval)
    await fleet.tick()  # squeue through the prefix: the job read back, none submitted
    assert set(fleet.jobs) == {job_id} and fleet.jobs[job_id].seen_in_queue
    assert fleet.counts.submitted == 1 and fleet.queue_error is None
    slurm_env.cancel_all(config.name)


async def test_the_engines_of_its_ended_jobs_are_not_taken_for_someone_elses(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    """An engine whose job just ended is still "seen" for a while; it was the fleet's, so
    when work comes back the fleet sizes as if it were gone (not as an engine started by
    hand that covers part of the work)."""
    clock, work = ManualClock(), Work()
    work.known = 5000  # no file arrives during the test: only the backlog sizes it
    config = _config(tmp_path, "reactor-test-ended", max_engines=3)
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 1
    await fleet.tick()
    (job_id,) = slurm_env.jobs(config.name)
    slurm_env.cancel_all(config.name)  # it exited when idle
    work.waiting = 0
    work.engines = {f"slurm-{job_id}": EngineSeen(5.0, 0, 10, 10.0)}  # 1 file/s, seen 5 s ago
    clock.advance(2 * config.check_interval)  # past the grace of a job not yet seen
    await fleet.tick()
    assert fleet.jobs == {} and fleet.counts.ended == 1
    work.waiting = 1800  # 1800 files / 600 s catch-up / 1 file/s: three engines
    clock.advance(1.0)
    await fleet.tick()
    assert fleet.wanted == 3
    assert len(slurm_env.jobs(config.name)) == 3
    slurm_env.cancel_all(config.name)


async def test_jobs_whose_engine_never_reaches_the_service_back_off(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    """An engine that cannot start on the nodes (or reach the service) ends its job at
    once; resubmitting at once would repeat that all day: it backs off like a failed
    sbatch, and says what to check."""
    clock, work = ManualClock(), Work()
    config = replace(
        _config(tmp_path, "reactor-test-silent", max_engines=1),
        engine_command=shlex.join([sys.executable, "-c", "raise SystemExit(3)"]),
    )
    fleet = Fleet(config, work, clock=clock)
    work.waiting = 5
    await fleet.tick()
    _wait(lambda: slurm_env.jobs(config.name) == {}, "the job ended")
    clock.advance(2 * config.check_interval)  # past the grace of a job not yet seen
    await fleet.tick()
    assert fleet.counts.never_connected == 1 and fleet.counts.submitted == 1
    assert fleet.view()["failures_in_a_row"] == 1 and fleet.view()["retry_in_s"] == 10.0
    assert "without its engine reaching this service" in (fleet.last_error or "")
    clock.advance(5.0)
    await fleet.tick()
    assert fleet.counts.submitted == 1  # within the backoff: nothing submitted
    clock.advance(5.0)
    await fleet.tick()
    assert fleet.counts.submitted == 2  # after it: tried again
    slurm_env.cancel_all(config.name)
