"""The exactly-once proof, recounted by the tests themselves.

Every read id of every `.pod5` is read with ONT's `pod5` library directly, and every
record name of the outputs is read here with dnaio (FASTQ) and pysam (BAM), in either
layout: the seed's `pass/` and `fail/`, or MinKNOW's `fastq_pass/`, `bam_fail/`, … with
their barcode folders. So a test never checks the product's proof (`reactor demo`'s,
`reactor verify`'s) with the product's own code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dnaio
import pod5
import pysam

OUTPUT_KINDS = ("pass", "fail")
# MinKNOW's layout: folder -> the verdict its reads have (FASTQ before BAM: when both
# are written, the FASTQ ones are counted)
MINKNOW_FOLDERS = {
    "fastq_pass": "pass",
    "fastq_fail": "fail",
    "bam_pass": "pass",
    "bam_fail": "fail",
}


@dataclass(frozen=True)
class Recount:
    """Reads of the `.pod5` files against the FASTQ records of the output."""

    files: int
    reads: int
    in_pass: int
    in_fail: int
    missing: int  # reads of the files found in no FASTQ
    duplicated: int  # records beyond the first for the same read
    unexpected: int  # records of reads that are in none of the files

    @property
    def ok(self) -> bool:
        return self.reads > 0 and not (self.missing or self.duplicated or self.unexpected)


def pod5_read_ids(path: Path) -> list[str]:
    """Every read id of a `.pod5`, in file order, read with the `pod5` library."""
    with pod5.Reader(path) as reader:
        return [str(read.read_id) for read in reader.reads()]


def fastq_record_names(text: str) -> list[str]:
    """The record names of a FASTQ text (four lines a record): the header's first word
    without its '@'."""
    names = []
    for number, line in enumerate(text.splitlines()):
        if number % 4 == 0 and line.startswith("@"):
            names.append(line[1:].split(maxsplit=1)[0])
    return names


def output_read_names(output_dir: Path) -> dict[str, Counter[str]]:
    """Record names counted per verdict: {"pass": ..., "fail": ...}, from the seed's
    pass/ and fail/ (`*.fastq`) and from MinKNOW's layout."""
    found: dict[str, Counter[str]] = {kind: Counter() for kind in OUTPUT_KINDS}
    for kind in OUTPUT_KINDS:
        for path in sorted((output_dir / kind).glob("*.fastq")):
            found[kind].update(fastq_record_names(path.read_text()))
    fastq_written = any((output_dir / f).is_dir() for f in ("fastq_pass", "fastq_fail"))
    for folder, kind in MINKNOW_FOLDERS.items():
        if folder.startswith("bam") and fastq_written:
            continue
        for path in sorted((output_dir / folder).rglob("*")):
            if path.name.endswith(".fastq.gz"):
                with dnaio.open(path) as reader:
                    found[kind].update(record.name.split()[0] for record in reader)
            elif path.name.endswith(".bam"):
                with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
                    found[kind].update(str(r.query_name) for r in bam.fetch(until_eof=True))
    return found


def recount(pod5_files: Iterable[Path], output_dir: Path) -> Recount:
    """Each read of `pod5_files` against the records in `output_dir`'s pass/ and fail/."""
    files = sorted(pod5_files)
    expected: Counter[str] = Counter()
    for path in files:
        expected.update(pod5_read_ids(path))
    found = output_read_names(output_dir)
    seen = found["pass"] + found["fail"]
    return Recount(
        files=len(files),
        reads=sum(expected.values()),
        in_pass=sum(found["pass"].values()),
        in_fail=sum(found["fail"].values()),
        missing=sum((expected - seen).values()),
        duplicated=sum(count - 1 for count in seen.values() if count > 1),
        unexpected=sum(count for name, count in seen.items() if name not in expected),
    )


def recount_run(input_dir: Path, output_dir: Path) -> Recount:
    """`recount` for every `.pod5` directly in `input_dir`."""
    return recount(input_dir.glob("*.pod5"), output_dir)


@dataclass(frozen=True)
class CalledRecount:
    """Reads of the `.pod5` files against the records of a dorado-like basecaller, which
    drops some reads and splits others into subreads carrying their parent (`pi`)."""

    files: int
    reads: int
    dropped: int  # reads the stand-in drops (its own rule), expected nowhere
    records: int
    subreads: int
    missing: int  # kept reads with no record
    duplicated: int  # records beyond the first with the same id
    unexpected: int  # records of no kept read (or a dropped one)

    @property
    def ok(self) -> bool:
        return self.reads > 0 and not (self.missing or self.duplicated or self.unexpected)


def output_records(output_dir: Path) -> list[tuple[str, str | None]]:
    """(record id, its `pi` parent or None) of every record in MinKNOW's layout (FASTQ
    folders when there are any, else BAM ones) and in pass/ + fail/ FASTQs."""
    found: list[tuple[str, str | None]] = []
    fastq_written = any((output_dir / f).is_dir() for f in ("fastq_pass", "fastq_fail"))
    paths = [p for kind in OUTPUT_KINDS for p in sorted((output_dir / kind).glob("*.fastq"))]
    for folder in MINKNOW_FOLDERS:
        if not (folder.startswith("bam") and fastq_written):
            paths += sorted((output_dir / folder).rglob("*.*"))
    for path in paths:
        if path.name.endswith((".fastq", ".fastq.gz")):
            with dnaio.open(path) as reader:
                for record in reader:
                    name, *tags = record.name.split("\t")
                    parent = next((t[5:] for t in tags if t.startswith("pi:Z:")), None)
                    found.append((name, parent))
        elif path.name.endswith(".bam"):
            with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
                for segment in bam.fetch(until_eof=True):
                    parent = segment.get_tag("pi") if segment.has_tag("pi") else None
                    found.append((str(segment.query_name), str(parent) if parent else None))
    return found


def recount_called(pod5_files: Iterable[Path], output_dir: Path) -> CalledRecount:
    """Each read of `pod5_files` once in the outputs: as one record of its own id, or as
    the parent of two subreads (the stand-in splits in two); unless the stand-in drops it."""
    from reactor.sim.dorado_reads import is_dropped  # the stand-in's own rule for its drops

    files = sorted(pod5_files)
    ids = [read_id for path in files for read_id in pod5_read_ids(path)]
    dropped = {read_id for read_id in ids if is_dropped(read_id)}
    kept = set(ids) - dropped
    records = output_records(output_dir)
    by_id = Counter(name for name, _ in records)
    whole = Counter(name for name, parent in records if parent is None)
    children = Counter(parent for _, parent in records if parent is not None)
    missing = sum(1 for read_id in kept if whole[read_id] + (children[read_id] == 2) != 1)
    unexpected = sum(n for name, n in whole.items() if name not in kept)
    unexpected += sum(n for parent, n in children.items() if parent not in kept or n != 2)
    return CalledRecount(
        files=len(files),
        reads=len(ids),
        dropped=len(dropped),
        records=len(records),
        subreads=sum(children.values()),
        missing=missing,
        duplicated=sum(n - 1 for n in by_id.values() if n > 1),
        unexpected=unexpected,
    )
