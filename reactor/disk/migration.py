"""Taking over a run from before reactor kept its records apart: once, at its first start.

Earlier versions of reactor kept each job's record (`reactor-job.json`, format 1) inside
the job's own output folder, where engines write; the seed kept none at all. When the
state folder `OUTPUTDIR/.reactor/` does not exist yet and the run folders hold job
folders, `migrate` reads what is there one time (trusting it, since there is nothing
else to go by: logged as `state_migrated`) and writes reactor's own records from it.
From then on only those records are believed, and nothing in the job folders is read
again.

The records are written into a staging folder first and renamed to `.reactor` at the
end, so a crash during the migration leaves no half-made state folder: the staging
leftover is removed and the next start migrates again.

What is taken over:

- format-1 manifests, whatever folder they are in (`TMPOUTPUT_` with `state=done` gets
  the outputs found there recorded, so the merge is finished; `EXPIREDOUTPUT_` means
  superseded); `REQUEUED_` folders become released-quarantine records;
- seed-era folders without a manifest: `ASSIGNED_` (with or without a `TMPOUTPUT_`) is a
  live job of the files it links to, at their first attempt (the output folder is made
  if missing); a seed `LOGOUTPUT_` beside an `ASSIGNED_` means those files are done; a
  seed `FAILED_` quarantines the files it links to.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from reactor.core.names import (
    MANIFEST_NAME,
    RESULT_FOLDERS,
    STAGING_PREFIX,
    Folder,
    JobFolder,
    is_pod5_name,
    parse_job_folder,
)
from reactor.core.state import JobState
from reactor.disk.journal import RECORD_FORMAT, JobRecord, Journal, record_name
from reactor.disk.state_dir import JOBS, RECORD_SUFFIX, REQUEUED, STATE_NAME, StateDir

MIGRATING = f"{STAGING_PREFIX}state"


def migrate(journal: Journal) -> list[tuple[str, str]]:
    """Make the state folder from a run's old job folders, if it has none yet. Returns
    the repairs to log (one `state_migrated` per record written)."""
    output_dir = journal.output_dir
    if os.path.lexists(output_dir / STATE_NAME):
        return []
    folders = _job_folders(journal.input_dir) + _job_folders(output_dir)
    if not folders:
        return []
    staging = StateDir(output_dir, name=MIGRATING)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(output_dir / MIGRATING)
    staging.open()
    try:
        repairs = _Migration(journal, staging, folders).run()
    finally:
        staging.close()
    (output_dir / MIGRATING).rename(output_dir / STATE_NAME)
    return repairs


def _job_folders(parent: Path) -> list[JobFolder]:
    with os.scandir(parent) as entries:
        return [
            folder
            for entry in entries
            if entry.is_dir(follow_symlinks=False)
            and (folder := parse_job_folder(entry.name)) is not None
        ]


class _Migration:
    def __init__(self, journal: Journal, state: StateDir, folders: list[JobFolder]) -> None:
        self.journal = journal
        self.state = state
        self.by_job: dict[str, dict[Folder, JobFolder]] = {}
        for folder in folders:
            self.by_job.setdefault(folder.job_id, {})[folder.kind] = folder
        self.repairs: list[tuple[str, str]] = []

    def run(self) -> list[tuple[str, str]]:
        for kinds in self.by_job.values():
            self._job(kinds)
        return self.repairs

    def _job(self, kinds: dict[Folder, JobFolder]) -> None:
        out = self.journal.output_dir
        for kind, folder in kinds.items():
            if kind is Folder.REQUEUED:
                manifest = _manifest(out / folder.name)
                if manifest is not None:
                    files = {str(k): int(v) for k, v in manifest.get("files", {}).items()}
                    name = f"{folder.job_id}_{folder.engine_id}{RECORD_SUFFIX}"
                    self.state.write(REQUEUED, name, {"format": RECORD_FORMAT, "files": files})
                    self.repairs.append(("state_migrated", folder.name))
        for kind, folder in kinds.items():
            if kind in (Folder.REQUEUED, Folder.ORPHANOUTPUT, Folder.ASSIGNED, Folder.FAILED):
                continue
            if kind is Folder.UNKNOWN:
                continue
            manifest = _manifest(out / folder.name)
            if manifest is not None:
                self._from_manifest(folder, manifest)
                return
        self._seed_era(kinds)

    def _from_manifest(self, folder: JobFolder, manifest: dict[str, Any]) -> None:
        try:
            record = JobRecord(
                job_id=str(manifest["job_id"]),
                engine_id=str(manifest["engine_id"]),
                files={str(k): int(v) for k, v in manifest["files"].items()},
                state=str(manifest["state"]),
                assigned_at=float(manifest.get("assigned_at") or 0.0),
                decided_at=manifest.get("decided_at"),
                engine_state=str(manifest.get("engine_state", "")),
                requeue=[str(n) for n in manifest.get("requeue", [])],
                quarantine=[str(n) for n in manifest.get("quarantine", [])],
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            self.repairs.append(("manifest_unreadable", folder.name))
            return
        if record.state == JobState.EXPIRED:
            record.superseded = folder.kind is Folder.EXPIREDOUTPUT
        if record.state == JobState.DONE and folder.kind is Folder.TMPOUTPUT:
            record.outputs = _entries(self.journal.output_dir / folder.name)
        self._write(record, folder)

    def _seed_era(self, kinds: dict[Folder, JobFolder]) -> None:
        assigned = kinds.get(Folder.ASSIGNED)
        if assigned is not None:
            names = sorted(_pod5_links(self.journal.input_dir / assigned.name))
            state = JobState.DONE if Folder.LOGOUTPUT in kinds else JobState.ASSIGNED
            record = JobRecord(
                job_id=assigned.job_id,
                engine_id=assigned.engine_id,
                files=dict.fromkeys(names, 1),
                state=state,
                assigned_at=0.0,
            )
            if state == JobState.ASSIGNED:
                tmp = self.journal.output_dir / assigned.renamed(Folder.TMPOUTPUT).name
                for kind in RESULT_FOLDERS:
                    (tmp / kind).mkdir(parents=True, exist_ok=True)
            self._write(record, assigned)
            return
        failed = kinds.get(Folder.FAILED)
        if failed is not None:
            names = sorted(_pod5_links(self.journal.input_dir / failed.name))
            record = JobRecord(
                job_id=failed.job_id,
                engine_id=failed.engine_id,
                files=dict.fromkeys(names, 1),
                state=JobState.FAILED,
                assigned_at=0.0,
                quarantine=names,
            )
            self._write(record, failed)

    def _write(self, record: JobRecord, folder: JobFolder) -> None:
        self.state.write(JOBS, record_name(record.job_id), record.to_json())
        self.repairs.append(("state_migrated", folder.name))


def _manifest(folder: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((folder / MANIFEST_NAME).read_text())
        if isinstance(data, dict):
            return data
    return None


def _entries(folder: Path) -> list[tuple[str, str]]:
    found = []
    for kind in RESULT_FOLDERS:
        with contextlib.suppress(OSError):
            found += [(kind, name) for name in sorted(os.listdir(folder / kind))]
    return found


def _pod5_links(folder: Path) -> set[str]:
    with contextlib.suppress(OSError):
        return {name for name in os.listdir(folder) if is_pod5_name(name)}
    return set()
