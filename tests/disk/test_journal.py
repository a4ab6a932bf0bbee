"""Crash safety of the filesystem journal.

Each scenario runs one operation (assign, merge, fail, release, set aside, expire, late
merge, supersede) with a crash injected after each of its steps in turn: the journal's
checkpoint raises `SimulatedCrash`, the process's memory is thrown away, and a new
`Reactor` recovers from disk alone. The recovered state must equal the state just
before the operation (crash before its commit point) or just after it (crash at or
after the commit point), computed by a twin run without a crash; and the run must then
finish with every file's output in pass/+fail/ exactly once.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reactor.core.names import INPUT_STAGING_NAME, output_stem
from reactor.core.state import CompletionAction, FileState, Job, JobState
from reactor.disk import fsops
from reactor.disk.durable import DurabilityError
from reactor.disk.journal import Journal
from reactor.serve.service import Reactor
from tests.support.blocking import Blocking, started
from tests.support.crash_at import CrashAt, SimulatedCrash
from tests.support.pod5files import write_pod5
from tests.support.runs import ManualClock, RunDirs

LEASE_S = 60.0
N_FILES = 5


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: str(next(numbers))


@dataclass
class Run:
    dirs: RunDirs
    clock: ManualClock
    names: list[str]
    max_attempts: int
    ids: Callable[[], str]  # deterministic job ids, so a twin run is comparable

    def reactor(self, checkpoint: Callable[[str], None] | None = None) -> Blocking:
        config = self.dirs.config(report_back_interval=LEASE_S, max_attempts=self.max_attempts)
        journal = Journal(config.input_dir, config.output_dir, checkpoint or (lambda _s: None))
        return started(Reactor(config, clock=self.clock, journal=journal, job_id_factory=self.ids))


def make_run(root: Path, max_attempts: int) -> Run:
    dirs = RunDirs(root / "input", root / "output")
    dirs.input_dir.mkdir(parents=True)
    dirs.output_dir.mkdir(parents=True)
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(N_FILES)]
    for i, name in enumerate(names):
        write_pod5(dirs.input_dir / name, n_reads=2, seed=i)
    return Run(dirs, ManualClock(), names, max_attempts, counter_ids())


def basecall(reactor: Blocking, job: Job) -> None:
    """Stand-in engine: one FASTQ per input file in the job's temp output folder."""
    out = reactor.journal.output_folder(job) / "pass"
    for name in job.files:
        stem = name.removesuffix(".pod5")
        (out / f"{stem}.fastq").write_text(f"@{stem}\nACGT\n+\n!!!!\n")


def snapshot(reactor: Blocking) -> dict[str, Any]:
    state = reactor.state
    return {
        "files": {
            name: (str(rec.state), rec.failures)
            for name, rec in state.files.items()
            if rec.present or rec.state is FileState.DONE
        },
        "live": {job.job_id: sorted(job.files) for job in state.live_jobs()},
        "finished": {
            job.job_id: (str(job.state), job.superseded)
            for job in state.jobs.values()
            if not job.live
        },
    }


def finish(reactor: Blocking) -> None:
    """Drive the run to the end with a healthy engine: every live job done, queue empty."""
    for job in list(reactor.state.live_jobs()):
        basecall(reactor, job)
        reactor.complete(job.job_id, "DONE")
    while (job := reactor.assign("healthy", 2)) is not None:
        basecall(reactor, job)
        reactor.complete(job.job_id, "DONE")


def assert_exactly_once(run: Run, reactor: Blocking) -> None:
    out = run.dirs.output_dir
    stems = Counter(
        output_stem(path.name) for kind in ("pass", "fail") for path in (out / kind).iterdir()
    )
    quarantined = {n for n, r in reactor.state.files.items() if r.state is FileState.QUARANTINED}
    expected = {n.removesuffix(".pod5"): 1 for n in run.names if n not in quarantined}
    assert stems == expected
    counts = reactor.state.counts()
    assert counts[FileState.DONE] + counts[FileState.QUARANTINED] == N_FILES
    for name in quarantined:
        assert any(
            (folder / name).is_symlink() for folder in run.dirs.input_dir.glob("FAILED_*")
        ) or any((folder / name).is_symlink() for folder in run.dirs.input_dir.glob("UNKNOWN_*"))
    staging = run.dirs.input_dir / INPUT_STAGING_NAME
    leftovers = [p.name for p in run.dirs.input_dir.iterdir() if p.name.startswith(".")]
    leftovers += [f"{staging.name}/{p.name}" for p in staging.glob("*")]
    assert [name for name in leftovers if name != staging.name] == []


# --------------------------------------------------------------- scenarios
# Each scenario: (prepare, operation, steps, commit step). `prepare` brings the run to
# the state just before the operation; `operation` is what crashes.


def assign_first(r: Blocking, c: ManualClock) -> None:
    r.assign("e1", 3)


def prepare_job(r: Blocking, c: ManualClock) -> None:
    job = r.assign("e1", 3)
    assert job is not None
    basecall(r, job)


def prepare_single_file_job(r: Blocking, c: ManualClock) -> None:
    """A job of one file: only a file that fails alone can be quarantined."""
    job = r.assign("e1", 1)
    assert job is not None
    basecall(r, job)


def only_live(r: Blocking) -> Job:
    (job,) = r.state.live_jobs()
    return job


def complete_done(r: Blocking, c: ManualClock) -> None:
    r.complete(only_live(r).job_id, "DONE")


def complete_failed(r: Blocking, c: ManualClock) -> None:
    r.complete(only_live(r).job_id, "FAILED")


def complete_released(r: Blocking, c: ManualClock) -> None:
    r.complete(only_live(r).job_id, "RELEASED")


def complete_unknown(r: Blocking, c: ManualClock) -> None:
    r.complete(only_live(r).job_id, "STOPPED")


def expire_all(r: Blocking, c: ManualClock) -> None:
    assert r.expire_due(c.advance(LEASE_S + 1))


def prepare_expired(r: Blocking, c: ManualClock) -> None:
    prepare_job(r, c)
    expire_all(r, c)


def late_done(r: Blocking, c: ManualClock) -> None:
    (job,) = [j for j in r.state.jobs.values() if not j.live]
    r.complete(job.job_id, "DONE")


def prepare_quarantine(r: Blocking, c: ManualClock) -> None:
    job = r.assign("e1", 1)
    assert job is not None
    r.complete(job.job_id, "FAILED")
    assert r.state.counts()[FileState.QUARANTINED] == 1


def prepare_hostile_job(r: Blocking, c: ManualClock) -> None:
    """A job whose engine put a link among its outputs: its DONE will be refused."""
    job = r.assign("e1", 3)
    assert job is not None
    basecall(r, job)
    (r.journal.output_folder(job) / "pass" / "sneaky.fastq").symlink_to("/etc/hostname")


def release_all(r: Blocking, c: ManualClock) -> None:
    assert r.requeue(None)


def reassign(r: Blocking, c: ManualClock) -> None:
    r.assign("e2", 3)


def superseded(snap: dict[str, Any]) -> dict[str, Any]:
    """The expired job's outputs were set aside: its late DONE can no longer merge."""
    finished = {job_id: (state, True) for job_id, (state, _) in snap["finished"].items()}
    return {**snap, "finished": finished}


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Callable[[Blocking, ManualClock], None] | None
    operation: Callable[[Blocking, ManualClock], None]
    commit: str
    max_attempts: int = 3
    # An operation made of two committed steps: (first commit, how it changes "before").
    intermediate: tuple[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None


SCENARIOS = [
    Scenario("assign", None, assign_first, "assign:committed"),
    Scenario("merge", prepare_job, complete_done, "merge:decided"),
    Scenario("fail_requeue", prepare_job, complete_failed, "fail:decided"),
    Scenario(
        "fail_quarantine", prepare_single_file_job, complete_failed, "fail:decided", max_attempts=1
    ),
    Scenario("release", prepare_job, complete_released, "release:decided"),
    Scenario("set_aside", prepare_job, complete_unknown, "set_aside:decided"),
    Scenario("expire", prepare_job, expire_all, "expire:decided"),
    Scenario("late_merge", prepare_expired, late_done, "merge:decided"),
    Scenario("refuse", prepare_hostile_job, complete_done, "refuse:decided"),
    Scenario("requeue", prepare_quarantine, release_all, "requeue:decided", max_attempts=1),
    Scenario(
        "supersede_and_reassign",
        prepare_expired,
        reassign,
        "assign:committed",
        intermediate=("supersede:decided", superseded),
    ),
]


def steps_of(scenario: Scenario, root: Path) -> list[tuple[str, int]]:
    """Run the scenario once without a crash and list (step, occurrence) it passes."""
    run = make_run(root, scenario.max_attempts)
    reactor = run.reactor()
    if scenario.prepare:
        scenario.prepare(reactor, run.clock)
    recorder = CrashAt(None)
    reactor.journal._checkpoint = recorder
    scenario.operation(reactor, run.clock)
    occurrences: Counter[str] = Counter()
    result = []
    for step in recorder.seen:
        occurrences[step] += 1
        result.append((step, occurrences[step]))
    return result


CASES = [
    pytest.param(scenario, step, nth, id=f"{scenario.name}-{step}-{nth}")
    for scenario in SCENARIOS
    for step, nth in {
        "assign": [("assign:recorded", 1), ("assign:output_placed", 1),
                   ("assign:input_staged", 1), ("assign:committed", 1)],
        "merge": [("merge:decided", 1), ("merge:output_moved", 1), ("merge:output_moved", 2),
                  ("merge:logged", 1), ("merge:released", 1)],
        "fail_requeue": [("fail:decided", 1), ("fail:output_kept", 1), ("fail:released", 1)],
        "fail_quarantine": [("fail:decided", 1), ("fail:quarantined", 1),
                            ("fail:output_kept", 1), ("fail:released", 1)],
        "release": [("release:decided", 1), ("release:output_kept", 1),
                    ("release:released", 1)],
        "set_aside": [("set_aside:decided", 1), ("set_aside:input_kept", 1),
                      ("set_aside:output_kept", 1), ("set_aside:released", 1)],
        "expire": [("expire:decided", 1), ("expire:released", 1)],
        "late_merge": [("merge:decided", 1), ("merge:output_moved", 1), ("merge:logged", 1),
                       ("merge:released", 1)],
        "refuse": [("refuse:decided", 1), ("refuse:output_kept", 1), ("refuse:released", 1)],
        "requeue": [("requeue:decided", 1), ("requeue:released", 1)],
        "supersede_and_reassign": [("supersede:decided", 1), ("supersede:kept", 1),
                                   ("assign:recorded", 1),
                                   ("assign:output_placed", 1), ("assign:input_staged", 1),
                                   ("assign:committed", 1)],
    }[scenario.name]
]  # fmt: skip


def test_every_journal_step_is_covered(tmp_path: Path) -> None:
    """The table of crash points lists every step each scenario actually passes."""
    for scenario in SCENARIOS:
        listed = {(step, nth) for s, step, nth in (c.values for c in CASES) if s is scenario}
        passed = set(steps_of(scenario, tmp_path / scenario.name))
        assert {step for step, _ in passed} == {step for step, _ in listed}, scenario.name
        assert listed <= passed, scenario.name


@pytest.mark.parametrize(("scenario", "step", "nth"), CASES)
def test_crash_after_step_recovers_exact_state(
    tmp_path: Path, scenario: Scenario, step: str, nth: int
) -> None:
    """A crash after any journal step recovers to the state before or after the
    operation, and the run then ends with every output exactly once."""
    # The twin: same files, same job ids, no crash.
    twin = make_run(tmp_path / "twin", scenario.max_attempts)
    twin_reactor = twin.reactor()
    if scenario.prepare:
        scenario.prepare(twin_reactor, twin.clock)
    before = snapshot(twin_reactor)
    scenario.operation(twin_reactor, twin.clock)
    after_reactor = twin.reactor()  # recovered from a clean stop: same as in memory
    after = snapshot(after_reactor)

    run = make_run(tmp_path / "crash", scenario.max_attempts)
    reactor = run.reactor()
    if scenario.prepare:
        scenario.prepare(reactor, run.clock)
    reactor.journal._checkpoint = CrashAt(step, nth)
    with pytest.raises(SimulatedCrash):
        scenario.operation(reactor, run.clock)

    recovered = run.reactor()
    order = steps_of(scenario, tmp_path / "steps")
    if scenario.intermediate and _at_or_after(step, scenario.intermediate[0], order):
        before = scenario.intermediate[1](before)
    committed = _at_or_after(step, scenario.commit, order)
    assert snapshot(recovered) == (after if committed else before)
    finish(recovered)
    assert_exactly_once(run, recovered)


def _at_or_after(step: str, commit: str, order: list[tuple[str, int]]) -> bool:
    names = [s for s, _ in order]
    return names.index(step) >= names.index(commit)


def test_clean_restart_preserves_state(tmp_path: Path) -> None:
    """Without any crash, a restart sees exactly the state the running service had."""
    run = make_run(tmp_path, 3)
    reactor = run.reactor()
    done = reactor.assign("e1", 2)
    assert done is not None
    basecall(reactor, done)
    reactor.complete(done.job_id, "DONE")
    failed = reactor.assign("e1", 1)
    assert failed is not None
    reactor.complete(failed.job_id, "FAILED")
    live = reactor.assign("e2", 1)
    assert live is not None
    expected = snapshot(reactor)
    assert snapshot(run.reactor()) == expected


def test_a_merge_finished_by_recovery_says_what_it_could_not_merge(tmp_path: Path) -> None:
    """Recovery replays a merge cut short; an output whose name was taken meanwhile stays
    in the job's leftovers and is reported as a repair, never overwritten or dropped."""
    run = make_run(tmp_path, 3)
    reactor = run.reactor(CrashAt("merge:decided"))
    job = reactor.assign("e1", 2)
    assert job is not None
    basecall(reactor, job)
    with pytest.raises(SimulatedCrash):
        reactor.complete(job.job_id, "DONE")
    first = sorted(job.files)[0].removesuffix(".pod5")
    taken = run.dirs.output_dir / "pass" / f"job_id_{job.job_id}_{first}.fastq"
    taken.write_text("somebody else's\n")

    config = run.dirs.config(report_back_interval=LEASE_S, max_attempts=run.max_attempts)
    restarted = started(Reactor(config, clock=run.clock, job_id_factory=run.ids))
    recovered = restarted.recovered
    assert recovered is not None

    logs = f"LOGOUTPUT_{job.job_id}_e1"
    why = "its name is taken in the results"
    assert ("output_not_merged", f"{logs}/pass/{first}.fastq: {why}") in recovered.repairs
    assert taken.read_text() == "somebody else's\n"
    assert (run.dirs.output_dir / logs / "pass" / f"{first}.fastq").read_text().startswith("@")


def test_an_output_gone_before_recovery_moved_it_holds_the_job_until_it_is_back(
    tmp_path: Path,
) -> None:
    """A merge cut short after its decision; before the restart the engine removes one
    output. Recovery moves the others, never takes the missing one for merged: the job is
    held saying which output is gone (its files stay done: the decision stands). Put
    back, the next start finishes the merge."""
    run = make_run(tmp_path, 3)
    reactor = run.reactor(CrashAt("merge:decided"))
    job = reactor.assign("e1", 2)
    assert job is not None
    basecall(reactor, job)
    with pytest.raises(SimulatedCrash):
        reactor.complete(job.job_id, "DONE")
    first, second = sorted(name.removesuffix(".pod5") for name in job.files)
    out = reactor.journal.output_folder(job) / "pass"
    aside = tmp_path / f"{first}.fastq"
    (out / f"{first}.fastq").rename(aside)

    restarted = run.reactor()
    merged = sorted(os.listdir(run.dirs.output_dir / "pass"))
    assert merged == [f"job_id_{job.job_id}_{second}.fastq"]
    (held,) = restarted.state.held_jobs()
    assert (held.job_id, held.state) == (job.job_id, JobState.DONE)
    assert f"pass/{first}.fastq" in held.reason
    assert "gone" in held.reason
    assert all(restarted.state.state_of(name) is FileState.DONE for name in job.files)

    aside.rename(out / f"{first}.fastq")
    again = run.reactor()
    assert list(again.state.held_jobs()) == []
    assert sorted(os.listdir(run.dirs.output_dir / "pass")) == sorted(
        f"job_id_{job.job_id}_{stem}.fastq" for stem in (first, second)
    )
    assert (run.dirs.output_dir / f"LOGOUTPUT_{job.job_id}_e1").is_dir()
    assert not reactor.journal.input_folder(job).exists()


def test_released_files_wait_at_the_front_after_a_restart_with_nothing_counted(
    tmp_path: Path,
) -> None:
    """A released job's files come back from disk ready, in front of files that never went
    out (even older ones), with no failure: the next try is the released job's attempt. A
    file that failed before keeps exactly the history its failure left."""
    run = make_run(tmp_path, 3)
    reactor = run.reactor()
    first, second, *rest = run.names
    failing = reactor.assign("e1", 1)  # first, alone
    assert failing is not None
    reactor.complete(failing.job_id, "FAILED")
    released = reactor.assign("e1", 1)  # first again, attempt 2 (the halving capped it)
    other = reactor.assign("e2", 1)
    assert released is not None
    assert other is not None
    assert (released.files, other.files) == ({first: 2}, {second: 1})
    reactor.complete(other.job_id, "RELEASED")
    reactor.complete(released.job_id, "RELEASED")
    for name in (first, second):  # newer than the files that never went out
        later = time.time() + 60
        os.utime(run.dirs.input_dir / name, (later, later))
    out = run.dirs.output_dir
    for job in (released, other):
        assert (out / f"RELEASEDOUTPUT_{job.job_id}_{job.engine_id}").is_dir()
        record = reactor.journal.read_record(job.job_id)
        assert record is not None
        assert (record.state, record.files) == ("released", job.files)
        assert not reactor.journal.input_folder(job).exists()
    assert sorted(p.name.split("_")[0] for p in out.iterdir() if "_" in p.name) == [
        "RELEASEDOUTPUT", "RELEASEDOUTPUT", "RETRIEDOUTPUT",
    ]  # fmt: skip
    assert list(reactor.state.ready_names()) == [first, second, *rest]

    restarted = run.reactor()
    queue = list(restarted.state.ready_names())
    assert set(queue[:2]) == {first, second}
    assert queue[2:] == rest
    state = restarted.state
    assert (state.files[first].failures, state.files[first].solo_failures) == (1, 1)
    assert state.files[first].batch_cap == 1
    assert (state.files[second].failures, state.files[second].solo_failures) == (0, 0)
    assert {name: state.files[name].failures + 1 for name in (first, second)} == {
        first: 2, second: 1,
    }  # fmt: skip
    assert state.jobs[released.job_id].state is JobState.RELEASED
    assert restarted.complete(released.job_id, "RELEASED").action is CompletionAction.REPEAT
    finish(restarted)
    assert_exactly_once(run, restarted)


def test_seed_era_assigned_folder_without_manifest_is_a_live_job(run_dirs: RunDirs) -> None:
    """A run folder left by the seed (ASSIGNED_ + TMPOUTPUT_, no manifest) resumes."""
    write_pod5(run_dirs.input_dir / "a.pod5", n_reads=1, seed=1)
    write_pod5(run_dirs.input_dir / "b.pod5", n_reads=1, seed=2)
    assigned = run_dirs.input_dir / "ASSIGNED_123_seedengine"
    assigned.mkdir()
    (assigned / "a.pod5").symlink_to(run_dirs.input_dir / "a.pod5")
    (run_dirs.output_dir / "TMPOUTPUT_123_seedengine" / "pass").mkdir(parents=True)
    reactor = started(Reactor(run_dirs.config(), clock=ManualClock()))
    assert reactor.state.state_of("a.pod5") is FileState.ASSIGNED
    assert reactor.state.state_of("b.pod5") is FileState.READY
    assert reactor.state.jobs["123"].live


def test_seed_rule_output_stem_marks_file_done(run_dirs: RunDirs) -> None:
    """A FASTQ in pass/ named after a .pod5 (also with the seed's job tag) marks it done."""
    for name in ("x.pod5", "y.pod5", "z.pod5"):
        write_pod5(run_dirs.input_dir / name, n_reads=1, seed=len(name))
    config = run_dirs.config()
    (config.output_dir / "pass" / "x.fastq").write_text("")
    (config.output_dir / "fail" / "job_id_42_y.fastq.gz").write_text("")
    reactor = started(Reactor(config, clock=ManualClock()))
    assert reactor.state.state_of("x.pod5") is FileState.DONE
    assert reactor.state.state_of("y.pod5") is FileState.DONE
    assert reactor.state.state_of("z.pod5") is FileState.READY


def test_restart_does_not_extend_leases(tmp_path: Path) -> None:
    """A lease runs from the job's last keepalive as recorded on disk (its record's
    mtime): a job silent for longer than the lease expires at the restart, a recently
    renewed one keeps only the rest of its lease."""
    run = make_run(tmp_path, 3)
    reactor = run.reactor()
    silent = reactor.assign("dead-engine", 2)
    alive = reactor.assign("live-engine", 2)
    assert silent is not None
    assert alive is not None
    assert not reactor.keepalive(alive.job_id, "PROCESSING")
    long_ago = time.time() - LEASE_S - 5
    records = run.dirs.output_dir / ".reactor" / "jobs"
    os.utime(records / f"{silent.job_id}.json", (long_ago, long_ago))
    renewed_at = (records / f"{alive.job_id}.json").stat().st_mtime
    assert renewed_at > long_ago  # the keepalive renewed the mark

    restarted = run.reactor()
    assert restarted.state.jobs[silent.job_id].state is JobState.EXPIRED
    assert not reactor.journal.input_folder(silent).exists()
    live = restarted.state.jobs[alive.job_id]
    assert live.live
    assert live.deadline() <= run.clock() + LEASE_S
    assert live.deadline() >= run.clock() + LEASE_S - (time.time() - renewed_at) - 1


def test_assigning_moves_nothing_inside_the_watched_input_folder(tmp_path: Path) -> None:
    """A rename inside INPUTDIR is a moved-from event, which watchdog's inotify buffer
    may hold for 0.5 s with every event behind it (new .pod5 files too). Folders of
    links are built in a subfolder and only arrive in INPUTDIR: a real observer on it
    sees them created, never moved."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    names = [f"f{i}.pod5" for i in range(4)]
    for name in names:
        (input_dir / name).write_bytes(b"")
    journal = Journal(input_dir, output_dir, lambda _step: None)
    seen: list[FileSystemEvent] = []
    arrived = threading.Event()
    jobs = [
        Job(str(i), "e", {names[i]: 1}, JobState.ASSIGNED, 0.0, 0.0, 90.0)
        for i in range(len(names))
    ]
    wanted = {journal.input_folder(job).name for job in jobs}

    class Record(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            seen.append(event)
            created = {Path(str(e.src_path)).name for e in seen if e.event_type == "created"}
            if wanted <= created:
                arrived.set()

    observer = Observer()
    observer.schedule(Record(), str(input_dir), recursive=False)
    observer.start()
    try:
        for job in jobs:
            journal.assign(job)
        assert arrived.wait(10), f"ASSIGNED_ folders not seen created: {seen}"
    finally:
        observer.stop()
        observer.join(10)
    assert [e for e in seen if e.event_type == "moved"] == []


def test_a_failed_fsync_of_a_quarantine_folder_is_not_a_step_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarantine folder's links are fsynced as it is made; if that fsync fails, what
    reached the disk is unknown: DurabilityError goes up (the writer stops), never an
    Unfinished step that a retry would fsync again."""
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    (input_dir / "a.pod5").write_bytes(b"")
    journal = Journal(input_dir, output_dir)
    job = Job("1", "e", {"a.pod5": 1}, JobState.ASSIGNED, 0.0, 0.0, 90.0)
    journal.assign(job)
    real_fsync = fsops.fsync

    def fsync(fd: int) -> None:  # the record's go through; the quarantine folder's fail
        if Path(f"/proc/self/fd/{fd}").readlink().is_relative_to(input_dir.resolve()):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(fsops, "fsync", fsync)
    with pytest.raises(DurabilityError):
        journal.fail(job, requeue=[], quarantine=["a.pod5"])
