"""Recovery: rebuild the run's state from disk alone, finishing half-done transitions.

Runs once at start, before the service answers anything. It reads every job folder's
manifest (`reactor-job.json`, see `reactor.disk.journal` for the protocol), replays the steps
of any decision that was committed but not finished when the process died, removes
staging leftovers and assignments that never committed, and returns what the disk says:
live jobs (each lease counted from its last keepalive on disk), finished jobs, done and
quarantined files, how many times each requeued file has failed, and the files of
released jobs (which failed nothing). Seed-era folders without a manifest are taken over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reactor.core.names import (
    INPUT_FOLDERS,
    INPUT_STAGING_NAME,
    RESULT_FOLDERS,
    STAGING_PREFIX,
    Folder,
    JobFolder,
    is_pod5_name,
    parse_job_folder,
)
from reactor.core.retry import FailureHistory, halves
from reactor.core.state import Job, JobState
from reactor.disk.journal import Journal


@dataclass(slots=True)
class Recovered:
    """What the disk says, after every half-done transition was finished."""

    live: list[Job] = field(default_factory=list)
    finished: list[Job] = field(default_factory=list)  # done, failed, released, unknown, expired
    done: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    history: dict[str, FailureHistory] = field(default_factory=dict)  # of failed files
    handed_back: set[str] = field(default_factory=set)  # files of released jobs: to the front
    repairs: list[tuple[str, str]] = field(default_factory=list)  # (what, folder)


def recover(journal: Journal, now: float, lease_s: float) -> Recovered:
    """Rebuild the run from disk, finishing every transition a crash cut in half.

    A live job's lease runs from its last keepalive recorded on disk (`_keep_lease`), so
    a restart does not extend it; a seed-era job, which has no such record, gets a fresh
    lease from `now`.
    """
    return _Recovery(journal, now, lease_s).run()


class _Recovery:
    def __init__(self, journal: Journal, now: float, lease_s: float) -> None:
        self.journal = journal
        self.input_dir = journal.input_dir
        self.output_dir = journal.output_dir
        self.now = now
        self.lease_s = lease_s
        self.result = Recovered()
        # name -> failed tries (attempt, batch size, engine); name -> attempts released
        self.failures: dict[str, list[tuple[int, int, str]]] = {}
        self.released: dict[str, int] = {}
        # FAILED_/UNKNOWN_ folders: found by the one scan of INPUTDIR, plus those that
        # finishing a transition creates, so INPUTDIR (10^6 entries) is walked once.
        self.quarantine_folders: set[str] = set()

    def run(self) -> Recovered:
        result = self.result
        inputs = self._scan_input()
        for folder in _job_folder_entries(self.output_dir, self._remove_staging_entry):
            if folder.kind not in INPUT_FOLDERS:
                self._recover_job(folder, inputs.pop(folder.job_id, {}))
        for kinds in inputs.values():
            self._recover_input_only(kinds)
        for name, tries in self.failures.items():
            history = _history(tries, self.released.get(name, 0))
            if history is not None:
                result.history[name] = history
        # Quarantine is what FAILED_/UNKNOWN_ hold (seed-era folders have no manifest);
        # a folder that recovery released is gone, and holds nothing.
        for name in sorted(self.quarantine_folders):
            result.quarantined.update(_pod5_links(self.input_dir / name))
        return result

    def _scan_input(self) -> dict[str, dict[Folder, JobFolder]]:
        """The one walk of INPUTDIR: staging leftovers removed, job folders by job id."""
        found: dict[str, dict[Folder, JobFolder]] = {}
        for folder in _job_folder_entries(self.input_dir, self._remove_staging_entry):
            if folder.kind in INPUT_FOLDERS:
                found.setdefault(folder.job_id, {})[folder.kind] = folder
            if folder.kind in (Folder.FAILED, Folder.UNKNOWN):
                self.quarantine_folders.add(folder.name)
        return found

    def _remove_staging_entry(self, entry: os.DirEntry[str]) -> None:
        if entry.name == INPUT_STAGING_NAME and entry.is_dir(follow_symlinks=False):
            # The journal's own staging folder stays; what a crash left in it goes.
            for leftover in os.listdir(entry.path):
                shutil.rmtree(os.path.join(entry.path, leftover), ignore_errors=True)  # noqa: PTH118
                self.result.repairs.append(("staging_removed", f"{entry.name}/{leftover}"))
            return
        shutil.rmtree(entry.path, ignore_errors=True)
        self.result.repairs.append(("staging_removed", entry.name))

    def _placed(self, job: Job, kind: Folder) -> None:
        """Finishing a transition made (or kept) the quarantine folder `kind` of `job`."""
        self.quarantine_folders.add(self.journal.input_folder(job, kind).name)

    def _new_job(self, job_id: str, engine_id: str, files: dict[str, int]) -> Job:
        return Job(
            job_id=job_id,
            engine_id=engine_id,
            files=files,
            state=JobState.ASSIGNED,
            assigned_at=self.now,
            last_seen=self.now,
            lease_s=self.lease_s,
        )

    def _recover_job(self, folder: JobFolder, inputs: dict[Folder, JobFolder]) -> None:
        """One output folder: what its manifest says, and where the folder is, tell
        which steps of which transition are left to do."""
        if folder.kind is Folder.ORPHANOUTPUT:
            return
        if folder.kind is Folder.REQUEUED:
            self._recover_requeue(folder)
            return
        journal, result = self.journal, self.result
        path = self.output_dir / folder.name
        manifest = journal.read_manifest(path)
        if manifest is None:
            self._recover_without_manifest(folder, inputs)
            return
        job = self._new_job(manifest.job_id, manifest.engine_id, dict(manifest.files))
        job.engine_state = manifest.engine_state
        state = manifest.state
        in_tmp = folder.kind is Folder.TMPOUTPUT
        if state == JobState.ASSIGNED and in_tmp:
            if Folder.ASSIGNED in inputs:
                self._keep_lease(job, inputs[Folder.ASSIGNED])
                result.live.append(job)
            else:
                self._orphan(path, folder)
            return
        if state == JobState.DONE:
            if in_tmp:
                merged = journal.finish_merge(job, path)
                result.repairs.append(("merge_finished", folder.name))
                logs = journal.output_folder(job, Folder.LOGOUTPUT).name
                result.repairs += [("output_not_merged", f"{logs}/{name}") for name in merged.kept]
            else:
                journal.release(job)
            result.done.update(job.files)
        elif state == JobState.FAILED:
            if in_tmp:
                journal.finish_fail(job, path, manifest.quarantine)
                result.repairs.append(("fail_finished", folder.name))
                if manifest.quarantine:
                    self._placed(job, Folder.FAILED)
            else:
                journal.release(job)
            for name, attempt in job.files.items():
                tries = self.failures.setdefault(name, [])
                tries.append((attempt, len(job.files), job.engine_id))
        elif state == JobState.RELEASED:
            # Handed back unfinished: no failure to remember, the files are ready again.
            if in_tmp:
                journal.finish_hand_back(job, path)
                result.repairs.append(("release_finished", folder.name))
            else:
                journal.release(job)
            result.handed_back.update(job.files)
        elif state == JobState.UNKNOWN:
            if in_tmp:
                journal.finish_set_aside(job, path)
                result.repairs.append(("set_aside_finished", folder.name))
                self._placed(job, Folder.UNKNOWN)
            elif Folder.ASSIGNED in inputs:
                journal.place_links(job, Folder.UNKNOWN, list(job.files))
                self._placed(job, Folder.UNKNOWN)
        elif state == JobState.EXPIRED:
            journal.release(job)
            job.superseded = not in_tmp
        else:
            self._orphan(path, folder)
            return
        job.state = JobState(state)
        result.finished.append(job)

    def _recover_requeue(self, folder: JobFolder) -> None:
        """A released quarantine: failures up to the recorded attempts no longer count,
        and the folder of links must be gone (replayed if a crash left it)."""
        manifest = self.journal.read_manifest(self.output_dir / folder.name)
        if manifest is None:
            return
        for name, attempt in manifest.files.items():
            self.released[name] = max(self.released.get(name, 0), attempt)
        for kind in (Folder.FAILED, Folder.UNKNOWN):
            links = self.input_dir / folder.renamed(kind).name
            if links.exists():
                shutil.rmtree(links)
                self.result.repairs.append(("requeue_finished", links.name))

    def _keep_lease(self, job: Job, folder: JobFolder) -> None:
        """A live job's lease runs from its last keepalive, which the service records as
        the mtime of its ASSIGNED_ folder: a restart does not extend it, so the work of a
        dead engine still expires when the service restarts more often than the lease."""
        try:
            last = (self.input_dir / folder.name).stat().st_mtime
        except OSError:
            return
        silent_s = max(0.0, time.time() - last)  # a clock set back must not renew leases
        job.last_seen = self.now - silent_s

    def _recover_without_manifest(self, folder: JobFolder, inputs: dict[Folder, JobFolder]) -> None:
        """Seed-era folders: a TMPOUTPUT with ASSIGNED_ is a live job; LOGOUTPUT is done."""
        if folder.kind is Folder.TMPOUTPUT and Folder.ASSIGNED in inputs:
            self._recover_input_only(inputs)
        elif folder.kind is Folder.LOGOUTPUT:
            assigned = self.input_dir / folder.renamed(Folder.ASSIGNED).name
            self.result.done.update(_pod5_links(assigned))

    def _recover_input_only(self, kinds: dict[Folder, JobFolder]) -> None:
        """An ASSIGNED_ folder whose output folder is missing or has no manifest: a live
        job (seed-era, or a person removed the output folder). Its manifest is rebuilt."""
        folder = kinds.get(Folder.ASSIGNED)
        if folder is None:
            return
        names = sorted(_pod5_links(self.input_dir / folder.name))
        job = self._new_job(folder.job_id, folder.engine_id, dict.fromkeys(names, 1))
        self.journal.rebuild_output_folder(job)
        self.result.live.append(job)
        self.result.repairs.append(("manifest_rebuilt", folder.name))

    def _orphan(self, path: Path, folder: JobFolder) -> None:
        """An output folder whose assignment never committed: nobody got its files."""
        written = any(
            any(os.scandir(path / kind)) for kind in RESULT_FOLDERS if (path / kind).is_dir()
        )
        if written:
            path.rename(self.output_dir / folder.renamed(Folder.ORPHANOUTPUT).name)
        else:
            shutil.rmtree(path, ignore_errors=True)
        self.result.repairs.append(("orphan_removed", folder.name))


def _job_folder_entries(
    parent: Path, on_staging: Callable[[os.DirEntry[str]], None]
) -> list[JobFolder]:
    """The job folders in `parent`, in one `scandir`; staging leftovers go to
    `on_staging`. Files (10^6 `.pod5` in INPUTDIR) cost one `is_dir`, which
    the directory entry answers without a `stat`."""
    folders = []
    for entry in os.scandir(parent):
        name = entry.name
        if name.startswith(STAGING_PREFIX):
            on_staging(entry)
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        folder = parse_job_folder(name)
        if folder is not None:
            folders.append(folder)
    return folders


def _pod5_links(folder: Path) -> set[str]:
    with contextlib.suppress(FileNotFoundError):
        return {name for name in os.listdir(folder) if is_pod5_name(name)}
    return set()


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
