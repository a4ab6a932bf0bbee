"""A scripted run whose every change on disk is recorded: the material of crash states.

`record_run` drives a real `Reactor`, durable (every fsync the service makes), through
one run that takes every journal transition: assignments, a DONE merged, a FAILED whose
files are requeued and one whose file is quarantined (max_attempts 1, alone), a RELEASED,
an unknown state set aside, an expiry followed by a late DONE that is merged, a supersede
by reassignment followed by a late DONE that is not, a refused DONE (a link among the
outputs), the quarantines released with `requeue`, and one job left live at the end.
Job ids count up from 1, the clock is moved by hand, the `.pod5` files are real, and the
stand-in engine writes one FASTQ per input whose record names are the input's read ids
(each file's first read passes dorado's `qs` threshold, the second does not).
A `Recorder` (tests/support/crash_states.py) records every change and fsync, what the
engine writes, and each answer as it goes out; tests/support/crash_checks.py checks what
a power cut anywhere in it leaves.

The run is recorded in the seed's output layout (`pass/`, `fail/`) or in MinKNOW's
(`fastq_pass/`, `fastq_fail/`; docs/journal.md, "Done"). In MinKNOW's, the reads of a
DONE are first written again, split, into `.reactor/split/<job>/` by the service's read
worker, another process, out of fsops' sight: `SplitRecorder` records each such file as
made, whole, when reactor first fsyncs it (see there).
"""

from __future__ import annotations

import itertools
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dnaio
from structlog.testing import capture_logs

from reactor.core.state import CompletionAction, Job
from reactor.disk.journal import Journal
from reactor.disk.state_dir import SPLIT
from reactor.serve.service import Reactor
from reactor.settings.serve import ServeConfig
from tests.support.blocking import Blocking
from tests.support.crash_states import Answer, Model, Op, Recorder, on_disk
from tests.support.exactly_once import fastq_record_names, pod5_read_ids
from tests.support.fs_recorder import FSYNC, MKDIR, PUT, RMDIR
from tests.support.pod5files import write_pod5
from tests.support.runs import ManualClock, RunDirs

LEASE_S = 60.0
N_FILES = 10
READS_PER_FILE = 2
LAYOUTS = ("seed", "minknow")
# dorado's mean quality of each read of an input, in turn: above the run's pass threshold
# (9 by default: reactor/core/params.py), then below; so MinKNOW's layout fills both
# fastq_pass/ and fastq_fail/ (the seed's takes the engine's pass/ as it is).
QSCORES = (12.0, 5.0)
MINKNOW_FOLDERS = ("fastq_pass", "fastq_fail")


def fastq(read_ids: Iterable[str]) -> bytes:
    """The stand-in engine's output for one input: one record per read, named by its id,
    with dorado's `qs` tag."""
    records = (
        f"@{read_id}\tqs:f:{QSCORES[n % len(QSCORES)]:g}\nACGT\n+\nIIII\n"
        for n, read_id in enumerate(read_ids)
    )
    return "".join(records).encode()


def merged_outputs(output_dir: Path) -> dict[str, list[str] | None]:
    """The merged outputs of either layout, by path below OUTPUTDIR: each file's record
    names, read by the tests (None: a file that cannot be read as FASTQ)."""
    found: dict[str, list[str] | None] = {}
    for kind in ("pass", "fail"):
        for path in sorted((output_dir / kind).glob("*.fastq")):
            found[f"{kind}/{path.name}"] = fastq_record_names(path.read_text())
    for folder in MINKNOW_FOLDERS:
        for path in sorted((output_dir / folder).rglob("*.fastq.gz")):
            found[path.relative_to(output_dir).as_posix()] = _gzipped_names(path)
    return found


def _gzipped_names(path: Path) -> list[str] | None:
    try:
        with dnaio.open(path) as reader:
            return [record.name.split()[0] for record in reader]
    except Exception:  # a gzip or FASTQ broken anywhere: whatever dnaio raises for it
        return None


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
    layout: str = "seed"  # the output layout (`output_layout`): one of LAYOUTS


# ------------------------------------------------------------------ the recorder


class SplitRecorder(Recorder):
    """A `Recorder` that also sees the files reactor's read worker writes, in another
    process and not through fsops, into `split` (`.reactor/split/<job>/`).

    The worker writes a job's split files whole and closes them before the service's
    writer makes them durable (`Journal._make_split_durable`: each file fsynced, then
    its folder, then `split`), and those fsyncs do come through `fsops.fsync`. So the
    first fsync of anything in a job's split folder the recording has not made is
    preceded here by that folder made and each file in it put with its content then:
    none of it durable until its own fsync, its names not until their folder's, as for
    every other file. Only the time of the writes moves, a little later (to just before
    the first fsync): a cut between the real writes and that fsync leaves what a cut
    before the writes does, a split folder the next start removes."""

    def __init__(self, root: Path, base: Path, split: Path) -> None:
        super().__init__(root, base)
        self.split = self._relative(split.resolve())
        self._made: set[str] = set()  # the job split folders recorded as made

    def _observe(self, operation: str, args: tuple[Any, ...]) -> None:
        if operation == FSYNC:
            (fd,) = args
            folder = self._job_folder(self._of(fd))
            if folder is not None and folder not in self._made:
                self._made_elsewhere(folder)
        elif operation == RMDIR:  # a job's split folder gone: if split again, made afresh
            dir_fd, name = args
            self._made.discard(self._at(dir_fd, name))
        super()._observe(operation, args)

    def _job_folder(self, path: str) -> str | None:
        """The job split folder `path` is in (or is), if any."""
        inside = f"{self.split}/"
        if not path.startswith(inside):
            return None
        return inside + path.removeprefix(inside).split("/", 1)[0]

    def _made_elsewhere(self, folder: str) -> None:
        where = self.root / folder
        self._add(Op(MKDIR, folder))
        for entry in sorted(os.scandir(where), key=lambda e: e.name):
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                msg = f"{folder}/{entry.name}: the read worker writes plain files only"
                raise AssertionError(msg)
            self._add(Op(PUT, f"{folder}/{entry.name}", data=Path(entry.path).read_bytes()))
        self._made.add(folder)


# ------------------------------------------------------------------ the script


class _Script:
    """The recorded run's steps: a reactor, its clock, the stand-in engine, and the
    answers marked as they go out."""

    def __init__(
        self,
        reactor: Blocking,
        clock: ManualClock,
        recorder: Recorder,
        reads: dict[str, list[str]],
        layout: str,
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.recorder = recorder
        self.reads = reads
        self.layout = layout

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
        before = merged_outputs(self.output_dir)
        plan = self.reactor.complete(job.job_id, report)
        assert plan.action is expected, (job.job_id, report, plan)
        details: dict[str, Any] = {"job": job.job_id, "files": sorted(job.files)}
        if expected is CompletionAction.MERGE:
            outputs = self._merged(job, before)
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

    @property
    def output_dir(self) -> Path:
        journal: Journal = self.reactor.journal
        return journal.output_dir

    def _merged(self, job: Job, before: dict[str, list[str] | None]) -> dict[str, list[str]]:
        """A merged DONE's outputs (path below OUTPUTDIR -> record names), all there.
        The seed's are the engine's files, tagged, in pass/. MinKNOW's are named by the
        run info and a batch number: they are the files the merge added, which between
        them hold each read of the job's files once."""
        if self.layout == "seed":
            tag = f"job_id_{job.job_id}_"
            outputs = {
                f"pass/{tag}{name.removesuffix('.pod5')}.fastq": self.reads[name]
                for name in job.files
            }
        else:
            added = {p: n for p, n in merged_outputs(self.output_dir).items() if p not in before}
            outputs = {path: names for path, names in added.items() if names is not None}
            assert outputs == added, f"a merged output dnaio cannot read: {added}"
            held = Counter(read for names in outputs.values() for read in names)
            assert held == Counter(r for name in job.files for r in self.reads[name]), outputs
        on_disk_now = merged_outputs(self.output_dir)
        assert all(on_disk_now.get(path) == names for path, names in outputs.items()), outputs
        return outputs

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


def record_run(workdir: Path, layout: str = "seed") -> Recording:
    """Run the script on `workdir/run` in the output `layout`, recorded; the base copy
    goes to `workdir/base`. The ops replayed on the base must rebuild exactly what the
    run left: a change the recording missed would make every state built from it wrong."""
    if layout not in LAYOUTS:
        msg = f"the output layout {layout!r} is none of {', '.join(LAYOUTS)}"
        raise ValueError(msg)
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
    config = run_config(dirs, layout)
    journal = Journal(config.input_dir, config.output_dir, durable=True)
    reactor = Blocking(Reactor(config, clock=clock, journal=journal, job_id_factory=counter_ids(1)))
    with capture_logs():
        reactor.recovered = reactor.start()
        try:
            split = journal.state.path / SPLIT
            with SplitRecorder(root, workdir / "base", split) as recorder:
                _run_script(_Script(reactor, clock, recorder, reads, layout))
        finally:
            reactor.close()
            journal.close()
    recording = Recording(root, workdir / "base", recorder.ops, recorder.answers, reads, layout)
    _check_replay(recording)
    return recording


def run_config(dirs: RunDirs, layout: str, **overrides: Any) -> ServeConfig:
    """The recorded run's settings (and, with `durability="none"`, recovery's)."""
    return dirs.config(
        report_back_interval=LEASE_S,
        max_attempts=1,
        bench_after=0,
        output_layout=layout,
        **overrides,
    )


def _check_replay(recording: Recording) -> None:
    model = Model(recording.base)
    for op in recording.ops:
        model.apply(op)
    replayed = {entry.path: entry for entry in model.now()}
    there = {entry.path: entry for entry in on_disk(recording.root)}
    if replayed != there:
        differ = sorted(
            p for p in replayed.keys() | there.keys() if replayed.get(p) != there.get(p)
        )
        msg = f"the recording missed changes on disk: {differ[:5]}"
        raise AssertionError(msg)
