"""What a power cut anywhere in the recorded run must keep, checked one crash state at a time.

`StateChecker.check` materializes a crash state (tests/support/crash_states.py) of the
recorded run (tests/support/crash_run.py), starts a fresh `Reactor` on it (its
recovery), and says what is wrong:

(a) recovery does not start;
(b) an answer given before the cut that recovery did not keep: an assigned job must be
    known (live, or in a state a later decision gave it) and, if live, have its folders
    (a link per file, pass/ and fail/ to write in); a merged DONE's files must be done
    and its outputs whole where the run put them (the seed's layout: the engine's files
    in pass/; MinKNOW's: the split files in fastq_pass/ and fastq_fail/, the records each
    held when the DONE was answered, recounted with dnaio); a FAILED's,
    RELEASED's, unknown state's, expiry's or supersede's decision must be the job's
    state (or a later one); quarantined files must be quarantined, released ones not.
    Whatever was answered, each quarantine folder must hold a link to each of its files;
(c) the run, driven to its end (the engines that were answered an assignment finish it;
    the others died with the power, so their jobs expire; then a healthy engine takes
    what is left), must have every read of every `.pod5` exactly once in the outputs
    (pass/ + fail/, or MinKNOW's folders), recounted from the FASTQ records, the reads of
    quarantined files nowhere, the service's count of reads the records there, and no
    staging or split folder left.

What recovery and the end make of a state depends only on its disk and on which jobs
the engines were told of, so it is worked out once per such pair (many cut points leave
the same disk) and the answers are judged for every state.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from reactor.core.names import INPUT_STAGING_NAME, STAGING_PREFIX
from reactor.core.state import FileState, Job, JobState
from reactor.disk.state_dir import SPLIT
from reactor.serve.service import Reactor, StepsLeft
from tests.support.blocking import Blocking
from tests.support.crash_run import (
    LEASE_S,
    Recording,
    counter_ids,
    fastq,
    merged_outputs,
    run_config,
    run_dirs,
)
from tests.support.crash_states import Answer, CrashState, materialize
from tests.support.exactly_once import output_read_names
from tests.support.runs import ManualClock, RunDirs

ENDING_ENGINE = "healthy"
FIRST_ENDING_JOB = 1000  # job ids of the end's assignments: never one of the recording's


def _label(job: Job) -> str:
    """A job's state as the answers name it: live jobs are "assigned"."""
    if job.live:
        return "assigned"
    if job.state is JobState.EXPIRED and job.superseded:
        return "expired-superseded"
    return str(job.state)


# What each answer says the job's state is (from then on, or a decision made later).
ANSWER_LABELS = {
    "assigned": "assigned",
    "done": "done",
    "refused": "refused",
    "failed": "failed",
    "released": "released",
    "unknown": "unknown",
    "expired": "expired",
    "superseded": "expired-superseded",
    "late_not_merged": "expired-superseded",
}


# ------------------------------------------------------------------ one state


@dataclass(frozen=True)
class Outcome:
    """What recovery left on one crash state's disk, and how its run ended."""

    started: bool = True  # (a): recovery started
    jobs: Mapping[str, str] = field(default_factory=dict)  # job id -> its state's label
    files: Mapping[str, str] = field(default_factory=dict)  # name -> its state
    folder_problems: Mapping[str, str] = field(default_factory=dict)  # live job -> what
    # merged output (path below OUTPUTDIR) -> its records (None: not readable as FASTQ)
    merged: Mapping[str, list[str] | None] = field(default_factory=dict)
    input_names: frozenset[str] = frozenset()
    quarantine_folders: frozenset[str] = frozenset()
    quarantined_at_end: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()  # broken whatever was answered


class StateChecker:
    """Checks crash states of one recording, each in `workdir/state` in turn."""

    def __init__(self, recording: Recording, workdir: Path) -> None:
        self.recording = recording
        self.workdir = workdir
        self.outcomes: dict[tuple[str, frozenset[str]], Outcome] = {}
        self.checked = 0
        self.recovered = 0  # states recovered and driven to the end (distinct disks)

    def check(self, state: CrashState) -> list[str]:
        """What is wrong with `state`: an empty list when everything holds."""
        answers = self.recording.answers
        given = sum(1 for answer in answers if answer.after <= state.cut)
        told = frozenset(a.details["job"] for a in answers[:given] if a.kind == "assigned")
        key = (state.key, told)
        outcome = self.outcomes.get(key)
        if outcome is None:
            outcome = self.outcomes[key] = self._recover(state, told)
            self.recovered += 1
        self.checked += 1
        return [*outcome.problems, *judge(outcome, answers, given)]

    def _recover(self, state: CrashState, told: frozenset[str]) -> Outcome:
        root = self.workdir / "state"
        materialize(state, root)  # over the last state: what is the same is kept
        dirs = run_dirs(root)
        clock = ManualClock()
        config = run_config(dirs, self.recording.layout, durability="none")
        reactor = Blocking(
            Reactor(config, clock=clock, job_id_factory=counter_ids(FIRST_ENDING_JOB))
        )
        with capture_logs():
            try:
                return self._recover_on(reactor, dirs, clock, told)
            finally:
                reactor.close()
                reactor.journal.close()

    def _recover_on(
        self, reactor: Blocking, dirs: RunDirs, clock: ManualClock, told: frozenset[str]
    ) -> Outcome:
        reads = self.recording.reads
        try:
            reactor.recovered = reactor.start()
        except Exception as exc:  # (a): any failure to start is the finding
            return Outcome(started=False, problems=(f"recovery failed: {_said(exc)}",))
        seen = _observe(reactor, dirs)
        problems = _quarantine_folder_problems(reactor, dirs)
        try:
            problems += _drive_to_end(reactor, clock, told, reads)
        except Exception as exc:
            problems.append(f"the run could not be driven to its end: {_said(exc)}")
        quarantined = frozenset(
            name
            for name, record in reactor.state.files.items()
            if record.state is FileState.QUARANTINED
        )
        problems += _exactly_once(reactor, dirs, reads, quarantined)
        return replace(seen, quarantined_at_end=quarantined, problems=tuple(problems))


def _said(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _observe(reactor: Blocking, dirs: RunDirs) -> Outcome:
    """What recovery left, as the answers are judged against it."""
    state = reactor.state
    folder_problems = {}
    for job in state.live_jobs():
        problem = _live_folders_problem(reactor, job)
        if problem is not None:
            folder_problems[job.job_id] = problem
    merged = merged_outputs(dirs.output_dir)
    return Outcome(
        jobs={job_id: _label(job) for job_id, job in state.jobs.items()},
        files={name: str(record.state) for name, record in state.files.items()},
        folder_problems=folder_problems,
        merged=merged,
        input_names=frozenset(os.listdir(dirs.input_dir)),
        quarantine_folders=frozenset(reactor.quarantine_folders),
    )


def _live_folders_problem(reactor: Blocking, job: Job) -> str | None:
    """What is wrong with a live job's folders: its links and where its engine writes."""
    links = reactor.journal.input_folder(job)
    out = reactor.journal.output_folder(job)
    for name in job.files:
        link = links / name
        if not link.is_symlink() or str(link.readlink()) != f"../{name}":
            return f"{links.name}/{name} is not a link to ../{name}"
    for kind in ("pass", "fail"):
        if not (out / kind).is_dir() or (out / kind).is_symlink():
            return f"{out.name}/{kind} is not a folder"
    return None


def _quarantine_folder_problems(reactor: Blocking, dirs: RunDirs) -> list[str]:
    """Each quarantine folder reactor lists holds a link to each of its files."""
    problems = []
    for name, (_folder, files) in sorted(reactor.quarantine_folders.items()):
        folder = dirs.input_dir / name
        for file in files:
            link = folder / file
            if not link.is_symlink() or str(link.readlink()) != f"../{file}":
                problems.append(f"quarantine folder {name} lacks its link to {file}")
    return problems


def _basecall(reactor: Blocking, job: Job, reads: Mapping[str, list[str]]) -> bool:
    """The stand-in engine of the end; False when it cannot write its job's outputs."""
    out = reactor.journal.output_folder(job) / "pass"
    if not out.is_dir() or out.is_symlink():
        return False
    for name in job.files:
        path = out / f"{name.removesuffix('.pod5')}.fastq"
        path.unlink(missing_ok=True)  # a fresh file: never written through another name
        path.write_bytes(fastq(reads[name]))
    return True


def _done(reactor: Blocking, job: Job) -> list[str]:
    try:
        reactor.complete(job.job_id, "DONE")
    except StepsLeft as exc:
        return [f"the DONE of job {job.job_id} left steps: {exc.reason}"]
    return []


def _drive_to_end(
    reactor: Blocking, clock: ManualClock, told: frozenset[str], reads: Mapping[str, list[str]]
) -> list[str]:
    """Engines told of a live job finish it; the others died with the power, and their
    jobs expire. Then a healthy engine takes everything left."""
    problems = []
    for job in list(reactor.state.live_jobs()):
        if job.job_id in told and _basecall(reactor, job, reads):
            problems += _done(reactor, job)
    if any(True for _ in reactor.state.live_jobs()):
        reactor.expire_due(clock.advance(LEASE_S + 1))
    for _ in range(len(reads) + 1):
        job = reactor.assign(ENDING_ENGINE, len(reads))
        if job is None:
            break
        assert _basecall(reactor, job, reads)
        problems += _done(reactor, job)
    else:
        problems.append("the run does not end: files are still handed out")
    for job in reactor.state.live_jobs():
        problems.append(f"job {job.job_id} is still live at the end")
    for job in reactor.state.held_jobs():
        if job.state is not JobState.REFUSED:
            problems.append(f"job {job.job_id} is held at the end: {job.reason}")
    return problems


def _exactly_once(
    reactor: Blocking, dirs: RunDirs, reads: Mapping[str, list[str]], quarantined: frozenset[str]
) -> list[str]:
    """Every read of every file not quarantined exactly once in the outputs (either
    layout), and the reads of quarantined files nowhere (recounted from the FASTQ
    records); nothing left in staging or split folders."""
    problems = []
    states = reactor.state.files
    for name in reads:
        state = states[name].state if name in states else None
        if state not in (FileState.DONE, FileState.QUARANTINED):
            problems.append(f"{name} ends {state}, neither done nor quarantined")
    expected = Counter(r for name, ids in reads.items() if name not in quarantined for r in ids)
    kept_out = {r for name in quarantined for r in reads[name]}
    try:
        found = output_read_names(dirs.output_dir)
    except Exception as exc:  # an output dnaio cannot read: whatever it raises
        return [*problems, f"the outputs cannot be recounted: {_said(exc)}"]
    seen = found["pass"] + found["fail"]
    if missing := expected - seen:
        problems.append(f"{sum(missing.values())} reads missing, {sorted(missing)[:3]}")
    if duplicated := {r: n for r, n in seen.items() if n > 1}:
        problems.append(f"{len(duplicated)} reads more than once, {sorted(duplicated)[:3]}")
    if unexpected := set(seen) - set(expected):
        which = "of quarantined files" if unexpected <= kept_out else "unknown"
        problems.append(f"{len(unexpected)} reads {which} in the output, {sorted(unexpected)[:3]}")
    # the read counts the service keeps (recovered from the records, then added merge by
    # merge) are the records in the outputs, exactly
    counted = reactor.reads.reads.total.reads
    if counted != sum(seen.values()):
        problems.append(
            f"the service counts {counted} reads, the outputs hold {sum(seen.values())}"
        )
    for folder in (dirs.input_dir, dirs.output_dir):
        for name in os.listdir(folder):
            if name.startswith(STAGING_PREFIX) and name != INPUT_STAGING_NAME:
                problems.append(f"staging leftover {folder.name}/{name}")
    with contextlib.suppress(FileNotFoundError):
        if leftovers := os.listdir(dirs.input_dir / INPUT_STAGING_NAME):
            problems.append(f"staging leftovers in {INPUT_STAGING_NAME}: {leftovers}")
    # a held job's split folder waits with it, by design (and its holding is said already)
    held = {job.job_id for job in reactor.state.held_jobs()}
    split = reactor.journal.state.path / SPLIT
    with contextlib.suppress(FileNotFoundError):
        if leftovers := sorted(set(os.listdir(split)) - held):
            problems.append(f"split leftovers in {split.relative_to(dirs.output_dir)}: {leftovers}")
    return problems


# ------------------------------------------------------------------ the answers


def histories(answers: Iterable[Answer]) -> dict[str, list[str]]:
    """Each job's states in the order its answers gave them."""
    found: dict[str, list[str]] = {}
    for answer in answers:
        if answer.kind in ANSWER_LABELS:
            found.setdefault(answer.details["job"], []).append(ANSWER_LABELS[answer.kind])
    return found


def quarantines(answers: Iterable[Answer]) -> dict[str, list[bool]]:
    """Each file's quarantines (True) and releases (False), in the order answered."""
    found: dict[str, list[bool]] = {}
    for answer in answers:
        details = answer.details
        if answer.kind == "failed":
            names, quarantined = details["quarantine"], True
        elif answer.kind == "unknown":
            names, quarantined = details["files"], True
        elif answer.kind == "requeued":
            names, quarantined = details["files"], False
        else:
            continue
        for name in names:
            found.setdefault(name, []).append(quarantined)
    return found


def judge(outcome: Outcome, answers: Sequence[Answer], given: int) -> list[str]:
    """What of the first `given` answers recovery did not keep. A job's state (a file's
    quarantine) may also be one a later answer of the run gives: that decision may have
    reached the disk before the cut without its answer."""
    if not outcome.started:
        return []  # said already
    before = answers[:given]
    problems = []
    whole_run = histories(answers)
    for job, labels in histories(before).items():
        label = outcome.jobs.get(job)
        if label is None:
            problems.append(f"job {job} was answered {labels[-1]} and is unknown after recovery")
        elif label not in whole_run[job][len(labels) - 1 :]:
            problems.append(f"job {job} was answered {labels[-1]} and recovered {label}")
    whole_quarantines = quarantines(answers)
    for name, events in quarantines(before).items():
        quarantined = outcome.files.get(name) == FileState.QUARANTINED
        if quarantined not in whole_quarantines[name][len(events) - 1 :]:
            said = "quarantined" if events[-1] else "released from quarantine"
            problems.append(f"{name} was {said} and recovered {outcome.files.get(name)}")
    for answer in before:
        details = answer.details
        if answer.kind == "requeued":
            if details["folder"] in outcome.input_names | outcome.quarantine_folders:
                problems.append(f"released quarantine {details['folder']} is back")
        elif answer.kind == "assigned":
            if (problem := outcome.folder_problems.get(details["job"])) is not None:
                problems.append(f"live job {details['job']}: {problem}")
        elif answer.kind == "done":
            problems += _merge_kept(outcome, details)
    stray = outcome.quarantined_at_end - set(whole_quarantines)
    if stray:
        problems.append(f"files no decision quarantined end quarantined: {sorted(stray)}")
    return problems


def _merge_kept(outcome: Outcome, details: Mapping[str, Any]) -> list[str]:
    """A merged DONE: its files done, its outputs (the engine's files in pass/, or the
    split files in MinKNOW's folders) there with the records they held when answered."""
    problems = []
    job = details["job"]
    for name in details["files"]:
        if outcome.files.get(name) != FileState.DONE:
            problems.append(f"job {job} was merged but {name} is {outcome.files.get(name)}")
    for output, read_ids in details["outputs"].items():
        if outcome.merged.get(output) != read_ids:
            held = outcome.merged.get(output, "nothing")
            if held is None:
                held = "what cannot be read as FASTQ"
            problems.append(f"job {job} was merged but {output} holds {held}")
    return problems
