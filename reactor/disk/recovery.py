"""Recovery: rebuild the run's state from reactor's records, finishing half-done steps.

Runs once at start, before the service answers anything. It reads every job's record in
the state folder (`reactor.disk.state_dir`; the protocol is `reactor.disk.journal`'s),
carries out the steps of any decision that was committed but not finished when the
process died, rolls back assignments that never committed, removes staging leftovers,
and returns what the records say: live jobs (each lease counted from its last keepalive),
finished jobs, done and quarantined files, how many times each requeued file has failed,
and the files of released jobs (which failed nothing).

The folders engines write are looked at only for what the records cannot say: whether a
job's `ASSIGNED_` folder made it into INPUTDIR (the assignment's commit point), and
which folders are left to rename or remove. Nothing in them is believed. A job whose
steps cannot be finished (an engine removed its folder, made it read-only) is held for
a person with the reason; the others go on. A run from before the state folder existed
is taken over first (`reactor.disk.migration`).

A recorded job's folders in INPUTDIR are looked up by the names its record gives them.
When the start-up scan lists INPUTDIR anyway (a single run: 10^6 `.pod5` files there),
recovery does not list it: what only a listing finds, folders no record names, is left
to the scan (`unrecorded_input`); docs/journal.md, "Serving during the start-up scan",
says why that is safe. Otherwise (host mode's folder of job folders) it lists it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reactor.core.minknow import MINKNOW_OUTPUTS
from reactor.core.names import (
    INPUT_FOLDERS,
    INPUT_STAGING_NAME,
    STAGING_PREFIX,
    Folder,
    JobFolder,
    parse_job_folder,
)
from reactor.core.readstats import JobReads, RunReads
from reactor.core.retry import FailureHistory, halves
from reactor.core.state import Job, JobState
from reactor.disk import engine_trees
from reactor.disk.journal import MINKNOW_LAYOUT, JobRecord, Journal, Unfinished, record_name
from reactor.disk.migration import migrate
from reactor.disk.state_dir import JOBS, SPLIT

Kinds = dict[Folder, JobFolder]


@dataclass(slots=True)
class Recovered:
    """What the records say, after every half-done transition was finished."""

    live: list[Job] = field(default_factory=list)
    finished: list[Job] = field(default_factory=list)  # every job that is not live
    done: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    history: dict[str, FailureHistory] = field(default_factory=dict)  # of failed files
    handed_back: set[str] = field(default_factory=set)  # files of released jobs: to the front
    # FAILED_/UNKNOWN_ folder name -> (folder, the .pod5 names it quarantines)
    quarantine_folders: dict[str, tuple[JobFolder, list[str]]] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # job id -> why, for a person
    repairs: list[tuple[str, str]] = field(default_factory=list)  # (what, folder or record)
    # The state folder was made at this start: a new run, or one an older version ran.
    state_folder_new: bool = False
    reads: RunReads = field(default_factory=RunReads)  # the merged jobs' reads, summed
    next_batch: int = 0  # the next output batch number in MinKNOW's layout
    # The job ids of the records read: a job folder in INPUTDIR of any other is not
    # reactor's (`unrecorded_input`).
    recorded: set[str] = field(default_factory=set)


def recover(
    journal: Journal, now: float, lease_s: float, *, scan_lists_inputs: bool = False
) -> Recovered:
    """Rebuild the run from its records, finishing every transition a crash cut in half.

    A live job's lease runs from its last keepalive recorded on disk, so a restart does
    not extend it; a job taken over from the seed, which has no such record, gets a
    fresh lease from `now`. With `scan_lists_inputs` the journal's input folder is not
    listed: the caller's start-up scan passes each entry that is not a `.pod5` to
    `unrecorded_input`.
    """
    return _Recovery(journal, now, lease_s, listed=not scan_lists_inputs).run()


def unrecorded_input(
    input_dir: Path, name: str, is_folder: bool, known: Callable[[str], bool]
) -> str | None:
    """What recovery makes of an entry of INPUTDIR that is not a `.pod5`, met by the
    start-up scan: a staging leftover (other than the journal's own staging folder) is
    removed, `staging_removed`; a folder of links of a job that is not `known` (no record
    names it, and the service has not made it since) is not reactor's and is left for a
    person, `links_without_record`. The repair's kind, or None."""
    if name.startswith(STAGING_PREFIX):
        if name == INPUT_STAGING_NAME:
            return None  # the journal's: emptied by recovery before serving, in use since
        _remove(input_dir, name)
        return "staging_removed"
    if _links_of_no_record(name, known) and is_folder:
        return "links_without_record"
    return None


def _links_of_no_record(name: str, known: Callable[[str], bool]) -> bool:
    """Whether a folder of INPUTDIR named `name` is a folder of links of a job that is
    not `known`: not reactor's, left for a person."""
    folder = parse_job_folder(name)
    return folder is not None and folder.kind is Folder.ASSIGNED and not known(folder.job_id)


class _Recovery:
    def __init__(self, journal: Journal, now: float, lease_s: float, *, listed: bool) -> None:
        self.journal = journal
        self.listed = listed  # the input folder is listed here (not by the start-up scan)
        self.now = now
        self.lease_s = lease_s
        self.result = Recovered()
        # name -> failed tries (attempt, batch size, engine); name -> attempts released
        self.failures: dict[str, list[tuple[int, int, str]]] = {}
        self.released: dict[str, int] = {}
        # "<jobid>_<engineid>" of the quarantines a person released (FAILED_ or UNKNOWN_)
        self.requeued: set[str] = set()
        self.merged_split: dict[str, Job] = {}  # job id -> a job merged in MinKNOW's layout

    def run(self) -> Recovered:
        result = self.result
        result.state_folder_new = not self.journal.state.exists
        result.repairs += migrate(self.journal)
        self.journal.open()
        for folder, files in self.journal.requeued():
            self.requeued.add(folder)
            for name, attempt in files.items():
                self.released[name] = max(self.released.get(name, 0), attempt)
        # The names of the input folder's folders when it is listed here; else None, and
        # each job's folders are looked up by name.
        folders = self._list_inputs() if self.listed else None
        if folders is None:
            self._empty_input_staging()
        self._finish_releases(folders)
        outputs = self._scan(self.journal.output_dir)
        for name, record in self.journal.records():
            if isinstance(record, ValueError):
                result.repairs.append(("record_unreadable", f"{JOBS}/{name}: {record}"))
                continue
            result.recorded.add(record.job_id)
            job_inputs = self._input_kinds(record, folders)
            self._recover(record, job_inputs, outputs.pop(record.job_id, {}))
        for kinds in outputs.values():
            if (unrecorded := kinds.get(Folder.TMPOUTPUT)) is not None:  # never committed
                self._orphan(unrecorded)
        for name in sorted(folders or ()):
            if _links_of_no_record(name, result.recorded.__contains__):
                result.repairs.append(("links_without_record", name))  # not reactor's
        for name, tries in self.failures.items():
            history = _history(tries, self.released.get(name, 0))
            if history is not None:
                result.history[name] = history
        for _folder, names in result.quarantine_folders.values():
            result.quarantined.update(names)
        self._remove_split_leftovers()
        # A batch number already in a name of the results is never given again, whatever
        # the records say (a record lost, MinKNOW's own outputs in the same folders).
        result.next_batch = max(result.next_batch, _next_batch_in(self.journal.output_dir))
        return result

    def _remove_split_leftovers(self) -> None:
        """Split folders a crash left: a job's whose merge was never decided is removed;
        a merged job's is settled (removed when empty, else kept with its leftovers:
        `Journal.settle_split`); a held job's stays, its merge waiting for a person."""
        state = self.journal.state
        split_fd = state.fd(SPLIT)
        for name in os.listdir(split_fd):
            if name in self.result.held:
                continue
            merged = self.merged_split.get(name)
            if merged is not None:
                self.journal.settle_split(merged)
                self.result.repairs.append(("split_settled", f"{SPLIT}/{name}"))
                continue
            engine_trees.remove_folder(split_fd, name)
            self.result.repairs.append(("split_removed", f"{SPLIT}/{name}"))

    # ------------------------------------------------------------ one job

    def _recover(self, record: JobRecord, inputs: Kinds, outputs: Kinds) -> None:
        job = self._job(record)
        state = record.state
        if state == JobState.ASSIGNED:
            if Folder.ASSIGNED in inputs:
                last = self.journal.last_keepalive(record.job_id)
                if last is not None:  # a clock set back counts as a keepalive now, no more
                    job.last_seen = self.now - max(0.0, time.time() - last)
                self.result.live.append(job)
            else:  # the assignment never committed: nobody got its files
                self._orphan(JobFolder(Folder.TMPOUTPUT, job.job_id, job.engine_id), outputs)
                self.journal.state.remove(JOBS, record_name(job.job_id))
                self.result.repairs.append(("assignment_rolled_back", record_name(job.job_id)))
            return
        try:
            job.state = JobState(state)
        except ValueError:
            self.result.repairs.append(("record_unreadable", f"state {state!r}"))
            return
        if self._left_to_do(record, inputs, outputs):
            try:
                merged = self.journal.finish(job, record)
            except Unfinished as exc:
                self.result.held[job.job_id] = exc.reason
            else:
                self.result.repairs.append((f"{state}_finished", record_name(job.job_id)))
                logs = self.journal.output_folder(job, Folder.LOGOUTPUT).name
                self.result.repairs += [
                    ("output_not_merged", f"{logs}/{kept}") for kept in merged.kept
                ]
        self._count(job, record)
        self.result.finished.append(job)

    def _left_to_do(self, record: JobRecord, inputs: Kinds, outputs: Kinds) -> bool:
        """Whether the steps after the decision are unfinished, from the folders seen."""
        if Folder.ASSIGNED in inputs:
            return True
        state = record.state
        if Folder.TMPOUTPUT in outputs and (state != JobState.EXPIRED or record.superseded):
            return True
        if state == JobState.FAILED and record.quarantine:
            return Folder.FAILED not in inputs and not self._released(record, Folder.FAILED)
        if state == JobState.UNKNOWN:
            return Folder.UNKNOWN not in inputs and not self._released(record, Folder.UNKNOWN)
        return False

    def _released(self, record: JobRecord, kind: Folder) -> bool:
        return f"{record.job_id}_{record.engine_id}" in self.requeued

    def _count(self, job: Job, record: JobRecord) -> None:
        """What a finished job tells about its files."""
        result = self.result
        state = job.state
        if state is JobState.DONE:
            result.done.update(job.files)
            if record.batch is not None:
                result.next_batch = max(result.next_batch, record.batch + 1)
            if record.layout == MINKNOW_LAYOUT:
                self.merged_split[job.job_id] = job
            if record.reads is not None:
                try:
                    reads = JobReads.from_json(record.reads)
                except ValueError as exc:
                    result.repairs.append(("reads_unreadable", f"{record.job_id}: {exc}"))
                else:
                    decided = record.decided_at or record.assigned_at
                    result.reads.add(
                        reads,
                        engine_id=record.engine_id,
                        busy_s=decided - record.assigned_at,
                        merged_at=decided,
                    )
        elif state is JobState.FAILED:
            for name, attempt in job.files.items():
                self.failures.setdefault(name, []).append((attempt, len(job.files), job.engine_id))
            if record.quarantine:
                self._quarantine(record, Folder.FAILED, record.quarantine)
        elif state is JobState.RELEASED:
            result.handed_back.update(job.files)
        elif state is JobState.UNKNOWN:
            self._quarantine(record, Folder.UNKNOWN, list(job.files))
        elif state is JobState.EXPIRED:
            job.superseded = record.superseded
        elif state is JobState.REFUSED:
            job.superseded = True
            job.reason = record.reason

    def _quarantine(self, record: JobRecord, kind: Folder, names: list[str]) -> None:
        folder = JobFolder(kind, record.job_id, record.engine_id)
        if f"{folder.job_id}_{folder.engine_id}" not in self.requeued:
            self.result.quarantine_folders[folder.name] = (folder, sorted(names))

    def _job(self, record: JobRecord) -> Job:
        return Job(
            job_id=record.job_id,
            engine_id=record.engine_id,
            files=dict(record.files),
            state=JobState.ASSIGNED,
            assigned_at=self.now,
            last_seen=self.now,
            lease_s=self.lease_s,
            engine_state=record.engine_state,
        )

    # ------------------------------------------------------------ folders

    def _list_inputs(self) -> set[str]:
        """One walk of the input folder: staging leftovers removed; the names of its
        folders (a `.pod5` costs one `is_dir`, which the entry answers without a `stat`)."""
        found: set[str] = set()
        with os.scandir(self.journal.input_dir) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(STAGING_PREFIX):
                    if name == INPUT_STAGING_NAME and entry.is_dir(follow_symlinks=False):
                        self._empty_input_staging()
                    else:
                        _remove(self.journal.input_dir, name)
                        self.result.repairs.append(("staging_removed", name))
                elif entry.is_dir(follow_symlinks=False):
                    found.add(name)
        return found

    def _empty_input_staging(self) -> None:
        """The journal's own staging folder stays; what a crash left in it goes."""
        staging = self.journal.input_dir / INPUT_STAGING_NAME
        try:
            leftovers = os.listdir(staging) if _is_folder(staging) else []
        except FileNotFoundError:
            return
        for leftover in leftovers:
            _remove(staging, leftover)
            self.result.repairs.append(("staging_removed", f"{INPUT_STAGING_NAME}/{leftover}"))

    def _finish_releases(self, folders: set[str] | None) -> None:
        """Quarantine folders a person released but a crash left behind: finish the
        release (the records in `requeued/` name them)."""
        input_dir = self.journal.input_dir
        for key in sorted(self.requeued):
            for kind in (Folder.FAILED, Folder.UNKNOWN):
                name = f"{kind}_{key}"
                if _is_in(input_dir, name, folders):
                    _remove(input_dir, name)
                    self.result.repairs.append(("requeue_finished", name))
                    if folders is not None:
                        folders.discard(name)

    def _input_kinds(self, record: JobRecord, folders: set[str] | None) -> Kinds:
        """The job's folders in the input folder, by the names its record gives them."""
        found: Kinds = {}
        for kind in INPUT_FOLDERS:
            folder = JobFolder(kind, record.job_id, record.engine_id)
            if _is_in(self.journal.input_dir, folder.name, folders):
                found[kind] = folder
        return found

    def _scan(self, parent: os.PathLike[str]) -> dict[str, Kinds]:
        """One walk of OUTPUTDIR: staging leftovers removed, job folders by job id;
        whatever an engine left under a job folder's name counts (a file or a link where
        its folder was)."""
        found: dict[str, Kinds] = {}
        with os.scandir(parent) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(STAGING_PREFIX):
                    _remove(parent, name)
                    self.result.repairs.append(("staging_removed", name))
                    continue
                folder = parse_job_folder(name)
                if folder is not None:
                    found.setdefault(folder.job_id, {})[folder.kind] = folder
        return found

    def _orphan(self, folder: JobFolder, outputs: Kinds | None = None) -> None:
        """An output folder whose assignment never committed: nobody got its files. Kept
        as ORPHANOUTPUT_ if anything was written into it, else removed."""
        if outputs is not None and Folder.TMPOUTPUT not in outputs:
            return
        journal = self.journal
        out = os.open(journal.output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if engine_trees.holds_anything(out, folder.name):
                engine_trees.rename_folder(
                    out, folder.name, folder.renamed(Folder.ORPHANOUTPUT).name
                )
            else:
                engine_trees.remove_folder(out, folder.name)
        finally:
            os.close(out)
        self.result.repairs.append(("orphan_removed", folder.name))


def _remove(parent: str | os.PathLike[str], name: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            engine_trees.remove_folder(fd, name)
        finally:
            os.close(fd)


def _is_folder(path: Path) -> bool:
    """A folder, not a link to one (as a directory entry's `is_dir(follow_symlinks=False)`)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_in(parent: Path, name: str, folders: set[str] | None) -> bool:
    """Whether `name` is a folder in `parent`: from its listing, or looked up by name."""
    return name in folders if folders is not None else _is_folder(parent / name)


def _history(tries: list[tuple[int, int, str]], released: int) -> FailureHistory | None:
    """A file's failure history from its failed tries (attempt, batch size, engine),
    counting only tries after a person released it at attempt `released`. The latest
    try (highest attempt) sets the batch cap the halving left."""
    counted = [t for t in tries if t[0] > released]
    failures = max(attempt for attempt, _, _ in tries)
    if not counted:
        return FailureHistory(failures=failures) if failures else None
    latest_batch = max(counted)[1]
    cap = 1 if latest_batch == 1 else max(size for _, size in halves(["x"] * latest_batch))
    solo = [engine for _, batch, engine in counted if batch == 1]
    return FailureHistory(
        failures=failures,
        solo_failures=len(solo),
        failed_on=frozenset(solo),
        batch_cap=cap,
    )


_BATCH = re.compile(r"_(\d+)\.(?:fastq\.gz|fq\.gz|fastq|fq|bam)$")


def _next_batch_in(output_dir: Path) -> int:
    """One more than the highest batch number in a name of MinKNOW's output folders (and
    their barcode folders) below `output_dir`; 0 when there is none."""
    highest = -1
    for top in MINKNOW_OUTPUTS:
        folder = output_dir / top
        if not folder.is_dir() or folder.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            if Path(dirpath) != folder:
                dirnames[:] = []  # barcode folders, one level down
            for name in filenames:
                if (found := _BATCH.search(name)) is not None:
                    highest = max(highest, int(found.group(1)))
    return highest + 1
