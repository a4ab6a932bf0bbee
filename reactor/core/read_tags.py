"""The SAM-style tags dorado writes for each read, in a FASTQ header or a BAM record.

A FASTQ header from dorado is the read id, then tab-separated `TAG:TYPE:VALUE` fields
(`qs:f:12.8`, `ch:i:1234`, `st:Z:2026-12-05T14:12:00Z`, `RG:Z:…`, `pi:Z:<parent>` for a
read split from another, `BC:Z:<kit>_barcode01` when it was classified). `qs` is the
read's mean quality as dorado computes it (the mean of its error probabilities, skipping
its first bases), an integer before dorado 0.7 (`qs:i`), a float since (`qs:f`): the
split into pass and fail uses it, never the quality string. Pure: text in, values out;
a header is parsed by whatever reads the file (a library), the tags here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple


class ReadTags(NamedTuple):  # a tuple: made millions of times, fast to make
    read_id: str
    qs: float | None = None  # dorado's mean quality
    parent: str | None = None  # `pi`: the read this one was split from
    channel: int | None = None
    start: str | None = None  # `st`: when the read started (ISO 8601)
    read_group: str | None = None
    barcode: str | None = None  # `BC`: the barcode dorado classified the read as

    @property
    def counted_as(self) -> str:
        """The read a split read counts as (its parent); any other, itself."""
        return self.parent or self.read_id


def parse_header(header: str, *, all_tags: bool = True) -> ReadTags:
    """A FASTQ header (without its '@'): the read id and dorado's tags. Fields that are
    not tags, and tags with a value of the wrong type, are passed over; a tag given twice
    counts by its first field. Without `all_tags`, `ch` and `RG` are not looked for
    (None): counting reads needs neither.

    This runs once per read of the run and was the read worker's main cost per read
    (docs/operations.md, "Reading each job's reads"): each tag is looked for with one
    `str.find` (a header has a dozen tags), inline rather than through a helper, and the
    tuple is made without `ReadTags.__new__`'s Python frame."""
    if "\t" not in header:
        header = header.replace(" ", "\t")
    header += "\t"  # every field ends at a tab: a value is header[at + 6 : next tab]
    at = header.find("\tqs:f:")
    if at < 0:
        at = header.find("\tqs:i:")  # dorado before 0.7 (only when there is no qs:f)
    qs = _number(header[at + 6 : header.find("\t", at + 6)]) if at >= 0 else None
    at = header.find("\tpi:Z:")
    parent = (header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None
    at = header.find("\tst:Z:")
    start = (header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None
    at = header.find("\tBC:Z:")
    barcode = (header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None
    channel = read_group = None
    if all_tags:
        at = header.find("\tch:i:")
        if at >= 0:
            text = header[at + 6 : header.find("\t", at + 6)]
            channel = int(text) if text.isascii() and text.isdigit() else None  # not '²'
        at = header.find("\tRG:Z:")
        read_group = (header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None
    return _tags(
        ReadTags,
        (header[: header.find("\t")], qs, parent, channel, start, read_group, barcode),
    )


_tags = tuple.__new__  # a ReadTags from its seven fields in order, in C


@dataclass(slots=True)
class TagColumns:
    """The tags that counting reads needs, of many reads: one list per tag, in read
    order, None where a read has no such tag (or no usable value, as `parse_header`)."""

    read_ids: list[str]
    qs: Sequence[float | None]
    parents: list[str | None]
    starts: list[str | None]
    barcodes: list[str | None]

    @classmethod
    def of(cls, tags: list[ReadTags]) -> TagColumns:
        """The columns of reads whose tags were read one by one (a BAM file's)."""
        return cls(*(list(map(attrgetter(name), tags)) for name in _COLUMNS))


_COLUMNS = ("read_id", "qs", "parent", "start", "barcode")


def parse_headers(headers: list[str], *, barcodes: bool = True) -> TagColumns:
    """Many FASTQ headers at once: what `parse_header` gives for each, as columns, the
    `ch` and `RG` tags left out, and the `BC` tags only with `barcodes` (else None: a
    run without barcode folders does not need them). The read worker's loop per read
    (docs/operations.md, "Reading each job's reads"): no tuple per read, and the `qs`
    values turned into numbers together, by the standard library's C loop."""
    read_ids: list[str] = []
    qs_texts: list[str] = []  # "" for a read with no qs tag
    parents: list[str | None] = []
    starts: list[str | None] = []
    tags: list[str | None] = []
    for header in headers:
        if "\t" not in header:
            header = header.replace(" ", "\t")
        header += "\t"  # every field ends at a tab: a value is header[at + 6 : next tab]
        read_ids.append(header[: header.find("\t")])
        at = header.find("\tqs:f:")
        if at < 0:
            at = header.find("\tqs:i:")  # dorado before 0.7 (only when there is no qs:f)
        qs_texts.append(header[at + 6 : header.find("\t", at + 6)] if at >= 0 else "")
        at = header.find("\tpi:Z:")
        parents.append((header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None)
        at = header.find("\tst:Z:")
        starts.append((header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None)
        if barcodes:
            at = header.find("\tBC:Z:")
            tags.append((header[at + 6 : header.find("\t", at + 6)] or None) if at >= 0 else None)
    if not barcodes:
        tags = [None] * len(read_ids)
    return TagColumns(read_ids, _numbers(qs_texts), parents, starts, tags)


def _numbers(texts: list[str]) -> Sequence[float | None]:
    """Each text as a finite float, or None (empty, not a number, NaN, infinite)."""
    try:
        values = list(map(float, texts))
    except ValueError:  # one is not a number (or empty: no tag): one by one
        return [_number(text) for text in texts]
    if all(map(math.isfinite, values)):
        return values
    return [_number(text) for text in texts]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # not NaN, not infinite


UNCLASSIFIED = "unclassified"


def barcode_name(tag: str | None) -> str:
    """The barcode a `BC` tag names, as MinKNOW names its folders: `barcode01` for
    dorado's `SQK-NBD114-24_barcode01` (the kit before the last `_` dropped), and
    `unclassified` for a read with no barcode (no tag, or dorado's `unclassified`)."""
    if not tag:
        return UNCLASSIFIED
    name = tag.rsplit("_", 1)[-1]
    return name if name else UNCLASSIFIED
