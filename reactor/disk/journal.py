"""The filesystem journal: the run folders are the database.

This module owns every change reactor makes on disk; `reactor.disk.recovery` rebuilds the
run's state from disk alone after a crash. The layout is the seed's; what reactor adds is
a manifest, `reactor-job.json`, in each job's output folder `<KIND>_<jobid>_<engineid>`,
saying what the job holds (files, attempt of each) and what was decided about it
(`state`).

Folders are built under a `.reactor-staging-` name; every other step is one atomic
`rename`, one atomic manifest rewrite (write `*.tmp`, then `os.replace`) or a removal
that can be repeated, so a `kill -9` between any two steps leaves a state that recovery
can finish. An assignment commits with the rename of its
`ASSIGNED_` folder into INPUTDIR, a release of quarantine with the rename of its
`REQUEUED_` record; every other decision (done, failed, released, unknown, expired)
commits with the manifest rewrite, and recovery replays the steps after it.

docs/journal.md has the layout, the manifest, and the step table of each transition
(assign, done, failed, release, unknown, expire, supersede, requeue) with what recovery does
after a crash at each step. Durability: renames are atomic against process crashes; the
journal does not fsync (docs/journal.md, "Durability").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.core.names import (
    INPUT_STAGING_NAME,
    MANIFEST_NAME,
    RESULT_FOLDERS,
    STAGING_PREFIX,
    Folder,
    JobFolder,
    is_pod5_name,
    job_tag,
    output_stem,
    parse_job_folder,
)
from reactor.core.state import Job, JobState

Checkpoint = Callable[[str], None]


def _no_checkpoint(step: str) -> None:
    """Production checkpoint: nothing. Tests pass one that crashes at a chosen step."""


def _link_inputs(folder: Path, names: Iterable[str]) -> None:
    """One relative symlink `../<name>` per name in `folder` (relative links work
    wherever engines mount the run folder). Made through a descriptor of `folder`: no
    path object or path walk per link, which a batch of 100 files made costly."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.symlink(f"../{name}", name, dir_fd=fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class Merged:
    """What a merge moved into pass/ and fail/, and what it had to leave in the job's
    leftovers (`LOGOUTPUT_…`) because its destination name was taken."""

    moved: int = 0
    kept: list[str] = field(default_factory=list)  # "pass/<entry>", "fail/<entry>"


class JournalError(OSError):
    """A journal step failed on disk; memory was not changed.

    Every step is safe to retry: a repeated report or the next sweep carries on from
    the last step that reached the disk, as recovery would."""


@contextlib.contextmanager
def _on_disk(action: str, job: Job) -> Iterator[None]:
    """Turn any OSError of a journal operation into a JournalError that says what failed."""
    try:
        yield
    except JournalError:
        raise
    except OSError as exc:
        msg = f"could not {action} job {job.job_id}: {exc}"
        raise JournalError(msg) from exc


@dataclass(slots=True)
class Manifest:
    """The content of `reactor-job.json`."""

    job_id: str
    engine_id: str
    files: dict[str, int]  # name -> attempt
    state: str
    assigned_at: float  # wall clock, for people reading the folder
    engine_state: str = ""
    requeue: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    decided_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": 1,
                "job_id": self.job_id,
                "engine_id": self.engine_id,
                "state": self.state,
                "files": self.files,
                "assigned_at": self.assigned_at,
                "decided_at": self.decided_at,
                "engine_state": self.engine_state,
                "requeue": self.requeue,
                "quarantine": self.quarantine,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        return cls(
            job_id=str(data["job_id"]),
            engine_id=str(data["engine_id"]),
            files={str(k): int(v) for k, v in data["files"].items()},
            state=str(data["state"]),
            assigned_at=float(data["assigned_at"]),
            engine_state=str(data.get("engine_state", "")),
            requeue=[str(n) for n in data.get("requeue", [])],
            quarantine=[str(n) for n in data.get("quarantine", [])],
            decided_at=data.get("decided_at"),
        )


class Journal:
    """Carries state changes out on disk, each step crash-safe (see the module docstring)."""

    def __init__(
        self, input_dir: Path, output_dir: Path, checkpoint: Checkpoint = _no_checkpoint
    ) -> None:
        self.input_dir = input_dir
        self.output_dir = output_dir
        self._checkpoint = checkpoint
        self._input_dir_str = os.fspath(input_dir)

    # ------------------------------------------------------------- paths

    def input_folder(self, job: Job, kind: Folder = Folder.ASSIGNED) -> Path:
        return self.input_dir / JobFolder(kind, job.job_id, job.engine_id).name

    def output_folder(self, job: Job, kind: Folder = Folder.TMPOUTPUT) -> Path:
        return self.output_dir / JobFolder(kind, job.job_id, job.engine_id).name

    def _staging(self, parent: Path, job_id: str) -> Path:
        return parent / f"{STAGING_PREFIX}{job_id}"

    def _input_staging(self, job_id: str) -> Path:
        """Where a folder of links is built before it is renamed into INPUTDIR.

        Not INPUTDIR itself: a rename inside a watched folder is a moved-from event,
        which watchdog's inotify buffer holds for 0.5 s and which can hold back every
        event behind it, new `.pod5` files included (its DelayedQueue sleeps on a held
        head even after the pair is matched). Renamed in from a subfolder nobody
        watches, the folder only arrives: no move to pair, no wait. The staging folder
        is made when first needed (`_make_input_stage`)."""
        return self.input_dir / INPUT_STAGING_NAME / job_id

    @staticmethod
    def _make_input_stage(stage: Path) -> None:
        stage.parent.mkdir(exist_ok=True)
        stage.mkdir()

    # ------------------------------------------------------------ manifest

    @staticmethod
    def _write_manifest(folder: Path, manifest: Manifest) -> None:
        tmp = folder / f"{MANIFEST_NAME}.tmp"
        tmp.write_text(manifest.to_json())
        tmp.replace(folder / MANIFEST_NAME)

    @staticmethod
    def read_manifest(folder: Path) -> Manifest | None:
        try:
            return Manifest.from_json((folder / MANIFEST_NAME).read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _manifest_for(self, job: Job, state: str, **extra: Any) -> Manifest:
        extra.setdefault("engine_state", job.engine_state)
        return Manifest(
            job_id=job.job_id,
            engine_id=job.engine_id,
            files=dict(job.files),
            state=state,
            assigned_at=time.time() if state == JobState.ASSIGNED else 0.0,
            **extra,
        )

    def _decide(self, folder: Path, job: Job, state: JobState, **extra: Any) -> None:
        """Commit a decision: rewrite the job's manifest with its new state."""
        previous = self.read_manifest(folder)
        manifest = self._manifest_for(job, state, decided_at=time.time(), **extra)
        if previous is not None:
            manifest.assigned_at = previous.assigned_at
        self._write_manifest(folder, manifest)

    # -------------------------------------------------------------- assign

    def assign(self, job: Job) -> None:
        """Create the job's output folder and its folder of symlinks (all-or-nothing)."""
        out_stage = self._staging(self.output_dir, job.job_id)
        in_stage = self._input_staging(job.job_id)
        try:
            out_stage.mkdir()
            for kind in RESULT_FOLDERS:
                (out_stage / kind).mkdir()
            self._write_manifest(out_stage, self._manifest_for(job, JobState.ASSIGNED))
            self._checkpoint("assign:output_staged")
            out_stage.rename(self.output_folder(job))
            self._checkpoint("assign:output_placed")
            self._make_input_stage(in_stage)
            _link_inputs(in_stage, job.files)
            self._checkpoint("assign:input_staged")
            in_stage.rename(self.input_folder(job))
        except OSError as exc:
            self._undo_assign(job, in_stage, out_stage)
            msg = f"could not create the folders of job {job.job_id}: {exc}"
            raise JournalError(msg) from exc
        self._checkpoint("assign:committed")

    def _undo_assign(self, job: Job, in_stage: Path, out_stage: Path) -> None:
        for path in (in_stage, out_stage, self.output_folder(job)):
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------- outcomes

    def merge(self, job: Job) -> Merged:
        """DONE: move the job's outputs into pass/ and fail/."""
        folder = self.output_folder(job)
        with _on_disk("merge the outputs of", job):
            if self._already_moved(job, folder, Folder.LOGOUTPUT):
                return Merged()  # a retry after a storage fault: outputs are in place
            self._decide(folder, job, JobState.DONE)
            self._checkpoint("merge:decided")
            return self.finish_merge(job, folder)

    def _already_moved(self, job: Job, folder: Path, *kinds: Folder) -> bool:
        """A decision whose output rename went through before a fault stopped the rest:
        when the temp folder is gone and a folder of `kinds` holds the job, only the
        release of its links is left to do."""
        if folder.exists():
            return False
        if not any(self.output_folder(job, kind).is_dir() for kind in kinds):
            return False
        self.release(job)
        return True

    def finish_merge(self, job: Job, folder: Path) -> Merged:
        merged = Merged()
        tag = job_tag(job.job_id)
        for kind in RESULT_FOLDERS:
            source = folder / kind
            if not source.is_dir():
                continue
            target = self.output_dir / kind
            target.mkdir(exist_ok=True)
            # Plain strings, not Path objects: a job may have made thousands of outputs.
            source_dir, target_dir = os.fspath(source), os.fspath(target)
            for entry in sorted(os.listdir(source_dir)):
                destination = os.path.join(target_dir, f"{tag}{entry}")  # noqa: PTH118
                if os.path.exists(destination):  # noqa: PTH110
                    # Not by protocol (the tag is the job's own): someone else made that
                    # name. A result is never overwritten; this output stays with the
                    # job's leftovers, and the caller says so.
                    merged.kept.append(f"{kind}/{entry}")
                    continue
                os.rename(os.path.join(source_dir, entry), destination)  # noqa: PTH104, PTH118
                merged.moved += 1
                self._checkpoint("merge:output_moved")
        folder.rename(self.output_folder(job, Folder.LOGOUTPUT))
        self._checkpoint("merge:logged")
        self.release(job)
        self._checkpoint("merge:released")
        return merged

    def fail(self, job: Job, requeue: Iterable[str], quarantine: Iterable[str]) -> None:
        """FAILED: quarantine files at max_attempts; the others go back to the queue."""
        folder = self.output_folder(job)
        with _on_disk("record the failure of", job):
            if self._already_moved(job, folder, Folder.FAILEDOUTPUT, Folder.RETRIEDOUTPUT):
                return
            self._decide(
                folder, job, JobState.FAILED, requeue=list(requeue), quarantine=list(quarantine)
            )
            self._checkpoint("fail:decided")
            self.finish_fail(job, folder, list(quarantine))

    def finish_fail(self, job: Job, folder: Path, quarantine: list[str]) -> None:
        if quarantine:
            self.place_links(job, Folder.FAILED, quarantine)
            self._checkpoint("fail:quarantined")
            kind = Folder.FAILEDOUTPUT
        else:
            kind = Folder.RETRIEDOUTPUT
        folder.rename(self.output_folder(job, kind))
        self._checkpoint("fail:output_kept")
        self.release(job)
        self._checkpoint("fail:released")

    def hand_back(self, job: Job) -> None:
        """RELEASED (the transition "release"): the engine stopped before the end and
        handed the batch back. Its outputs are kept aside, never merged; its links go.
        Nothing is recorded against the files: they are simply ready again."""
        folder = self.output_folder(job)
        with _on_disk("record the release of", job):
            if self._already_moved(job, folder, Folder.RELEASEDOUTPUT):
                return
            self._decide(folder, job, JobState.RELEASED)
            self._checkpoint("release:decided")
            self.finish_hand_back(job, folder)

    def finish_hand_back(self, job: Job, folder: Path) -> None:
        folder.rename(self.output_folder(job, Folder.RELEASEDOUTPUT))
        self._checkpoint("release:output_kept")
        self.release(job)
        self._checkpoint("release:released")

    def set_aside(self, job: Job, engine_state: str) -> None:
        """An unknown job_state: keep both folders aside for a person, as the seed did."""
        folder = self.output_folder(job)
        with _on_disk("set aside", job):
            self._decide(folder, job, JobState.UNKNOWN, engine_state=engine_state)
            self._checkpoint("set_aside:decided")
            self.finish_set_aside(job, folder)

    def finish_set_aside(self, job: Job, folder: Path) -> None:
        self.place_links(job, Folder.UNKNOWN, list(job.files))
        self._checkpoint("set_aside:input_kept")
        folder.rename(self.output_folder(job, Folder.UNKNOWNOUTPUT))
        self._checkpoint("set_aside:output_kept")

    def expire(self, job: Job) -> None:
        """The lease ran out: withdraw the symlinks; outputs stay for a possible late DONE."""
        with _on_disk("expire", job):
            self._decide(self.output_folder(job), job, JobState.EXPIRED)
            self._checkpoint("expire:decided")
            self.release(job)
            self._checkpoint("expire:released")

    def supersede(self, job: Job) -> None:
        """An expired job's files go out again: its outputs are set aside, never merged."""
        folder = self.output_folder(job)
        with _on_disk("set aside the outputs of expired", job):
            if folder.exists():
                folder.rename(self.output_folder(job, Folder.EXPIREDOUTPUT))
            self._checkpoint("supersede:kept")

    def renew_lease(self, job: Job) -> None:
        """Record a keepalive: the ASSIGNED_ folder's mtime is the job's last sign of life,
        which recovery reads so that a restart does not extend leases. Best effort: a
        failure only means a restart would count the lease from the previous mark."""
        # Every keepalive comes here: a str path, not a Path (pathlib was 5 % of the
        # loop's time under /keepalive load, py-spy --gil).
        name = JobFolder(Folder.ASSIGNED, job.job_id, job.engine_id).name
        with contextlib.suppress(OSError):
            os.utime(os.path.join(self._input_dir_str, name))  # noqa: PTH118

    def requeue(self, folder: JobFolder, baseline: dict[str, int]) -> None:
        """Release a quarantine folder (FAILED_… or UNKNOWN_…): a REQUEUED_ marker in
        OUTPUTDIR records each file's attempt count so far (recovery ignores failures up
        to it), then the folder of links goes. The marker is the commit point."""
        marker = self.output_dir / folder.renamed(Folder.REQUEUED).name
        stage = self._staging(self.output_dir, f"requeue-{folder.job_id}")
        manifest = Manifest(
            job_id=folder.job_id,
            engine_id=folder.engine_id,
            files=dict(baseline),
            state="requeued",
            assigned_at=0.0,
            decided_at=time.time(),
        )
        try:
            if not marker.exists():
                shutil.rmtree(stage, ignore_errors=True)
                stage.mkdir()
                self._write_manifest(stage, manifest)
                stage.rename(marker)
            self._checkpoint("requeue:decided")
            shutil.rmtree(self.input_dir / folder.name)
            self._checkpoint("requeue:released")
        except OSError as exc:
            msg = f"could not release {folder.name}: {exc}"
            raise JournalError(msg) from exc

    def quarantine_folders(self) -> dict[str, tuple[JobFolder, list[str]]]:
        """FAILED_/UNKNOWN_ folders of INPUTDIR by name, with the .pod5 names they hold."""
        found: dict[str, tuple[JobFolder, list[str]]] = {}
        for entry in os.scandir(self.input_dir):
            folder = parse_job_folder(entry.name)
            if folder is not None and folder.kind in (Folder.FAILED, Folder.UNKNOWN):
                names = sorted(n for n in os.listdir(entry.path) if is_pod5_name(n))
                found[entry.name] = (folder, names)
        return found

    # ------------------------------------------------------------- helpers

    def place_links(self, job: Job, kind: Folder, names: list[str]) -> None:
        """Make `<kind>_<job>` hold links to `names`: rename ASSIGNED_ when it holds
        exactly those, else build the folder under a staging name."""
        target = self.input_folder(job, kind)
        if target.exists():
            return
        assigned = self.input_folder(job)
        if assigned.is_dir() and set(os.listdir(assigned)) == set(names):
            assigned.rename(target)
            return
        stage = self._input_staging(job.job_id)
        shutil.rmtree(stage, ignore_errors=True)
        self._make_input_stage(stage)
        _link_inputs(stage, names)
        stage.rename(target)

    def release(self, job: Job) -> None:
        """Remove the job's folder of symlinks (links only: inputs are never touched)."""
        shutil.rmtree(self.input_folder(job), ignore_errors=True)

    def rebuild_output_folder(self, job: Job) -> None:
        """Recreate a live job's output folder and manifest (recovery of seed-era jobs)."""
        out = self.output_folder(job)
        for kind in RESULT_FOLDERS:
            (out / kind).mkdir(parents=True, exist_ok=True)
        self._write_manifest(out, self._manifest_for(job, JobState.ASSIGNED))

    def result_stems(self) -> set[str]:
        """Stems of the outputs in pass/ and fail/ (the seed's rule for 'done')."""
        stems: set[str] = set()
        for kind in RESULT_FOLDERS:
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(self.output_dir / kind):
                    stem = output_stem(name)
                    if stem is not None:
                        stems.add(stem)
        return stems
