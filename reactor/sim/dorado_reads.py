"""What the stand-in for dorado calls from each POD5 read, as dorado 1.x writes it: pure.

`called_reads(read, pod5_name, model, kit_name)` turns one `Pod5Read` into the records
`reactor fake-basecaller --dorado` writes, each a read id, bases, qualities and dorado's
tags. Every choice is drawn from the read id with blake2b (never Python's salted
`hash()`), so the same POD5 always gives the same records, and a test can recount what
was written from the ids alone with the predicates below:

- `called_length(read_id)`: the bases called, log-normal around `MEDIAN_BASES` (from
  `SHORTEST_BASES` to `LONGEST_BASES`, so a run has a meaningful N50), whatever the
  read's signal length (the simulator's reads are all a few hundred samples). About 1
  read in `DROP_ONE_IN` gets fewer than `MIN_CALLED_BASES` bases instead.
- `is_dropped(read_id)`: those very short reads, which dorado drops; nothing is written.
- `is_split(read_id)`: about 1 kept read in `SPLIT_ONE_IN` holds two reads end to end;
  dorado splits it by default into two subreads with new ids (`subread_id`), `pi` the
  parent's id and `sp` where each starts in the parent's signal. The parent's bases and
  samples are divided between them, each has its own `qs`, and the parent is not written.
- `barcode_for(read_id, kit_name)`: with `--kit-name KIT`, `KIT_barcode01` to
  `KIT_barcode12`, or `unclassified` for about 1 read in `UNCLASSIFIED_ONE_IN`. As dorado
  does, an unclassified read has no `BC` tag and its read group no barcode suffix.

The tags, in the order dorado writes them (dorado's `documentation/SAM.md`;
docs/architecture.md, "Facts of the field"): `qs:f` (`mean_qscore` of the record's id), `du:f`
(samples / sample rate), `ns:i`, `ts:i:0`, `mx:i` (the well), `ch:i`, `st:Z` (the start
in UTC to the millisecond, `2024-01-01T00:00:00.200+00:00`, as dorado 1.0-1.1 write it;
1.2 and later write microseconds), `rn:i` (-1 for a subread, as dorado), `fn:Z` (the
POD5's name), `sm:f`, `sd:f`, `sv:Z:quantile`, `dx:i:0`, `RG:Z`
(`<runid>_<model>[_<KIT_barcodeNN>]`, the run id being the protocol run id, as in dorado
1.x), then `pi:Z` and `sp:i` for a subread and `BC:Z` for a classified read. Float values
are rounded to 32 bits, as a BAM stores them. The quality string varies base to base
around `qs`; as in dorado, `qs` is not its mean.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import struct
import uuid
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

from reactor.sim.fake_basecaller import mean_qscore, spell_bases
from reactor.sim.pod5_reads import Pod5Read, Pod5Run

DEFAULT_MODEL = "dna_r10.4.1_e8.2_400bps_hac@v5.0.0"
MIN_CALLED_BASES = 5  # shorter reads are dropped
MEDIAN_BASES = 4000
LENGTH_SPREAD = 0.9  # standard deviation of ln(bases): an N50 about twice the median
SHORTEST_BASES = 20
LONGEST_BASES = 30_000
DROP_ONE_IN = 32
SPLIT_ONE_IN = 16
UNCLASSIFIED_ONE_IN = 10
BARCODES_PER_KIT = 12
UNCLASSIFIED = "unclassified"
SCALING_VERSION = "quantile"
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_LENGTHS = NormalDist(math.log(MEDIAN_BASES), LENGTH_SPREAD)


class Tag(NamedTuple):
    """One SAM tag of a record: `qs`, 12.34, `f`."""

    name: str
    value: int | float | str
    kind: str  # SAM's type: "i" integer, "f" float, "Z" text


@dataclass(frozen=True, slots=True)
class CalledRead:
    """One record as dorado writes it: the read id, bases, Phred+33 qualities and tags."""

    read_id: str
    bases: str
    qualities: str
    tags: tuple[Tag, ...]

    def tag(self, name: str) -> int | float | str | None:
        """The value of the tag `name`, or None when the record has none."""
        return next((tag.value for tag in self.tags if tag.name == name), None)


def _draw(read_id: str, purpose: str) -> int:
    """A 64-bit number drawn from the read id, one independent draw per purpose."""
    digest = hashlib.blake2b(read_id.encode(), digest_size=8, person=purpose.encode())
    return int.from_bytes(digest.digest(), "big")


def _fraction(read_id: str, purpose: str) -> float:
    """A draw as a fraction strictly between 0 and 1."""
    return (_draw(read_id, purpose) + 0.5) / 2**64


def called_length(read_id: str) -> int:
    """The bases dorado calls for this read: fewer than MIN_CALLED_BASES for about 1 read
    in DROP_ONE_IN (those are dropped), else log-normal around MEDIAN_BASES, from
    SHORTEST_BASES to LONGEST_BASES."""
    if _draw(read_id, "drop") % DROP_ONE_IN == 0:
        return 1 + _draw(read_id, "short") % (MIN_CALLED_BASES - 1)
    bases = round(math.exp(_LENGTHS.inv_cdf(_fraction(read_id, "length"))))
    return min(LONGEST_BASES, max(SHORTEST_BASES, bases))


def is_dropped(read_id: str) -> bool:
    """True when the read is too short to be written (dorado drops it)."""
    return called_length(read_id) < MIN_CALLED_BASES


def is_split(read_id: str) -> bool:
    """True when the read is written as two subreads instead of itself (never a dropped
    read)."""
    return not is_dropped(read_id) and _draw(read_id, "split") % SPLIT_ONE_IN == 0


def subread_id(parent_id: str, index: int) -> str:
    """The id of subread `index` (0, 1) of a split read, made as dorado makes it: the
    first 16 bytes of SHA-256 of the parent's id and the index, as a version-4 UUID."""
    digest = hashlib.sha256(f"{parent_id}{index}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def barcode_for(read_id: str, kit_name: str) -> str:
    """The barcode the read is classified as: `<kit_name>_barcodeNN` (NN from 01 to
    BARCODES_PER_KIT), or UNCLASSIFIED for about 1 read in UNCLASSIFIED_ONE_IN."""
    if _draw(read_id, "classified") % UNCLASSIFIED_ONE_IN == 0:
        return UNCLASSIFIED
    return kit_barcodes(kit_name)[_draw(read_id, "barcode") % BARCODES_PER_KIT]


def kit_barcodes(kit_name: str) -> list[str]:
    """Every barcode of a kit, as dorado names them: `<kit_name>_barcode01`, …"""
    return [f"{kit_name}_barcode{number:02d}" for number in range(1, BARCODES_PER_KIT + 1)]


def read_group_id(run_id: str, model: str, barcode: str | None = None) -> str:
    """`RG`: `<runid>_<model>`, with `_<barcode>` for a classified read."""
    suffix = f"_{barcode}" if barcode and barcode != UNCLASSIFIED else ""
    return f"{run_id}_{model}{suffix}"


def timestamp(unix_ms: int) -> str:
    """A time as dorado writes it: ISO 8601 in UTC to the millisecond, `+00:00`."""
    moment = _UNIX_EPOCH + datetime.timedelta(milliseconds=unix_ms)
    return moment.isoformat(timespec="milliseconds")


def start_time(run: Pod5Run, sample: int) -> str:
    """`st`: when the acquisition's sample number `sample` was read."""
    return timestamp(run.acquisition_start_ms + sample * 1000 // max(run.sample_rate, 1))


def _float32(value: float) -> float:
    """The value a BAM stores for a float tag (32 bits)."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _qualities(read_id: str, length: int, qs: float) -> str:
    """Phred+33 qualities that wobble by up to 5 around `qs`, in a pattern from the id."""
    wobble = hashlib.blake2b(read_id.encode(), digest_size=32, person=b"qualities").digest()
    centre = round(qs)
    pattern = "".join(chr(33 + min(50, max(1, centre + byte % 11 - 5))) for byte in wobble)
    return (pattern * (length // len(pattern) + 1))[:length]


@dataclass(frozen=True, slots=True)
class _Piece:
    """The part of a POD5 read one record covers: all of it, or one subread."""

    read_id: str
    length: int  # bases
    split_point: int  # first sample, within the parent's signal
    n_samples: int
    parent_id: str | None = None


def _split(read: Pod5Read, length: int) -> list[_Piece]:
    """Two subreads dividing the read's bases and samples (each gets at least 1 base)."""
    share = 0.25 + 0.5 * _fraction(read.read_id, "split-at")
    first_length = min(length - 1, max(1, round(length * share)))
    split_sample = min(read.n_samples, read.n_samples * first_length // length)
    spans = [
        (0, first_length, split_sample),
        (split_sample, length - first_length, read.n_samples - split_sample),
    ]
    return [
        _Piece(subread_id(read.read_id, index), bases, start, n_samples, read.read_id)
        for index, (start, bases, n_samples) in enumerate(spans)
    ]


def _called(
    read: Pod5Read, piece: _Piece, pod5_name: str, model: str, kit: str | None
) -> CalledRead:
    qs = mean_qscore(piece.read_id)
    scaling = read.read_id  # a subread keeps its parent's scaling, as in dorado
    barcode = barcode_for(piece.read_id, kit) if kit else None
    tags = [
        Tag("qs", _float32(qs), "f"),
        Tag("du", _float32(piece.n_samples / max(read.run.sample_rate, 1)), "f"),
        Tag("ns", piece.n_samples, "i"),
        Tag("ts", 0, "i"),
        Tag("mx", read.well, "i"),
        Tag("ch", read.channel, "i"),
        Tag("st", start_time(read.run, read.start_sample + piece.split_point), "Z"),
        Tag("rn", read.read_number if piece.parent_id is None else -1, "i"),
        Tag("fn", pod5_name, "Z"),
        Tag("sm", _float32(round(70 + 30 * _fraction(scaling, "shift"), 2)), "f"),
        Tag("sd", _float32(round(12 + 10 * _fraction(scaling, "scale"), 2)), "f"),
        Tag("sv", SCALING_VERSION, "Z"),
        Tag("dx", 0, "i"),
        Tag("RG", read_group_id(read.run.run_id, model, barcode), "Z"),
    ]
    if piece.parent_id is not None:
        tags += [Tag("pi", piece.parent_id, "Z"), Tag("sp", piece.split_point, "i")]
    if barcode is not None and barcode != UNCLASSIFIED:
        tags.append(Tag("BC", barcode, "Z"))
    return CalledRead(
        read_id=piece.read_id,
        bases=spell_bases(piece.read_id, piece.length),
        qualities=_qualities(piece.read_id, piece.length, qs),
        tags=tuple(tags),
    )


def called_reads(
    read: Pod5Read, pod5_name: str, model: str, kit_name: str | None
) -> list[CalledRead]:
    """The records dorado writes for one POD5 read: none when it is dropped, two subreads
    when it is split, else the read itself. `kit_name` None: no barcoding."""
    if is_dropped(read.read_id):
        return []
    length = called_length(read.read_id)
    if is_split(read.read_id):
        pieces = _split(read, length)
    else:
        pieces = [_Piece(read.read_id, length, 0, read.n_samples)]
    return [_called(read, piece, pod5_name, model, kit_name) for piece in pieces]
