"""A scripted run whose every change on disk is recorded: the material of crash states.

`record_run` drives a real `Reactor`, durable (every fsync the service makes), through
one run that takes every journal transition: assignments, a DONE merged, a FAILED whose
files are requeued and one whose file is quarantined (max_attempts 1, alone), a RELEASED,
an unknown state set aside, an expiry followed by a late DONE that is merged, a supersede
by reassignment followed by a late DONE that is not, a refused DONE (a link among the
outputs), the quarantines released with `requeue`, and one job left live at the end.
Job ids count up from 1, the clock is moved by hand, the `.pod5` files are real, and the
stand-in engine writes one FASTQ per input whose record names are the input's read ids.
A `Recorder` (tests/support/crash_states.py) records every change and fsync, what the
engine writes, and each answer as it goes out; tests/support/crash_checks.py checks what
a power cut anywhere in it leaves.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from reactor.core.state import CompletionAction, Job
from reactor.disk.journal import Journal
from reactor.serve.service import Reactor
from tests.support.blocking import Blocking
from tests.support.crash_states import Answer, Op, Recorder
from tests.support.exactly_once import pod5_read_ids
from tests.support.pod5files import write_pod5
from tests.support.runs import ManualClock, RunDirs

LEASE_S = 60.0
N_FILES = 10
READS_PER_FILE = 2


def fastq(read_ids: Iterable[str]) -> bytes:
    """The stand-in engine's output for one input: one record per read, named by its id."""
    return "".join(f"@{read_id}\nACGT\n+\nIIII\n" for read_id in read_ids).encode()


def counter_ids(start: int) -> Callable[[], str]:
    numbers = itertools.count(start)
    return lambda: str(next(numbers))


@dataclass(frozen=True)
class Recording:
    """A recorded run: the base it started from, its ops and answers, and the reads."""

    root: Path  # the run's root (input/, output/) as the run left it
    base: Path  # the same as it was when recording began
    ops: list[Op]
    answers: list[Answer]
    reads: dict[str, list[str]]  # each .pod5's read ids, read with the pod5 library


# ------------------------------------------------------------------ the script


class _Script:
    """The recorded run's steps: a reactor, its clock, the stand-in engine, and the
    answers marked as they go out."""

    def __init__(
        self, reactor: Blocking, clock: ManualClock, recorder: Recorder, reads: dict[str, list[str]]
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.recorder = recorder
        self.reads = reads

    def assign(self, engine_id: str, batch_size: int) -> Job:
        superseded_before = self._superseded()
        job = self.reactor.assign(engine_id, batch_size)
        assert job is not None
        for job_id in sorted(self._superseded() - superseded_before):
            self.recorder.answered("superseded", {"job": job_id})
        details = {"job": job.job_id, "engine": engine_id, "files": sorted(job.files)}
        self.recorder.answered("assigned", details)
        return job

    def _superseded(self) -> set[str]:
        return {job.job_id for job in self.reactor.state.jobs.values() if job.superseded}

    def basecall(self, job: Job) -> None:
        """The stand-in engine: one FASTQ per input in the job's pass/ (never fsynced)."""
        out = self.reactor.journal.output_folder(job) / "pass"
        for name in job.files:
            path = out / f"{name.removesuffix('.pod5')}.fastq"
            data = fastq(self.reads[name])
            path.write_bytes(data)
            self.recorder.engine_wrote(path, data)

    def link_among_outputs(self, job: Job) -> None:
        """A hostile engine's output: a link, which makes its DONE refused."""
        path = self.reactor.journal.output_folder(job) / "pass" / "sneaky.fastq"
        path.symlink_to("/etc/hostname")
        self.recorder.engine_linked(path, "/etc/hostname")

    def complete(self, job: Job, report: str, expected: CompletionAction) -> None:
        plan = self.reactor.complete(job.job_id, report)
        assert plan.action is expected, (job.job_id, report, plan)
        details: dict[str, Any] = {"job": job.job_id, "files": sorted(job.files)}
        if expected is CompletionAction.MERGE:
            tag = f"job_id_{job.job_id}_"
            outputs = {
                f"{tag}{name.removesuffix('.pod5')}.fastq": self.reads[name] for name in job.files
            }
            self.recorder.answered("done", details | {"outputs": outputs})
        elif expected is CompletionAction.FAIL:
            details |= {"quarantine": sorted(plan.quarantine), "requeue": sorted(plan.requeue)}
            self.recorder.answered("failed", details)
        else:
            kinds = {
                CompletionAction.REFUSE: "refused",
                CompletionAction.RELEASE: "released",
                CompletionAction.SET_ASIDE: "unknown",
                CompletionAction.LATE_NOT_MERGED: "late_not_merged",
            }
            self.recorder.answered(kinds[expected], details)

    def expire(self, job: Job) -> None:
        """The lease runs out; the sweeper expires the job (the only one live)."""
        expired = self.reactor.expire_due(self.clock.advance(LEASE_S + 1))
        assert [j.job_id for j in expired] == [job.job_id]
        self.recorder.answered("expired", {"job": job.job_id, "files": sorted(job.files)})

    def requeue_all(self) -> None:
        released = self.reactor.requeue(None)
        assert released
        for folder, names in sorted(released.items()):
            self.recorder.answered("requeued", {"folder": folder, "files": sorted(names)})


def _run_script(s: _Script) -> None:
    merged = s.assign("e1", 2)
    s.basecall(merged)
    s.complete(merged, "DONE", CompletionAction.MERGE)

    batch = s.assign("e1", 2)  # a batch failing: its files go back, in halves
    s.basecall(batch)
    s.complete(batch, "FAILED", CompletionAction.FAIL)
    alone = s.assign("e1", 1)  # one of them failing alone: quarantined (max_attempts 1)
    s.complete(alone, "FAILED", CompletionAction.FAIL)

    handed_back = s.assign("e1", 2)
    s.basecall(handed_back)
    s.complete(handed_back, "RELEASED", CompletionAction.RELEASE)

    stopped = s.assign("e1", 2)
    s.complete(stopped, "STOPPED", CompletionAction.SET_ASIDE)

    late = s.assign("e1", 2)  # expires, then its DONE comes: its files were not out again
    s.basecall(late)
    s.expire(late)
    s.complete(late, "DONE", CompletionAction.MERGE)

    overtaken = s.assign("e1", 2)  # expires, and its files go to another engine
    s.basecall(overtaken)
    s.expire(overtaken)
    taker = s.assign("e2", 2)
    assert set(taker.files) == set(overtaken.files)
    s.complete(overtaken, "DONE", CompletionAction.LATE_NOT_MERGED)
    s.basecall(taker)
    s.complete(taker, "DONE", CompletionAction.MERGE)

    hostile = s.assign("e1", 2)
    s.basecall(hostile)
    s.link_among_outputs(hostile)
    s.complete(hostile, "DONE", CompletionAction.REFUSE)

    s.requeue_all()

    left_live = s.assign("e1", 2)
    s.basecall(left_live)


def run_dirs(root: Path) -> RunDirs:
    return RunDirs(root / "input", root / "output")


def record_run(workdir: Path) -> Recording:
    """Run the script on `workdir/run`, recorded; the base copy goes to `workdir/base`."""
    root = workdir / "run"
    dirs = run_dirs(root)
    dirs.input_dir.mkdir(parents=True)
    dirs.output_dir.mkdir()
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(N_FILES)]
    for i, name in enumerate(names):
        write_pod5(dirs.input_dir / name, READS_PER_FILE, seed=i)
    # Read back with the pod5 library itself, not taken from the writer's word.
    reads = {name: pod5_read_ids(dirs.input_dir / name) for name in names}
    clock = ManualClock()
    config = dirs.config(report_back_interval=LEASE_S, max_attempts=1, bench_after=0)
    journal = Journal(config.input_dir, config.output_dir, durable=True)
    reactor = Blocking(Reactor(config, clock=clock, journal=journal, job_id_factory=counter_ids(1)))
    with capture_logs():
        reactor.recovered = reactor.start()
        try:
            with Recorder(root, workdir / "base") as recorder:
                _run_script(_Script(reactor, clock, recorder, reads))
        finally:
            reactor.close()
            journal.close()
    return Recording(root, workdir / "base", recorder.ops, recorder.answers, reads)
