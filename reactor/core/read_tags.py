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

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadTags:
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


def parse_header(header: str) -> ReadTags:
    """A FASTQ header (without its '@'): the read id and dorado's tags. Fields that are
    not tags, and tags with a value of the wrong type, are passed over."""
    first, *rest = header.split("\t") if "\t" in header else header.split(" ")
    fields: dict[str, str] = {}
    for item in rest:
        tag, sep, value = item.partition(":")
        kind, sep2, text = value.partition(":")
        if sep and sep2 and len(tag) == 2 and len(kind) == 1:
            fields[f"{tag}:{kind}"] = text
    qs = _number(fields.get("qs:f")) if "qs:f" in fields else _number(fields.get("qs:i"))
    channel = _number(fields.get("ch:i"))
    return ReadTags(
        read_id=first,
        qs=qs,
        parent=fields.get("pi:Z") or None,
        channel=int(channel) if channel is not None else None,
        start=fields.get("st:Z") or None,
        read_group=fields.get("RG:Z") or None,
        barcode=fields.get("BC:Z") or None,
    )


UNCLASSIFIED = "unclassified"


def barcode_name(tag: str | None) -> str:
    """The barcode a `BC` tag names, as MinKNOW names its folders: `barcode01` for
    dorado's `SQK-NBD114-24_barcode01` (the kit before the last `_` dropped), and
    `unclassified` for a read with no barcode (no tag, or dorado's `unclassified`)."""
    if not tag:
        return UNCLASSIFIED
    name = tag.rsplit("_", 1)[-1]
    return name if name else UNCLASSIFIED


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None  # not NaN
