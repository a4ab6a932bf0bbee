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
    not tags, and tags with a value of the wrong type, are passed over. (Each tag is
    looked for with `str.find`: a header has a dozen tags and a run millions of headers,
    and this is the read worker's main cost per read.) Without `all_tags`, `ch` and
    `RG` are not looked for (None): counting reads needs neither."""
    if "\t" not in header:
        header = header.replace(" ", "\t")
    end = header.find("\t")
    qs = _value(header, "\tqs:f:")
    channel = _value(header, "\tch:i:") if all_tags else None
    return ReadTags(
        header if end < 0 else header[:end],
        _number(qs if qs is not None else _value(header, "\tqs:i:")),
        _value(header, "\tpi:Z:") or None,
        int(channel) if channel is not None and channel.isdigit() else None,
        _value(header, "\tst:Z:") or None,
        (_value(header, "\tRG:Z:") or None) if all_tags else None,
        _value(header, "\tBC:Z:") or None,
    )


def _value(header: str, key: str) -> str | None:
    """The value of the first field `key` starts ("\tqs:f:"), or None."""
    at = header.find(key)
    if at < 0:
        return None
    at += len(key)
    end = header.find("\t", at)
    return header[at:] if end < 0 else header[at:end]


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
    return value if math.isfinite(value) else None  # not NaN, not infinite
