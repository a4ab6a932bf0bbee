"""`reactor verify`: a run's read-level exactly-once proof, checked again from the disk.

The service keeps the proof live, job by job (`reactor.core.readstats.JobReads`, in
`/status` as `reads.accounting`); this checks it again on demand, from nothing but the
files: the `.pod5` files the run's records say are done, read with the `pod5` library,
against every record of the run's outputs, read with dnaio and pysam. A read is in the
outputs once when exactly one record has its id, or when records split from it carry it
as their `pi` parent (dorado splits reads; each subread has an id of its own). A done
file's read with no record was dropped by the basecaller (dorado drops very short
reads): reported apart, not an error. A record whose id was written twice, or whose read
is in no done file, is.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reactor.core.minknow import is_pod5_folder
from reactor.core.model import JobState
from reactor.core.names import is_pod5_name
from reactor.core.readstats import n50
from reactor.disk.state_dir import JOBS, STATE_NAME

OUTPUT_FOLDER = "reactor"  # a run's outputs in host mode: RUN/reactor/
_UP_TO = 3  # levels above an output folder searched for the run's POD5 folders


class VerifyError(Exception):
    """The run cannot be checked; the message says why and what to give."""


@dataclass
class Verification:
    """What the files say about one run's reads."""

    files_done: int = 0  # .pod5 files the records say are done
    files_found: int = 0  # of them, found under the input folders
    pod5_reads: int = 0  # reads in the done files found
    records: int = 0  # records in the outputs (each subread one)
    subreads: int = 0  # records split from a parent (`pi`)
    counted: int = 0  # reads of the done files found in the outputs
    dropped: int = 0  # reads of the done files with no record
    duplicates: int = 0  # records whose id was written before
    unknown: int = 0  # records whose read is in no done file
    reads: int = 0
    bases: int = 0
    pass_reads: int = 0
    pass_bases: int = 0
    n50: int = 0
    files_missing: list[str] = field(default_factory=list)  # done, not found: not checked

    @property
    def exactly_once(self) -> bool:
        """Every record once, each of a done file's read; every done file checked."""
        return (
            self.files_done > 0
            and not self.files_missing
            and self.duplicates == 0
            and self.unknown == 0
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "exactly_once": self.exactly_once}


def done_files(output_dir: Path) -> set[str]:
    """The `.pod5` names the run's records say are done (its state folder's jobs)."""
    jobs = output_dir / STATE_NAME / JOBS
    if not jobs.is_dir():
        msg = (
            f"{output_dir} has no records of reactor ({STATE_NAME}/{JOBS}/): give the output "
            "folder of a run reactor served (RUN/reactor/ in host mode)"
        )
        raise VerifyError(msg)
    names: set[str] = set()
    for path in jobs.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("state") == str(JobState.DONE):
            names.update(str(name) for name in record.get("files", {}))
    return names


def default_inputs(output_dir: Path) -> list[Path]:
    """Where a host-mode run's POD5 folders are: the nearest folder above its output
    folder that holds MinKNOW's POD5 folders (RUN/ for RUN/reactor/; a pooled run's
    sample folder for {sample}/reactor/{fc}_{prid8}/)."""
    folder = output_dir.resolve()
    for _ in range(_UP_TO):
        folder = folder.parent
        if any(p.is_dir() and is_pod5_folder(p.name) for p in _children(folder)):
            return [folder]
    msg = (
        f"no POD5 folders (pod5/, pod5_pass/, …) above {output_dir}: give the folder of "
        "the run's .pod5 files with --input-dir"
    )
    raise VerifyError(msg)


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def find_pod5(inputs: Iterable[Path], names: set[str], skip: Path) -> dict[str, Path]:
    """Each of `names` found under `inputs` (POD5 and barcode folders, any depth; the
    output folder `skip` and reactor's job folders left out), by name."""
    found: dict[str, Path] = {}
    skipped = skip.resolve()
    for top in inputs:
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            dirnames[:] = [
                d
                for d in dirnames
                if (here / d).resolve() != skipped and not d.startswith((".", "ASSIGNED_"))
            ]
            for name in filenames:
                if name in names and is_pod5_name(name) and name not in found:
                    found[name] = here / name
    return found


def verify(output_dir: Path, inputs: list[Path] | None = None) -> Verification:
    """Check a run's outputs against the reads of its done `.pod5` files."""
    from reactor.disk.read_files import file_reads, output_files, pod5_read_ids

    names = done_files(output_dir)
    folders = inputs if inputs else default_inputs(output_dir)
    paths = find_pod5(folders, names, output_dir)
    result = Verification(files_done=len(names), files_found=len(paths))
    result.files_missing = sorted(names - set(paths))
    expected = pod5_read_ids(tuple(str(paths[name]) for name in sorted(paths)))
    result.pod5_reads = len(expected)
    lengths: Counter[int] = Counter()  # of every record
    seen: Counter[str] = Counter()
    counted: set[str] = set()
    for verdict, fmt, path in output_files(output_dir):
        for tags, length in file_reads(path, fmt):
            result.records += 1
            seen[tags.read_id] += 1
            lengths[length] += 1
            if verdict == "pass":  # the folder says it: the split was the service's
                result.pass_reads += 1
                result.pass_bases += length
            if tags.parent is not None:
                result.subreads += 1
            if tags.counted_as in expected:
                counted.add(tags.counted_as)
            else:
                result.unknown += 1
    result.duplicates = sum(count - 1 for count in seen.values() if count > 1)
    result.counted = len(counted)
    result.dropped = len(expected) - len(counted)
    result.reads = result.records
    result.bases = sum(length * count for length, count in lengths.items())
    result.n50 = n50(lengths)
    return result


def report_lines(run: str, result: Verification) -> Iterator[str]:
    """The verification for a person."""
    yield f"run        {run}"
    yield (
        f"files      {result.files_done} done, {result.files_found} found"
        + (f", {len(result.files_missing)} NOT FOUND" if result.files_missing else "")
    )
    yield f".pod5      {result.pod5_reads} reads"
    yield (
        f"outputs    {result.records} records ({result.subreads} split from a parent), "
        f"{result.reads - result.pass_reads} in fail"
    )
    yield f"reads      {result.counted} found once, {result.dropped} dropped by the basecaller"
    yield f"wrong      {result.duplicates} written twice, {result.unknown} from no done file"
    yield f"bases      {result.bases} (N50 {result.n50})"
    if result.files_missing:
        shown = ", ".join(result.files_missing[:5])
        yield f"missing    {shown}{' …' if len(result.files_missing) > 5 else ''}"
    verdict = "every read once" if result.exactly_once else "NOT exactly once"
    yield f"verdict    {verdict}"
