"""One job's trouble stays that job's (docs/architecture.md, "Invariants").

A step after a committed decision that fails holds the job, its decision standing, and
the steps are finished at the next periodic reconcile or at the next start; a job whose
expiry cannot be recorded stays live while the others expire; a part of a sweep that
raises does not keep the other parts from running.
"""

from __future__ import annotations

import errno
import itertools

import pytest
from structlog.testing import capture_logs

from reactor.core.names import POD5_SIGNATURE
from reactor.core.state import FileState, Job, JobState
from reactor.disk.durable import Sync
from reactor.disk.journal import Journal, JournalError, Step
from reactor.serve.service import Reactor, StepsLeft
from reactor.serve.sweeper import Sweeper
from tests.support.runs import ManualClock, RunDirs
from tests.support.started import STARTED

LEASE_S = 60.0


class FailOnce:
    """A journal checkpoint that raises EIO the first time `step` is reached."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.fired = False

    def __call__(self, step: str) -> None:
        if step == self.step and not self.fired:
            self.fired = True
            raise OSError(errno.EIO, "injected I/O error")


pytestmark = pytest.mark.usefixtures("stop_started_reactors")


def start(
    dirs: RunDirs, clock: ManualClock, checkpoint: FailOnce | None = None, first_id: int = 1
) -> Reactor:
    config = dirs.config(report_back_interval=LEASE_S, reconcile_interval=60.0)
    journal = Journal(config.input_dir, config.output_dir, checkpoint or (lambda _step: None))
    numbers = itertools.count(first_id)
    reactor = Reactor(
        config, clock=clock, journal=journal, job_id_factory=lambda: str(next(numbers))
    )
    reactor.start()
    STARTED.append(reactor)
    return reactor


def add_files(dirs: RunDirs, count: int) -> None:
    for n in range(count):
        (dirs.input_dir / f"f{n}.pod5").write_bytes(POD5_SIGNATURE + b"\0" * 32 + POD5_SIGNATURE)


def basecall(reactor: Reactor, job: Job) -> None:
    for name in job.files:
        fastq = reactor.journal.output_folder(job) / "pass" / name.replace(".pod5", ".fastq")
        fastq.write_text("@r\nACGT\n+\n!!!!\n")


def merged(dirs: RunDirs) -> list[str]:
    return sorted(path.name for path in (dirs.output_dir / "pass").iterdir())


async def held_merge(dirs: RunDirs, clock: ManualClock) -> tuple[Reactor, Job]:
    """A DONE decided on disk whose second output could not be moved: held."""
    add_files(dirs, 4)
    reactor = start(dirs, clock, FailOnce("merge:output_moved"))
    job = await reactor.assign("e1", 2)
    assert job is not None
    basecall(reactor, job)
    with pytest.raises(StepsLeft):
        await reactor.complete(job.job_id, "DONE")
    assert [held.job_id for held in reactor.state.held_jobs()] == [job.job_id]
    assert {reactor.state.files[name].state for name in job.files} == {FileState.DONE}
    return reactor, job


async def test_steps_left_are_finished_at_the_next_reconcile_while_other_jobs_go_on(
    run_dirs: RunDirs,
) -> None:
    clock = ManualClock()
    reactor, job = await held_merge(run_dirs, clock)
    other = await reactor.assign("e2", 2)  # the run goes on meanwhile
    assert other is not None
    basecall(reactor, other)
    await reactor.complete(other.job_id, "DONE")
    sweeper = Sweeper(reactor, clock=clock, interval_s=5.0, reconcile_interval_s=60.0)
    with capture_logs() as logs:
        await sweeper.sweep_once(clock.advance(61.0))
    assert list(reactor.state.held_jobs()) == []
    assert [entry["event"] for entry in logs if "held" in entry["event"]] == ["job_no_longer_held"]
    assert len(merged(run_dirs)) == 4
    assert not (run_dirs.input_dir / f"ASSIGNED_{job.job_id}_e1").exists()


async def test_steps_left_are_finished_at_the_next_start(run_dirs: RunDirs) -> None:
    clock = ManualClock()
    reactor, job = await held_merge(run_dirs, clock)
    await reactor.stop()
    restarted = start(run_dirs, clock, first_id=100)
    assert list(restarted.state.held_jobs()) == []
    assert len(merged(run_dirs)) == 2
    assert (run_dirs.output_dir / f"LOGOUTPUT_{job.job_id}_e1").is_dir()


class Unrecordable(Step[None]):
    """An expiry whose record cannot be written."""

    def prepare(self, sync: Sync) -> None:
        msg = "could not expire it: injected"
        raise JournalError(errno.EIO, msg)


async def test_a_job_whose_expiry_cannot_be_recorded_stays_live_and_the_others_expire(
    run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_files(run_dirs, 2)
    clock = ManualClock()
    reactor = start(run_dirs, clock)
    stuck = await reactor.assign("e1", 1)
    gone = await reactor.assign("e2", 1)
    assert stuck is not None
    assert gone is not None
    expire_step = reactor.journal.expire_step

    def expire_but_one(job: Job) -> Step[None]:
        return Unrecordable() if job.job_id == stuck.job_id else expire_step(job)

    monkeypatch.setattr(reactor.journal, "expire_step", expire_but_one)
    with capture_logs() as logs:
        expired = await reactor.expire_due(clock.advance(LEASE_S + 1))
    assert [job.job_id for job in expired] == [gone.job_id]
    assert reactor.state.jobs[stuck.job_id].state is JobState.ASSIGNED
    assert reactor.state.jobs[gone.job_id].state is JobState.EXPIRED
    assert [entry["job_id"] for entry in logs if entry["event"] == "expiry_failed"] == [
        stuck.job_id
    ]


async def test_a_sweep_part_that_raises_does_not_stop_the_others(
    run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_files(run_dirs, 1)
    clock = ManualClock()
    reactor = start(run_dirs, clock)
    job = await reactor.assign("e1", 1)
    assert job is not None

    def broken(_now: float) -> None:
        msg = "a bug in one part"
        raise RuntimeError(msg)

    monkeypatch.setattr(reactor, "settle", broken)
    ended: list[bool] = []
    sweeper = Sweeper(
        reactor,
        clock=clock,
        interval_s=5.0,
        reconcile_interval_s=60.0,
        end_of_run=lambda: ended.append(True),
    )
    with capture_logs() as logs:
        expired = await sweeper.sweep_once(clock.advance(LEASE_S + 1))
    assert [j.job_id for j in expired] == [job.job_id]
    assert reactor.reconciles == 1
    assert ended == [True]
    assert [entry.get("part") for entry in logs if entry["event"] == "sweep_failed"] == ["settle"]
