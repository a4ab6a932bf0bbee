"""The journal: reactor's records, and the job folders engines and people see.

This module owns every change reactor makes on disk; `reactor.disk.recovery` rebuilds the
run's state after a crash. Two kinds of place are written:

- reactor's own records, in the state folder `OUTPUTDIR/.reactor/` (`reactor.disk.
  state_dir`): one record per job, saying what it holds and what was decided about it.
  Only these are believed. A record is replaced atomically, and that replacement is the
  commit point of every decision about a job.
- the seed's folders, which engines and people use: `ASSIGNED_…` (links to a live job's
  `.pod5` files) and `FAILED_…`/`UNKNOWN_…` in INPUTDIR; `TMPOUTPUT_…` (where an engine
  writes) and the folders a finished job's leftovers are kept in, in OUTPUTDIR. Engines
  can write there, so they are read as data only (`reactor.disk.engine_trees`): never
  a link followed, never a record read from them.

Folders are built under a `.reactor-staging-` name and renamed into place; every other
step is one atomic rename, one record replaced, or a removal that can be repeated, so a
`kill -9` between any two steps leaves a state that recovery finishes. An assignment
commits when its `ASSIGNED_` folder is renamed into INPUTDIR. Each step after a commit
that cannot be carried out (an engine removed its folder, made it read-only) does not
undo the decision: `Unfinished` says what is left, and the job is held for a person
while every other job goes on.

docs/journal.md has the layout, the record, and the step table of each transition with
what recovery does after a crash at each step. Durability: renames and record
replacements are atomic against process crashes (docs/journal.md, "Durability").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from reactor.core.names import (
    INPUT_STAGING_NAME,
    RESULT_FOLDERS,
    STAGING_PREFIX,
    Folder,
    JobFolder,
    job_tag,
    output_stems,
)
from reactor.core.state import Job, JobState
from reactor.disk import engine_trees, fsops
from reactor.disk.durable import DurabilityError, Sync
from reactor.disk.engine_trees import Outputs, Refused
from reactor.disk.state_dir import JOBS, RECORD_SUFFIX, REQUEUED, SPLIT, StateDir, open_folder

Checkpoint = Callable[[str], None]
RECORD_FORMAT = 2
MINKNOW_LAYOUT = "minknow"
NOT_MERGED = "not_merged"  # in LOGOUTPUT_: split files whose names were taken
_SPLIT_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
T = TypeVar("T")

__all__ = [
    "Checkpoint",
    "JobRecord",
    "Journal",
    "JournalError",
    "Merged",
    "Refused",
    "Step",
    "Unfinished",
]


def _no_checkpoint(step: str) -> None:
    """Production checkpoint: nothing. Tests pass one that crashes at a chosen step."""


class JournalError(OSError):
    """A journal step failed on disk before its commit point; memory was not changed.

    Every step is safe to retry: a repeated report or the next sweep carries on from
    the last step that reached the disk, as recovery would."""


class Unfinished(Exception):
    """The decision is committed, but a step after it could not be carried out: the
    job's folders stay as they are for a person, and the decision stands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Merged:
    """What a merge moved into pass/ and fail/, and what it had to leave in the job's
    leftovers (`LOGOUTPUT_…`), each with why (its destination name was taken, or the
    entry changed after it was inspected)."""

    moved: int = 0
    kept: list[str] = field(default_factory=list)  # "pass/<entry>: <why>"
    # the decision's record: when the job was assigned and merged (wall clock)
    assigned_at: float = 0.0
    decided_at: float = 0.0


@dataclass(slots=True)
class JobRecord:
    """A job's record in the state folder (`.reactor/jobs/<jobid>.json`)."""

    job_id: str
    engine_id: str
    files: dict[str, int]  # name -> attempt
    state: str
    assigned_at: float  # wall clock, for people
    decided_at: float | None = None
    engine_state: str = ""
    requeue: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # done: what to merge
    superseded: bool = False  # expired, and its outputs set aside for good
    reason: str = ""  # refused: why
    # done, its reads counted: `reactor.core.readstats.JobReads.to_json()`
    reads: dict[str, Any] | None = None
    # done, its reads read: how they were judged and made (the run's parameters then,
    # min_qscore, the layout): with the job's engine and files, the run's manifest
    made_with: dict[str, str] | None = None
    # done in MinKNOW's layout: `outputs` are (output folder, name) in .reactor/split/<job>/,
    # written from the engine's `read_from` (result folder, name), with this batch number
    layout: str = "seed"
    batch: int | None = None
    read_from: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "job_id": self.job_id,
            "engine_id": self.engine_id,
            "state": self.state,
            "files": self.files,
            "assigned_at": self.assigned_at,
            "decided_at": self.decided_at,
            "engine_state": self.engine_state,
            "requeue": self.requeue,
            "quarantine": self.quarantine,
            "outputs": [list(pair) for pair in self.outputs],
            "superseded": self.superseded,
            "reason": self.reason,
            **({"reads": self.reads} if self.reads is not None else {}),
            **({"made_with": self.made_with} if self.made_with is not None else {}),
            **(
                {
                    "layout": self.layout,
                    "batch": self.batch,
                    "read_from": [list(pair) for pair in self.read_from],
                }
                if self.layout != "seed"
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """A record; ValueError (or KeyError, TypeError) if it is not one."""
        if data.get("format") != RECORD_FORMAT:
            msg = f"format {data.get('format')!r} is not {RECORD_FORMAT}"
            raise ValueError(msg)
        outputs = [(str(kind), str(name)) for kind, name in data.get("outputs", [])]
        return cls(
            job_id=str(data["job_id"]),
            engine_id=str(data["engine_id"]),
            files={str(k): int(v) for k, v in data["files"].items()},
            state=str(data["state"]),
            assigned_at=float(data["assigned_at"]),
            decided_at=data.get("decided_at"),
            engine_state=str(data.get("engine_state", "")),
            requeue=[str(n) for n in data.get("requeue", [])],
            quarantine=[str(n) for n in data.get("quarantine", [])],
            outputs=outputs,
            superseded=bool(data.get("superseded", False)),
            reason=str(data.get("reason", "")),
            reads=data["reads"] if isinstance(data.get("reads"), dict) else None,
            made_with=(
                {str(k): str(v) for k, v in data["made_with"].items()}
                if isinstance(data.get("made_with"), dict)
                else None
            ),
            layout=str(data.get("layout", "seed")),
            batch=int(data["batch"]) if data.get("batch") is not None else None,
            read_from=[(str(kind), str(name)) for kind, name in data.get("read_from", [])],
        )


@dataclass(frozen=True, slots=True)
class SplitOutputs:
    """A job's reads written again in MinKNOW's layout, in `.reactor/split/<job>/`."""

    written: tuple[tuple[str, str], ...]  # (output folder, name)
    read_from: tuple[tuple[str, str], ...]  # the engine's outputs they were read from
    batch: int


def record_name(job_id: str) -> str:
    return f"{job_id}{RECORD_SUFFIX}"


@contextlib.contextmanager
def _committing(action: str) -> Iterator[None]:
    """Before the commit point: any OSError becomes a JournalError saying what failed."""
    try:
        yield
    except JournalError:
        raise
    except OSError as exc:
        msg = f"could not {action}: {exc}"
        raise JournalError(msg) from exc


@contextlib.contextmanager
def _finishing(action: str) -> Iterator[None]:
    """After the commit point: an OSError leaves the job Unfinished, saying what failed.
    Not a failed fsync: what reached the disk is unknown, so it is never a step to try
    again (`reactor.disk.durable`); it goes up, and the writer stops."""
    try:
        yield
    except DurabilityError:
        raise
    except OSError as exc:
        msg = f"could not {action}: {exc.strerror or exc}"
        raise Unfinished(msg) from exc


class Step(Generic[T]):
    """One change of the journal, in the three phases a group of them is run in.

    `prepare` writes what the change will point at and stages its record; `commit`
    renames the record into place (the commit point); `finish` carries out what follows
    from it and returns the step's result; `tidy` does what must wait until `finish`'s
    work is durable (a merged job's folder renamed only once its outputs are out of it
    for good). Between phases comes a barrier (`reactor.disk.durable.Sync.flush`): a
    record is durable before it is renamed, and the rename before anything that follows
    from it. `Journal.run` runs one step alone;
    the service's writer (`reactor.serve.writer`) runs the phases of many steps side by
    side, sharing each barrier: a group commit.

    `prepare` and `commit` raise JournalError (nothing decided; safe to retry) or
    Refused (a merge the job's outputs rule out); `finish` raises Unfinished (decided,
    steps left) or, for an assignment, JournalError."""

    def prepare(self, sync: Sync) -> None:
        """Before the commit point."""

    def commit(self, sync: Sync) -> None:
        """The commit point."""

    def finish(self, sync: Sync) -> T:
        raise NotImplementedError

    def tidy(self, sync: Sync) -> None:
        """After `finish`'s work is durable."""

    @property
    def tidies(self) -> bool:
        """Whether `tidy` has work: a step without is done, and may be answered, once
        `finish`'s work is durable."""
        return type(self).tidy is not Step.tidy


class Chore(Step[T]):
    """Disk work that decides nothing (a lease mark, a retry of steps left): it only
    has to run in order with the steps around it."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work

    def finish(self, sync: Sync) -> T:
        return self._work()


class _Recorded(Step[T]):
    """A change whose commit point is a record replaced in the state folder."""

    def __init__(
        self,
        journal: Journal,
        action: str,
        folder: str,
        name: str,
        data: Callable[[], dict[str, Any]],
        after: Callable[[Sync], T],
        before: Callable[[Sync], None] | None = None,
        tidy: Callable[[Sync], None] | None = None,
    ) -> None:
        self._journal = journal
        self._tidy = tidy
        self._action = action
        self._folder = folder
        self._name = name
        self._data = data
        self._after = after
        self._before = before
        self._tmp = ""

    def prepare(self, sync: Sync) -> None:
        with _committing(self._action):
            if self._before is not None:
                self._before(sync)
            self._tmp = self._journal.state.stage(self._folder, self._name, self._data(), sync)

    def commit(self, sync: Sync) -> None:
        with _committing(self._action):
            self._journal.state.commit(self._folder, self._tmp, self._name, sync)

    def finish(self, sync: Sync) -> T:
        return self._after(sync)

    def tidy(self, sync: Sync) -> None:
        if self._tidy is not None:
            self._tidy(sync)

    @property
    def tidies(self) -> bool:
        return self._tidy is not None


def _beside(name: str) -> str:
    return f"../{name}"


class Journal:
    """Carries state changes out on disk, each step crash-safe (see the module docstring)."""

    def __init__(
        self,
        input_dir: Path,
        output_dir: Path,
        checkpoint: Checkpoint = _no_checkpoint,
        *,
        durable: bool = True,
        link_target: Callable[[str], str] | None = None,
    ) -> None:
        self.input_dir = input_dir
        # What a link in a job's folder leads to: `../<name>` when the files are in
        # INPUTDIR itself (`reactor.disk.inputs.InputFolders.link_target` otherwise).
        self._link_target = link_target or _beside
        self.durable = durable
        self.output_dir = output_dir
        self.state = StateDir(output_dir)
        self._checkpoint = checkpoint
        self._fds: dict[str, int] = {}

    # ------------------------------------------------------------- folders

    def open(self) -> None:
        """Open the state folder and the run folders (descriptors kept for the run)."""
        self.state.open()
        for name, path in (("input", self.input_dir), ("output", self.output_dir)):
            if name not in self._fds:
                self._fds[name] = open_folder(None, path)

    def close(self) -> None:
        """Close the descriptors (the service does at shutdown; a dropped journal too)."""
        self.state.close()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        self.close()

    @property
    def _input_fd(self) -> int:
        if "input" not in self._fds:
            self.open()
        return self._fds["input"]

    @property
    def _output_fd(self) -> int:
        if "output" not in self._fds:
            self.open()
        return self._fds["output"]

    def input_folder(self, job: Job, kind: Folder = Folder.ASSIGNED) -> Path:
        return self.input_dir / JobFolder(kind, job.job_id, job.engine_id).name

    def output_folder(self, job: Job, kind: Folder = Folder.TMPOUTPUT) -> Path:
        return self.output_dir / JobFolder(kind, job.job_id, job.engine_id).name

    @staticmethod
    def _name(job: Job, kind: Folder) -> str:
        return JobFolder(kind, job.job_id, job.engine_id).name

    def _input_staging_fd(self) -> int:
        """INPUTDIR's staging folder, where folders of links are built before they are
        renamed into INPUTDIR (made, or made again if something else took its name).

        Not INPUTDIR itself: a rename inside a watched folder is a moved-from event,
        which watchdog's inotify buffer holds for 0.5 s and which can hold back every
        event behind it, new `.pod5` files included (its DelayedQueue sleeps on a held
        head even after the pair is matched). Renamed in from a subfolder nobody
        watches, the folder only arrives: no move to pair, no wait."""
        try:
            return open_folder(self._input_fd, INPUT_STAGING_NAME)
        except NotADirectoryError:
            engine_trees.remove_folder(self._input_fd, INPUT_STAGING_NAME)
        except FileNotFoundError:
            pass
        with contextlib.suppress(FileExistsError):
            fsops.mkdir(INPUT_STAGING_NAME, 0o755, dir_fd=self._input_fd)
        return open_folder(self._input_fd, INPUT_STAGING_NAME)

    # ------------------------------------------------------------- records

    def read_record(self, job_id: str) -> JobRecord | None:
        """The job's record; None if there is none. ValueError if it is not a record."""
        data = self.state.read(JOBS, record_name(job_id))
        return None if data is None else JobRecord.from_json(data)

    def records(self) -> Iterator[tuple[str, JobRecord | ValueError]]:
        """Every job record, by file name; one that cannot be read comes as its error."""
        for name in self.state.names(JOBS):
            try:
                data = self.state.read(JOBS, name)
                if data is None:
                    continue
                yield name, JobRecord.from_json(data)
            except (ValueError, KeyError, TypeError) as exc:
                yield name, ValueError(str(exc))

    def requeued(self) -> Iterator[tuple[str, dict[str, int]]]:
        """Released quarantines: (folder name, attempts each file had used)."""
        for name in self.state.names(REQUEUED):
            try:
                data = self.state.read(REQUEUED, name)
            except ValueError:
                continue
            if data is not None:
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    files = {str(k): int(v) for k, v in data["files"].items()}
                    yield name.removesuffix(RECORD_SUFFIX), files

    def write_record(self, record: JobRecord) -> None:
        self.state.write(JOBS, record_name(record.job_id), record.to_json(), Sync(self.durable))

    def _record_for(self, job: Job, state: JobState, **extra: Any) -> JobRecord:
        extra.setdefault("engine_state", job.engine_state)
        return JobRecord(
            job_id=job.job_id,
            engine_id=job.engine_id,
            files=dict(job.files),
            state=state,
            assigned_at=time.time(),
            **extra,
        )

    # --------------------------------------------------------------- steps

    def run(self, step: Step[T]) -> T:
        """Carry one step out alone, each barrier its own (recovery, tools and tests;
        the service groups steps in its writer)."""
        sync = Sync(self.durable)
        try:
            step.prepare(sync)
            sync.flush()
            step.commit(sync)
            sync.flush()
            result = step.finish(sync)
            sync.flush()
            step.tidy(sync)
            sync.flush()
        except BaseException:
            sync.discard()
            raise
        return result

    def _decision(
        self,
        job: Job,
        state: JobState,
        action: str,
        after: Callable[[JobRecord, Sync], T],
        before: Callable[[Sync], None] | None = None,
        details: Callable[[], dict[str, Any]] = dict,
        tidy: Callable[[Sync], None] | None = None,
        **extra: Any,
    ) -> Step[T]:
        """A decision about `job`: its record replaced with the new `state` (the commit
        point), then `after` carries out what follows from it. `details` adds to the
        record what only `before` finds out (the outputs a merge inspected)."""
        record: list[JobRecord] = []

        def data() -> dict[str, Any]:
            try:
                previous = self.read_record(job.job_id)
            except (ValueError, KeyError, TypeError):
                previous = None
            decided = self._record_for(job, state, decided_at=time.time(), **extra, **details())
            if previous is not None:
                decided.assigned_at = previous.assigned_at
            record[:] = [decided]
            return decided.to_json()

        return _Recorded(
            self,
            f"{action} job {job.job_id}",
            JOBS,
            record_name(job.job_id),
            data,
            lambda sync: after(record[0], sync),
            before,
            tidy,
        )

    # -------------------------------------------------------------- assign

    def assign_step(self, job: Job) -> Step[None]:
        """Record the job, then make its output folder and its folder of links; the job
        is live once the links are in INPUTDIR (all-or-nothing). Its folders are durable
        before the engine is told of them: their names, the links, both run folders."""
        out_stage = f"{STAGING_PREFIX}{job.job_id}"

        def place(sync: Sync) -> None:
            try:
                self._checkpoint("assign:recorded")
                stage_fd = self._make_stage(self._output_fd, out_stage)
                try:
                    for kind in RESULT_FOLDERS:
                        fsops.mkdir(kind, dir_fd=stage_fd)
                except BaseException:
                    os.close(stage_fd)
                    raise
                sync.take(stage_fd)
                fsops.rename(
                    out_stage,
                    self._name(job, Folder.TMPOUTPUT),
                    src_dir_fd=self._output_fd,
                    dst_dir_fd=self._output_fd,
                )
                sync.folder(self._output_fd)
                self._checkpoint("assign:output_placed")
                self._place_new_links(
                    job,
                    Folder.ASSIGNED,
                    job.files,
                    sync,
                    staged=lambda: self._checkpoint("assign:input_staged"),
                )
            except OSError as exc:
                sync.discard()
                self._undo_assign(job, out_stage)
                msg = f"could not create the folders of job {job.job_id}: {exc}"
                raise JournalError(msg) from exc
            self._checkpoint("assign:committed")

        return _Recorded(
            self,
            f"record job {job.job_id}",
            JOBS,
            record_name(job.job_id),
            lambda: self._record_for(job, JobState.ASSIGNED).to_json(),
            place,
        )

    def assign(self, job: Job) -> None:
        self.run(self.assign_step(job))

    def _undo_assign(self, job: Job, out_stage: str) -> None:
        with contextlib.suppress(OSError):
            staging = self._input_staging_fd()
            try:
                engine_trees.remove_folder(staging, job.job_id)
            finally:
                os.close(staging)
        with contextlib.suppress(OSError):
            engine_trees.remove_folder(self._output_fd, out_stage)
            engine_trees.remove_folder(self._output_fd, self._name(job, Folder.TMPOUTPUT))
            self.state.remove(JOBS, record_name(job.job_id))

    @staticmethod
    def _make_stage(parent_fd: int, name: str) -> int:
        engine_trees.remove_folder(parent_fd, name)  # a leftover of a crash
        fsops.mkdir(name, dir_fd=parent_fd)
        return open_folder(parent_fd, name)

    def _place_new_links(
        self,
        job: Job,
        kind: Folder,
        names: Iterable[str],
        sync: Sync,
        staged: Callable[[], None] = lambda: None,
    ) -> None:
        """Build a fresh folder of one relative symlink (`../<name>`) per name in the
        staging folder (relative links work wherever engines mount the run folder), then
        rename it up into INPUTDIR as `<kind>_<job>`. Made through descriptors: no path
        is followed, and no path object is built per link (a batch of 100 files made
        that costly)."""
        staging = self._input_staging_fd()
        link_target = self._link_target
        try:
            engine_trees.remove_folder(staging, job.job_id)  # a leftover of a crash
            fsops.mkdir(job.job_id, dir_fd=staging)
            fd = open_folder(staging, job.job_id)
            try:
                for name in names:
                    fsops.symlink(link_target(name), name, dir_fd=fd)
            except BaseException:
                os.close(fd)
                raise
            sync.take(fd)
            staged()
            fsops.rename(
                job.job_id, self._name(job, kind), src_dir_fd=staging, dst_dir_fd=self._input_fd
            )
            # A rename between two folders is durable once both are (the staging one too).
            sync.folder(self._input_fd)
            sync.folder(self._input_fd, INPUT_STAGING_NAME)
        finally:
            os.close(staging)

    # ------------------------------------------------------------- outcomes

    def inspect(self, job: Job) -> Outputs:
        """The job's outputs, if they may be merged; Refused says what breaks the rules."""
        return engine_trees.inspect(
            self._output_fd, self._name(job, Folder.TMPOUTPUT), job_tag(job.job_id)
        )

    def merge_step(
        self,
        job: Job,
        outputs: Outputs | None = None,
        reads: dict[str, Any] | None = None,
        split: SplitOutputs | None = None,
        made_with: dict[str, str] | None = None,
    ) -> Step[Merged]:
        """DONE: look at the outputs (unless given), make them durable, record what is
        merged (the commit point) with the job's `reads`, then move it into pass/ and
        fail/ — or, with `split`, the reads written again in MinKNOW's layout into their
        folders. Refused before the commit when the outputs break the rules; Unfinished
        when a step after it cannot be carried out."""
        found: list[Outputs] = [] if outputs is None else [outputs]

        def before(sync: Sync) -> None:
            if split is not None:
                self._make_split_durable(job, split, sync)
                return
            if not found:
                found.append(self.inspect(job))
            engine_trees.make_durable(
                self._output_fd, self._name(job, Folder.TMPOUTPUT), found[0], sync
            )

        def details() -> dict[str, Any]:
            extra: dict[str, Any] = {} if reads is None else {"reads": reads}
            if made_with is not None:
                extra["made_with"] = made_with
            if split is None:
                return {"outputs": list(found[0].entries), **extra}
            return {
                "outputs": list(split.written),
                "layout": MINKNOW_LAYOUT,
                "batch": split.batch,
                "read_from": list(split.read_from),
                **extra,
            }

        def after(record: JobRecord, sync: Sync) -> Merged:
            self._passed("merge:decided")
            merged = self._move_outputs(job, record, sync)
            merged.assigned_at = record.assigned_at
            merged.decided_at = record.decided_at or record.assigned_at
            return merged

        return self._decision(
            job,
            JobState.DONE,
            "merge the outputs of",
            after,
            before,
            details=details,
            tidy=lambda sync: self._tidy_merge(job, split),
        )

    def merge(self, job: Job, outputs: Outputs | None = None) -> Merged:
        return self.run(self.merge_step(job, outputs))

    def split_folder(self, job_id: str) -> Path:
        """Where a job's reads are written again in MinKNOW's layout before they merge
        (made afresh by the writer of the split, removed once they are merged)."""
        return self.state.path / SPLIT / job_id

    def _make_split_durable(self, job: Job, split: SplitOutputs, sync: Sync) -> None:
        stage = open_folder(self.state.fd(SPLIT), job.job_id)
        try:
            for _folder, name in split.written:
                sync.take(os.open(name, _SPLIT_READ_FLAGS, dir_fd=stage))
        except BaseException:
            os.close(stage)
            raise
        sync.take(stage)
        sync.folder(self.state.fd(SPLIT))

    def finish_merge(self, job: Job, record: JobRecord) -> Merged:
        """What is left of a merge (recovery, a retry): the outputs the record lists
        moved, durably, and only then the folder kept as LOGOUTPUT_."""
        sync = Sync(self.durable)
        try:
            merged = self._move_outputs(job, record, sync)
            sync.flush()
        finally:
            sync.discard()
        split = (
            SplitOutputs(tuple(record.outputs), tuple(record.read_from), record.batch or 0)
            if record.layout == MINKNOW_LAYOUT
            else None
        )
        self._tidy_merge(job, split)
        return merged

    def _move_outputs(self, job: Job, record: JobRecord, sync: Sync) -> Merged:
        """Move what the record lists into pass/ and fail/ (in MinKNOW's layout, from the
        job's split folder into theirs); the folders changed go to `sync`."""
        merged = Merged()
        folder = self._name(job, Folder.TMPOUTPUT)
        logs = self._name(job, Folder.LOGOUTPUT)
        with _finishing(f"merge the outputs of {folder}"):
            if engine_trees.renamed(self._output_fd, folder, logs):
                return merged  # all moved before the folder was renamed
            if record.layout == MINKNOW_LAYOUT:
                stage = engine_trees.open_if_there(self.state.fd(SPLIT), job.job_id)
                try:
                    moved = engine_trees.place(
                        stage,
                        self._output_fd,
                        list(record.outputs),
                        after_each=lambda: self._passed("merge:output_moved"),
                        sync=sync,
                    )
                finally:
                    if stage is not None:
                        os.close(stage)
            else:
                moved = engine_trees.move(
                    self._output_fd,
                    folder,
                    Outputs(tuple(record.outputs)),
                    job_tag(job.job_id),
                    after_each=lambda: self._passed("merge:output_moved"),
                    sync=sync,
                )
            merged.moved, merged.kept = moved.moved, moved.kept
        return merged

    def _tidy_merge(self, job: Job, split: SplitOutputs | None) -> None:
        """Once the merged outputs are durable: in MinKNOW's layout the engine's reads
        (copied into the split outputs) go, unless a split file could not be merged (its
        name was taken: then they stay with the job); then the job's folder is kept as
        LOGOUTPUT_; then its split folder is settled (`settle_split`)."""
        if split is not None and not self._split_holds_files(job):
            with _finishing("remove the engine's reads, merged in MinKNOW's layout"):
                engine_trees.remove_entries(
                    self._output_fd, self._name(job, Folder.TMPOUTPUT), list(split.read_from)
                )
        self._merged(job)
        if split is not None:
            with _finishing("settle the split folder of the merged job"):
                self.settle_split(job)

    def _split_holds_files(self, job: Job) -> bool:
        stage = engine_trees.open_if_there(self.state.fd(SPLIT), job.job_id)
        if stage is None:
            return False
        try:
            return bool(os.listdir(stage))
        finally:
            os.close(stage)

    def settle_split(self, job: Job) -> None:
        """A merged job's split folder (MinKNOW's layout): removed when empty (every file
        merged); else what is left, files whose names were taken in the results, kept
        with the job's leftovers as `LOGOUTPUT_…/not_merged/` for a person. Never lost."""
        split_fd = self.state.fd(SPLIT)
        if not self._split_holds_files(job):
            engine_trees.remove_folder(split_fd, job.job_id)
            return
        logs = engine_trees.open_if_there(self._output_fd, self._name(job, Folder.LOGOUTPUT))
        if logs is None:
            return  # the job's folder is not kept yet: settled when its merge finishes
        try:
            fsops.rename(job.job_id, NOT_MERGED, src_dir_fd=split_fd, dst_dir_fd=logs)
            fsops.fsync(logs)
            fsops.fsync(split_fd)
        finally:
            os.close(logs)

    def _merged(self, job: Job) -> None:
        """The merged job's folder kept as LOGOUTPUT_, its links gone. Only once the
        moves out of it are durable: a power cut must never keep this rename and lose
        them (nothing orders two folders' changes but an fsync)."""
        folder = self._name(job, Folder.TMPOUTPUT)
        with _finishing(f"keep {folder} as LOGOUTPUT_"):
            engine_trees.rename_folder(self._output_fd, folder, self._name(job, Folder.LOGOUTPUT))
            self._passed("merge:logged")
            self.release(job)
        self._passed("merge:released")

    def refuse_step(self, job: Job, reason: str) -> Step[None]:
        """A DONE whose outputs break the rules: nothing merged, outputs kept aside."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("refuse:decided")
            self.finish_refuse(job)

        return self._decision(
            job,
            JobState.REFUSED,
            "record the refusal of",
            after,
            reason=reason,
            superseded=True,
        )

    def refuse(self, job: Job, reason: str) -> None:
        self.run(self.refuse_step(job, reason))

    def finish_refuse(self, job: Job) -> None:
        self._keep_aside(job, Folder.REFUSEDOUTPUT, "refuse:output_kept")
        with _finishing("remove the links of the refused job"):
            self.release(job)
        self._passed("refuse:released")

    def fail_step(self, job: Job, requeue: Iterable[str], quarantine: Iterable[str]) -> Step[None]:
        """FAILED: quarantine files at max_attempts; the others go back to the queue."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("fail:decided")
            self.finish_fail(job, record)

        return self._decision(
            job,
            JobState.FAILED,
            "record the failure of",
            after,
            requeue=list(requeue),
            quarantine=list(quarantine),
        )

    def fail(self, job: Job, requeue: Iterable[str], quarantine: Iterable[str]) -> None:
        self.run(self.fail_step(job, requeue, quarantine))

    def finish_fail(self, job: Job, record: JobRecord) -> None:
        if record.quarantine:
            with _finishing("make the quarantine folder"):
                self.place_links(job, Folder.FAILED, record.quarantine)
            self._passed("fail:quarantined")
            kind = Folder.FAILEDOUTPUT
        else:
            kind = Folder.RETRIEDOUTPUT
        self._keep_aside(job, kind, "fail:output_kept")
        with _finishing("remove the links of the failed job"):
            self.release(job)
        self._passed("fail:released")

    def hand_back_step(self, job: Job) -> Step[None]:
        """RELEASED (the transition "release"): the engine stopped before the end and
        handed the batch back. Its outputs are kept aside, never merged; its links go.
        Nothing is recorded against the files: they are simply ready again."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("release:decided")
            self.finish_hand_back(job)

        return self._decision(job, JobState.RELEASED, "record the release of", after)

    def hand_back(self, job: Job) -> None:
        self.run(self.hand_back_step(job))

    def finish_hand_back(self, job: Job) -> None:
        self._keep_aside(job, Folder.RELEASEDOUTPUT, "release:output_kept")
        with _finishing("remove the links of the released job"):
            self.release(job)
        self._passed("release:released")

    def set_aside_step(self, job: Job, engine_state: str) -> Step[None]:
        """An unknown job_state: keep both folders aside for a person, as the seed did."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("set_aside:decided")
            self.finish_set_aside(job)

        return self._decision(job, JobState.UNKNOWN, "set aside", after, engine_state=engine_state)

    def set_aside(self, job: Job, engine_state: str) -> None:
        self.run(self.set_aside_step(job, engine_state))

    def finish_set_aside(self, job: Job) -> None:
        with _finishing("make the folder of the set-aside job's links"):
            self.place_links(job, Folder.UNKNOWN, list(job.files))
        self._passed("set_aside:input_kept")
        self._keep_aside(job, Folder.UNKNOWNOUTPUT, "set_aside:output_kept")
        with _finishing("remove the links of the set-aside job"):
            self.release(job)
        self._passed("set_aside:released")

    def expire_step(self, job: Job) -> Step[None]:
        """The lease ran out: withdraw the links; outputs stay for a possible late DONE."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("expire:decided")
            self.finish_expire(job)

        return self._decision(job, JobState.EXPIRED, "expire", after)

    def expire(self, job: Job) -> None:
        self.run(self.expire_step(job))

    def finish_expire(self, job: Job) -> None:
        with _finishing("remove the links of the expired job"):
            self.release(job)
        self._passed("expire:released")

    def supersede_step(self, job: Job) -> Step[None]:
        """An expired job's files go out again: its outputs are set aside, never merged."""

        def after(record: JobRecord, sync: Sync) -> None:
            self._passed("supersede:decided")
            self.finish_supersede(job)

        return self._decision(
            job,
            JobState.EXPIRED,
            "set aside the outputs of expired",
            after,
            superseded=True,
        )

    def supersede(self, job: Job) -> None:
        self.run(self.supersede_step(job))

    def finish_supersede(self, job: Job) -> None:
        self._keep_aside(job, Folder.EXPIREDOUTPUT, "supersede:kept")

    def finish(self, job: Job, record: JobRecord) -> Merged:
        """Carry out whatever is left of the decision `record` says (recovery, or a retry
        of an Unfinished job). Repeating a finished decision does nothing."""
        state = record.state
        if state == JobState.DONE:
            return self.finish_merge(job, record)
        if state == JobState.FAILED:
            self.finish_fail(job, record)
        elif state == JobState.RELEASED:
            self.finish_hand_back(job)
        elif state == JobState.REFUSED:
            self.finish_refuse(job)
        elif state == JobState.UNKNOWN:
            self.finish_set_aside(job)
        elif state == JobState.EXPIRED:
            self.finish_expire(job)
            if record.superseded:
                self.finish_supersede(job)
        return Merged()

    def _passed(self, step: str) -> None:
        """A crash point after a decision was committed: a fault there (tests inject
        I/O errors) leaves the decision standing, with its steps left."""
        try:
            self._checkpoint(step)
        except OSError as exc:
            msg = f"a step after {step} failed: {exc.strerror or exc}"
            raise Unfinished(msg) from exc

    def _keep_aside(self, job: Job, kind: Folder, checkpoint: str) -> None:
        """Rename TMPOUTPUT_ (whatever an engine left under its name) to `kind`; gone is
        fine: an engine that removed its folder has nothing to keep."""
        with _finishing(f"keep the job's output folder as {kind}_…"):
            engine_trees.rename_folder(
                self._output_fd, self._name(job, Folder.TMPOUTPUT), self._name(job, kind)
            )
        self._passed(checkpoint)

    def renew_lease(self, job: Job) -> None:
        """Record a keepalive: the record's mtime is the job's last sign of life, which
        recovery reads so that a restart does not extend leases. Best effort and not
        fsynced: a failure, or a power cut, only means a restart counts the lease from
        an earlier mark."""
        with contextlib.suppress(OSError):
            self.state.touch(JOBS, record_name(job.job_id))

    def last_keepalive(self, job_id: str) -> float | None:
        """Wall-clock time of the job's last recorded sign of life."""
        with contextlib.suppress(OSError):
            return self.state.mtime(JOBS, record_name(job_id))
        return None

    def requeue_step(self, folder: JobFolder, baseline: dict[str, int]) -> Step[None]:
        """Release a quarantine (FAILED_… or UNKNOWN_…): a record of each file's attempt
        count so far (recovery ignores failures up to it) is the commit point, then the
        folder of links goes."""

        def after(sync: Sync) -> None:
            try:
                self._checkpoint("requeue:decided")
                engine_trees.remove_folder(self._input_fd, folder.name)
                self._checkpoint("requeue:released")
            except OSError as exc:
                msg = f"could not release {folder.name}: {exc}"
                raise JournalError(msg) from exc

        return _Recorded(
            self,
            f"release {folder.name}",
            REQUEUED,
            f"{folder.job_id}_{folder.engine_id}{RECORD_SUFFIX}",
            lambda: {"format": RECORD_FORMAT, "files": baseline},
            after,
        )

    def requeue(self, folder: JobFolder, baseline: dict[str, int]) -> None:
        self.run(self.requeue_step(folder, baseline))

    # ------------------------------------------------------------- helpers

    def place_links(self, job: Job, kind: Folder, names: list[str]) -> None:
        """Make `<kind>_<job>` hold links to `names`, built afresh (never the engine's
        ASSIGNED_ folder, which it could have changed), unless it is there already.

        Durably, links first: recovery takes the folder as made once its name is there,
        and the name may reach the disk as soon as it is renamed in (a disk writes what
        it holds when it likes; the next fsync of INPUTDIR, whoever makes it, forces it).
        So the links are fsynced before the rename, and a power cut never keeps the name
        without them."""
        try:
            os.stat(self._name(job, kind), dir_fd=self._input_fd, follow_symlinks=False)
        except FileNotFoundError:
            sync = Sync(self.durable)
            try:
                self._place_new_links(job, kind, names, sync, staged=sync.flush)
                sync.flush()  # its name: INPUTDIR and the staging folder
            finally:
                sync.discard()

    def release(self, job: Job) -> None:
        """Remove the job's folder of links (links only: inputs are never touched)."""
        engine_trees.remove_folder(self._input_fd, self._name(job, Folder.ASSIGNED))

    def result_stems(self) -> set[str]:
        """Stems of the outputs in pass/ and fail/ (the seed's rule for 'done')."""
        names: list[str] = []
        for kind in RESULT_FOLDERS:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                fd = open_folder(self._output_fd, kind)
                try:
                    names += os.listdir(fd)
                finally:
                    os.close(fd)
        return output_stems(names)
