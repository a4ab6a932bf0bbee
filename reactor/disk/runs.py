"""The runs under a watch root, found the way MinKNOW lays them out (`reactor.core.minknow`).

`find_runs(root)` walks `{root}/{group}/{sample}/` and reads, for each run folder found
there, only its top level: the final summary and the POD5 folders are named there, so a
finished run costs one listing and no stat, however many files it holds (2,000 finished
runs under a root are a few thousand listings). A sample folder that holds POD5 folders
itself is pooled: its runs are told apart by the names of their files, so those folders
are listed too.

Hidden entries, `queued_reads/`, `tmp/` and anything MinKNOW would not have named are
passed over; a folder that cannot be read is passed over with the reason (`Unreadable`),
never an error for the whole root.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from reactor.core.minknow import (
    MINKNOW_OUTPUTS,
    POD5_FOLDERS,
    RunKey,
    basecalling_enabled,
    final_summary_key,
    is_barcode_folder,
    parse_pod5_name,
    parse_run_folder,
    summary_fields,
)

SUMMARY_MAX_CHARS = 1 << 16  # a final summary is a few dozen lines


@dataclass(frozen=True)
class FoundRun:
    """A run found under a watch root."""

    key: RunKey
    root: Path
    folder: Path  # the run folder; for a pooled run, the sample folder it shares
    pooled: bool
    # from the run folder's name (local time); a pooled run's: when its final summary was
    # written, or None while it has none
    started: float | None
    complete: bool  # its final summary is in its folder
    pod5_folders: tuple[str, ...]  # which of POD5_FOLDERS it has
    outputs: tuple[str, ...] = ()  # which of MinKNOW's own outputs (MINKNOW_OUTPUTS) it has
    basecalled: bool | None = None  # its final summary's basecalling_enabled, if it says

    @property
    def relative(self) -> PurePath:
        """The run folder below its root: `{group}/{sample}/{run}` (pooled: `{group}/{sample}`)."""
        return PurePath(self.folder.relative_to(self.root))

    def active(self) -> float:
        """The latest change to its folder or its POD5 folders (mtimes, seconds since the
        epoch; 0 if none can be read). Costs a stat each, so only asked when needed."""
        latest = 0.0
        for path in (self.folder, *(self.folder / name for name in self.pod5_folders)):
            try:
                latest = max(latest, path.stat().st_mtime)
            except OSError:
                continue
        return latest


@dataclass
class Survey:
    """What a walk of one root found: the runs, and the folders it could not read."""

    runs: list[FoundRun] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def started_at(started: str) -> float:
    """`YYYYMMDD_HHMM` (the host's local time, as MinKNOW names run folders) in seconds
    since the epoch."""
    return time.mktime(time.strptime(started, "%Y%m%d_%H%M"))


def subfolders(path: Path, survey: Survey | None = None) -> list[Path]:
    """The visible subfolders of `path`, by name (the entry's type: no stat per entry);
    none when it cannot be read (said in `survey`, if given)."""
    try:
        with os.scandir(path) as entries:
            found = [
                Path(entry.path)
                for entry in entries
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
            ]
    except OSError as exc:
        if survey is not None:
            survey.unreadable.append((path, exc.strerror or str(exc)))
        return []
    return sorted(found, key=lambda folder: folder.name)


def find_runs(root: Path) -> Survey:
    """Every run under `root` at MinKNOW's depth, in the order of their folders' paths."""
    survey = Survey()
    # RUN_DEPTH: {group}/{sample}/{run}, the two loops here and the run folder's read
    for group in subfolders(root, survey):
        for sample in subfolders(group, survey):
            survey.runs.extend(read_sample(root, sample, survey))
    return survey


def read_sample(root: Path, sample: Path, survey: Survey | None = None) -> list[FoundRun]:
    """The runs of one sample folder: its run folders, and its pooled runs if any."""
    survey = Survey() if survey is None else survey
    runs: list[FoundRun] = []
    pod5_here: list[str] = []
    for folder in subfolders(sample, survey):
        if folder.name in POD5_FOLDERS:
            pod5_here.append(folder.name)
            continue
        run = read_run_folder(root, folder, survey)
        if run is not None:
            runs.append(run)
    if pod5_here:
        runs.extend(_pooled(root, sample, tuple(pod5_here), survey))
    return runs


def read_run_folder(root: Path, folder: Path, survey: Survey | None = None) -> FoundRun | None:
    """A run folder's run, from its name and its top level; None if MinKNOW would not
    have named it so."""
    parsed = parse_run_folder(folder.name)
    if parsed is None:
        return None
    survey = Survey() if survey is None else survey
    pod5_folders: list[str] = []
    outputs: list[str] = []
    summary: Path | None = None
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name in POD5_FOLDERS and entry.is_dir(follow_symlinks=False):
                    pod5_folders.append(name)
                elif name in MINKNOW_OUTPUTS and entry.is_dir(follow_symlinks=False):
                    outputs.append(name)
                elif final_summary_key(name) == parsed.key:
                    summary = Path(entry.path)
    except OSError as exc:
        survey.unreadable.append((folder, exc.strerror or str(exc)))
        return None
    try:
        started: float | None = started_at(parsed.started)
    except (ValueError, OverflowError):
        started = None  # a date that does not exist: no start time, judged by activity
    return FoundRun(
        key=parsed.key,
        root=root,
        folder=folder,
        pooled=False,
        started=started,
        complete=summary is not None,
        pod5_folders=tuple(sorted(pod5_folders)),
        outputs=tuple(sorted(outputs)),
        basecalled=None if summary is None else _basecalled(summary),
    )


def _basecalled(summary: Path) -> bool | None:
    """What a final summary says of live basecalling (a small file, read once)."""
    try:
        text = summary.read_text(errors="replace")[:SUMMARY_MAX_CHARS]
    except OSError:
        return None
    return basecalling_enabled(summary_fields(text))


def _pooled(
    root: Path, sample: Path, pod5_folders: tuple[str, ...], survey: Survey
) -> list[FoundRun]:
    """The runs whose files share a pooled sample folder's POD5 folders."""
    keys: set[RunKey] = set()
    for kind in pod5_folders:
        for name in _names(sample / kind, survey):
            parsed = parse_pod5_name(name)
            if parsed is not None:
                keys.add(parsed.key)
    # A pooled run has no folder name to date it; once complete, its final summary does
    # (the time it was written: a run that ended lately is not an old one).
    ended: dict[RunKey, float] = {}
    basecalled: dict[RunKey, bool | None] = {}
    outputs: list[str] = []
    try:
        for name in os.listdir(sample):
            key = final_summary_key(name)
            if key is not None:
                try:
                    ended[key] = max(ended.get(key, 0.0), (sample / name).stat().st_mtime)
                except OSError:
                    ended[key] = ended.get(key, 0.0)
                basecalled[key] = _basecalled(sample / name)
            elif name in MINKNOW_OUTPUTS and (sample / name).is_dir():
                outputs.append(name)
    except OSError as exc:
        survey.unreadable.append((sample, exc.strerror or str(exc)))
    return [
        FoundRun(
            key=key,
            root=root,
            folder=sample,
            pooled=True,
            started=ended.get(key),
            complete=key in ended,
            pod5_folders=pod5_folders,
            outputs=tuple(sorted(outputs)),
            basecalled=basecalled.get(key),
        )
        for key in sorted(keys)
    ]


def _names(folder: Path, survey: Survey, *, barcodes: bool = True) -> Iterator[str]:
    """The file names in a POD5 folder and in its barcode folders (one level down)."""
    try:
        with os.scandir(folder) as entries:
            found = list(entries)
    except OSError as exc:
        survey.unreadable.append((folder, exc.strerror or str(exc)))
        return
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            if barcodes and is_barcode_folder(entry.name):
                yield from _names(Path(entry.path), survey, barcodes=False)
        else:
            yield entry.name
