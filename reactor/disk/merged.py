"""One file per barcode: a run's (or a sample's) outputs in MinKNOW's layout, merged.

Users' standing complaint is merging by hand: dorado's and MinKNOW's outputs come in
batches, and one sample's reads are spread over batches, restarts, washes, flow cells
and runs. This writes, for each barcode alias (or the whole run when it is not
barcoded) and each of pass and fail, one file holding every read of it:

    merged/[{alias}.]{pass|fail}.fastq.gz      gzip members concatenated (RFC 1952
                                                allows a file of several members; every
                                                gzip reader reads them as one stream)
    merged/[{alias}.]{pass|fail}.bam           BAMs concatenated with pysam's `cat`
                                                (samtools cat: BGZF blocks copied, the
                                                first file's header kept)

from the files of MinKNOW's layout (`fastq_pass/[alias/]…`, `bam_fail/…`). Each merged
file is written under a hidden name, fsynced and renamed into place, so a reader never
sees half of one and a merge cut short is simply done again. Synchronous: the caller
decides on which thread it runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reactor.disk.durable import fsync_folder
from reactor.disk.marker import marker_path
from reactor.disk.state_dir import JOBS, STATE_NAME

MERGED = "merged"
_FORMATS = {"fastq": ".fastq.gz", "bam": ".bam"}


@dataclass(slots=True)
class MergedFiles:
    """What a merge wrote: each merged file and how many files it was made of."""

    written: dict[str, int] = field(default_factory=dict)  # name -> files merged
    bytes: int = 0


def groups(output_dirs: Iterable[Path]) -> dict[str, list[Path]]:
    """Merged name -> the files of MinKNOW's layout it is made of, in the order of the
    output folders given, then by name (batch numbers sort as text, which is no
    order a reader relies on)."""
    found: dict[str, list[Path]] = {}
    for output_dir in output_dirs:
        for fmt, suffix in _FORMATS.items():
            for verdict in ("pass", "fail"):
                top = output_dir / f"{fmt}_{verdict}"
                if not top.is_dir():
                    continue
                for path in sorted(top.rglob(f"*{suffix}")):
                    if not path.is_file() or path.is_symlink() or path.name.startswith("."):
                        continue
                    relative = path.parent.relative_to(top)
                    alias = "" if relative == Path() else relative.parts[0]
                    name = f"{alias + '.' if alias else ''}{verdict}{suffix}"
                    found.setdefault(name, []).append(path)
    return found


def merge_into(target_dir: Path, output_dirs: Iterable[Path]) -> MergedFiles:
    """Write one merged file per barcode and verdict into `target_dir` (made if
    missing) from the outputs of `output_dirs`; a merged file of a previous merge is
    replaced whole."""
    result = MergedFiles()
    chosen = groups(output_dirs)
    if not chosen:
        return result
    target_dir.mkdir(parents=True, exist_ok=True)
    for name, sources in sorted(chosen.items()):
        result.bytes += _merge_one(target_dir, name, sources)
        result.written[name] = len(sources)
    fsync_folder(target_dir)
    fsync_folder(target_dir.parent)
    return result


def merge_run(output_dir: Path) -> MergedFiles:
    """A run's merged files, in `OUTPUTDIR/merged/`."""
    return merge_into(output_dir / MERGED, [output_dir])


def _merge_one(target_dir: Path, name: str, sources: list[Path]) -> int:
    staging = target_dir / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if name.endswith(".bam"):
            import pysam  # BAM is pysam's; imported only when there is BAM to merge

            pysam.cat("-o", str(staging), *map(str, sources), catch_stdout=False)
        else:
            with staging.open("wb") as out:
                for source in sources:
                    with source.open("rb") as data:
                        shutil.copyfileobj(data, out, 1 << 20)
        fd = os.open(staging, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        staging.replace(target_dir / name)
    except BaseException:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise
    return size


# ------------------------------------------------------------------ a sample's runs
#
# `reactor merge SAMPLE` and host mode's `merge_samples`: a sample is sequenced on several
# flow cells, after washes, over days. Its runs are found by their place under the root,
# `{group}/{sample}/{run}/reactor/` (a pooled run: `{group}/{sample}/reactor/{fc}_{prid8}/`;
# with an output root, the same paths under it), and merged per group into
# `{group}/{sample}/reactor_merged/`. Only complete runs (their run-complete marker
# written) by default, so a run still going on does not end up half in a file that looks
# finished.

MERGED_SAMPLE = "reactor_merged"
_DEPTH = 3  # below a sample folder: {run}/reactor/, or reactor/{fc}_{prid8}/


class MergeError(Exception):
    """Nothing can be merged; the message says why and what to give."""


@dataclass
class SampleRuns:
    """One sample folder's runs (in one group)."""

    group: str
    sample_folder: Path  # where its merged folder goes
    complete: list[Path] = field(default_factory=list)  # run output folders
    running: list[Path] = field(default_factory=list)


def _run_outputs(folder: Path, depth: int = _DEPTH) -> Iterator[Path]:
    """Output folders of runs below `folder` (those with reactor's records)."""
    if (folder / STATE_NAME / JOBS).is_dir():
        yield folder
        return
    if depth == 0:
        return
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or child.name == MERGED_SAMPLE:
            continue
        yield from _run_outputs(child, depth - 1)


def sample_runs(bases: list[Path], sample: str, group: str | None = None) -> list[SampleRuns]:
    """Each group's folder of `sample` under the roots (or output root), with its runs."""
    found = []
    for base in bases:
        for group_folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if group is not None and group_folder.name != group:
                continue
            folder = group_folder / sample
            if not folder.is_dir():
                continue
            runs = SampleRuns(group_folder.name, folder)
            for output in _run_outputs(folder):
                done = marker_path(output).is_file()
                (runs.complete if done else runs.running).append(output)
            if runs.complete or runs.running:
                found.append(runs)
    if not found:
        where = ", ".join(map(str, bases))
        msg = (
            f"no run of sample {sample!r} under {where}"
            + (f" in group {group!r}" if group else "")
            + ": give the data root (--root) or the output root (--output-root) of host mode"
        )
        raise MergeError(msg)
    return found
