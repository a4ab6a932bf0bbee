"""The exactly-once proof, recounted by the tests themselves.

Every read id of every `.pod5` is read with ONT's `pod5` library directly, and every
FASTQ record name in `pass/` and `fail/` is parsed here, so a test never checks the
product's proof (`reactor demo`'s) with the product's own code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pod5

OUTPUT_KINDS = ("pass", "fail")


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
    """Record names counted per folder: {"pass": ..., "fail": ...}."""
    found: dict[str, Counter[str]] = {}
    for kind in OUTPUT_KINDS:
        found[kind] = Counter()
        for path in sorted((output_dir / kind).glob("*.fastq")):
            found[kind].update(fastq_record_names(path.read_text()))
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
