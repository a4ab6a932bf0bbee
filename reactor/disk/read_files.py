"""The reads in a job's outputs: counted, split into MinKNOW's layout, and answered for.

A job's engine writes FASTQ (plain or gzip) or unaligned BAM into its `TMPOUTPUT_…/`
folders: dorado writes every read it called into one stream, with its mean quality in
the `qs` tag and no pass/fail split (`--min-qscore` would drop reads, not split them).
`split_outputs` reads each output record by record with a library (dnaio for FASTQ,
pysam for BAM), counts every read (`reactor.core.readstats.JobReads`: per barcode, reads,
bases, lengths, mean Q, the pass split at the run's `min_qscore` by `qs`, yield by the
reads' start), checks every record against the read ids of the job's `.pod5` files, and,
in the MinKNOW layout, writes the reads again as MinKNOW names them:

    fastq_pass/[{alias}/]{fc}_pass_[{alias}_]{prid8}_{runid8}_{batch}.fastq.gz
    fastq_fail/…, bam_pass/…, bam_fail/… likewise (`.bam`)

into a staging folder of the service's own (`.reactor/split/<job>/`); the journal then
makes them durable, records the decision with the counts, and renames them into place:
no half file is ever under a final name, and a job's counts count once, exactly when its
merge is decided. The batch number is the run's, unique within it (the journal hands
them out).

It runs in a worker process (parsing holds the GIL; a thread would stall the event
loop with it), so everything here takes and returns plain data. Engines' outputs are
opened without following links and read as data: a file that is not what its name says
raises UnreadableOutput, and the job is refused rather than merged.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import math
import operator
import os
import re
import shutil
import stat
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dnaio
import lib_pod5
import pod5  # type: ignore[import-untyped]  # pod5 ships no type information
import pyarrow  # type: ignore[import-untyped]  # pyarrow ships no type information
import pyarrow.ipc  # type: ignore[import-untyped]
import pysam

from reactor.core.read_tags import (
    UNCLASSIFIED,
    ReadTags,
    TagColumns,
    barcode_name,
    parse_header,
    parse_headers,
)
from reactor.core.readstats import YIELD_SLOT_S, JobReads
from reactor.disk import engine_trees
from reactor.disk.engine_trees import Outputs
from reactor.disk.read_requests import SplitRequest, SplitResult, UnreadableOutput

FASTQ = "fastq"
BAM = "bam"
FORMATS = ("auto", "fastq.gz", "bam", "both")  # the output_format setting
_FASTQ_SUFFIXES = (".fastq", ".fq", ".fastq.gz", ".fq.gz")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Integer types of a BAM tag as pysam reports them, written `i` in text (SAM's rule).
_INTEGER_TYPES = frozenset("cCsSiI")


def read_format(name: str) -> str | None:
    """FASTQ or BAM by the output's name; None for anything else (logs, indexes)."""
    lowered = name.lower()
    if lowered.endswith(".bam"):
        return BAM
    if lowered.endswith(_FASTQ_SUFFIXES):
        return FASTQ
    return None


@dataclass(frozen=True, slots=True)
class Naming:
    """What MinKNOW's output names are made of, for one job's outputs."""

    flow_cell: str
    protocol_run: str  # first 8 characters
    acquisition_run: str  # first 8 characters
    batch: int

    def name(self, passed: bool, alias: str, extension: str) -> str:
        verdict = "pass" if passed else "fail"
        barcode = f"{alias}_" if alias else ""
        return (
            f"{self.flow_cell}_{verdict}_{barcode}{self.protocol_run}_"
            f"{self.acquisition_run}_{self.batch}.{extension}"
        )


def output_folder(fmt: str, passed: bool, alias: str) -> str:
    """`fastq_pass`, `bam_fail/barcode01`, …: where MinKNOW puts such reads."""
    top = f"{fmt}_{'pass' if passed else 'fail'}"
    return f"{top}/{alias}" if alias else top


# One record, whatever file it came from: (tags, length, the FASTQ record or None, the
# BAM record or None). A plain tuple: it is made once per read of the run.
_Read = tuple[ReadTags, int, "dnaio.SequenceRecord | None", "pysam.AlignedSegment | None"]
_Record = dnaio.SequenceRecord | pysam.AlignedSegment
# Some records of one output: their tags, their lengths, and the records themselves
# when they are written again (else none).
_Chunk = tuple[TagColumns, list[int], list[_Record]]


def pod5_read_ids(paths: tuple[str, ...]) -> set[str]:
    """The read ids of the job's `.pod5` files (their read tables, no signal)."""
    ids: set[str] = set()
    for path in paths:
        try:
            ids.update(_read_table_ids(path))
        except Exception:  # anything the short way does not know: pod5's own reader
            with pod5.Reader(Path(path)) as reader:
                ids.update(str(read_id) for read_id in reader.read_ids)
    return ids


def _read_table_ids(path: str) -> list[str]:
    """One `.pod5`'s read ids the short way: pod5's footer reader says where the read
    table is, and only that table's `read_id` column is read. `pod5.Reader` also opens
    the signal and run-info tables and parses their schemas, which is most of its cost
    for a file of a few reads (0.8 ms against 0.4 ms here)."""
    located = lib_pod5.open_file(path)
    if not located:
        raise OSError(lib_pod5.get_error_string())
    try:
        # An old file is migrated by the library to a file of its own: read that one.
        where = located.get_file_read_table_location()
        with open(where.file_path, "rb") as handle:  # one pread, no Path
            data = os.pread(handle.fileno(), where.length, where.offset)
    finally:
        located.close()
    if len(data) != where.length:
        msg = "the read table is cut short"
        raise OSError(msg)
    table = pyarrow.ipc.open_file(pyarrow.py_buffer(data))
    ids: list[str] = []
    for index in range(table.num_record_batches):
        column = table.get_batch(index).column("read_id")
        if isinstance(column, pyarrow.ExtensionArray):  # pod5's uuid type over 16 bytes
            column = column.storage
        ids.extend(str(uuid.UUID(bytes=raw)) for raw in column.to_pylist())
    return ids


def naming_of(pod5_path: str, batch: int) -> Naming:
    """The names of a job's outputs from the run info of one of its `.pod5` files (the
    flow cell, protocol run and acquisition, as MinKNOW names its own outputs)."""
    with pod5.Reader(Path(pod5_path)) as reader:
        info = next((read.run_info for read in reader.reads()), None)
    if info is None:
        return Naming("unknown", "00000000", "00000000", batch)
    return Naming(
        _safe(str(info.flow_cell_id)) or "unknown",
        _safe(str(info.protocol_run_id))[:8] or "00000000",
        _safe(str(info.acquisition_id))[:8] or "00000000",
        batch,
    )


def _safe(text: str) -> str:
    """A part of a file name: letters, digits, '-' only."""
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch == "-"))


def split_outputs(request: SplitRequest) -> SplitResult:
    """Read a job's outputs (see the module docstring). Refused when they break the
    rules of `reactor.disk.engine_trees.inspect`; UnreadableOutput names the first output
    that cannot be read as what its name says."""
    output_fd = os.open(request.output_dir, _DIR_FLAGS)
    try:
        outputs = engine_trees.inspect(output_fd, request.folder, request.tag)
    finally:
        os.close(output_fd)
    try:
        expected: set[str] | None = pod5_read_ids(request.pod5_paths)
    except Exception as exc:  # pod5 raises RuntimeError, OSError, … for a damaged file
        expected = None
        problem = f"the read ids of the job's .pod5 files could not be read ({exc}): its "
        problem += "reads are counted, not checked against them"
    result = SplitResult(outputs, JobReads(pod5_reads=len(expected or ())))
    if expected is None:
        result.warnings.append(problem)
    reads = result.reads
    # Not told (one run's service): split by barcode as the reads say, one pass; if no
    # read of the job had a barcode after all, its "unclassified" reads are relabelled
    # as the reads of a run without barcodes at the end.
    by_the_reads = request.barcoded is None
    barcoded = True if by_the_reads else bool(request.barcoded)
    writers = None
    if request.batch is not None and request.stage is not None:
        naming = naming_of(request.pod5_paths[0], request.batch) if request.pod5_paths else None
        try:
            writers = _Writers(request, outputs, naming or Naming("unknown", "0", "0", 0))
        except BaseException:
            shutil.rmtree(request.stage, ignore_errors=True)  # made before what failed
            raise
    counts = _Counts(request, barcoded, reads.by_start)
    try:
        for kind, name, fmt, path in _opened(request, outputs, result):
            result.read_from.append((kind, name))
            shown, keep = f"{kind}/{name}", writers is not None
            for columns, lengths, kept in _chunks(path, fmt, shown, keep, barcoded):
                aliases = counts.add(columns, lengths)
                if writers is not None:
                    for record, qs, alias in zip(kept, columns.qs, aliases, strict=True):
                        passed = (0.0 if qs is None else qs) >= request.min_qscore  # as counted
                        writers.write(record, passed, alias)
        classified = any(barcode is not None for barcode in counts.routes)
        if writers is not None:
            result.written = writers.close()
            if by_the_reads and not classified:
                result.written = writers.unlabel(UNCLASSIFIED)
        by_alias = counts.by_alias
        if by_the_reads and not classified and UNCLASSIFIED in by_alias:
            by_alias[""] = by_alias.pop(UNCLASSIFIED)
            barcoded = False
    except BaseException:
        if writers is not None:
            writers.abandon()
        raise
    no_qs = 0
    for alias, (lengths, qualities) in by_alias.items():
        if alias or not barcoded:  # "" holds the reads of a run not split by barcode
            missing = qualities.count(None)  # no usable qs: counted as 0 (so as fail)
            no_qs += missing
            scores = [0.0 if q is None else q for q in qualities] if missing else qualities
            reads.stats(alias).add_many(lengths, cast("list[float]", scores), request.min_qscore)
    ids = counts.read_ids
    records = len(ids)
    if no_qs:
        result.warnings.append(
            f"{no_qs} of {records} reads have no usable qs tag (dorado's mean quality): "
            "they count as fail; check that the engine runs dorado"
        )
    # the read each record counts as: its `pi` parent, or itself
    parents = [parent or read_id for read_id, parent in zip(ids, counts.parents, strict=True)]
    counted = set(parents)
    if expected is not None:
        found = len(list(filter(expected.__contains__, parents)))  # records of known reads
        counted &= expected
    else:
        found = records
    reads.records = records
    reads.subreads = records - sum(map(str.__eq__, ids, parents))
    reads.duplicates = records - len(set(ids))
    reads.unknown = records - found
    reads.counted = len(counted)
    if expected is None:
        reads.pod5_reads = reads.counted  # not known: nothing is said to be dropped
    reads.dropped = reads.pod5_reads - reads.counted
    return result


# One barcode's reads, in read order: their lengths and their `qs` (None: no usable
# tag), kept until the end of a job and then counted at once (ReadStats.add_many).
_Kept = tuple[list[int], list[float | None]]


class _Counts:
    """A job's reads as its outputs are read, a chunk at a time: each barcode's lengths
    and `qs`, every record's id and `pi` parent (for the proof, at the end), and the
    bases by the reads' start. Per read, only what cannot wait is done here, and most
    of it by the standard library's C loops (docs/operations.md, "Reading each job's
    reads")."""

    def __init__(self, request: SplitRequest, barcoded: bool, by_start: Counter[int]) -> None:
        self.request = request
        self.barcoded = barcoded
        self.by_start = by_start
        self.by_alias: dict[str, _Kept] = {"": ([], [])}  # "": the reads of a run without barcodes
        self.routes: dict[str | None, tuple[str, _Kept]] = {}  # a BC tag -> folder, lists
        self.read_ids: list[str] = []
        self.parents: list[str | None] = []

    def add(self, columns: TagColumns, lengths: list[int]) -> list[str]:
        """A chunk of reads (`lengths[i]` the length of the read of `columns`' row i);
        returns each one's barcode folder ("": none)."""
        self.read_ids.extend(columns.read_ids)
        self.parents.extend(columns.parents)
        _add_starts(self.by_start, columns.starts, lengths)
        if not self.barcoded:
            kept_lengths, kept_qs = self.by_alias[""]
            kept_lengths.extend(lengths)
            kept_qs.extend(columns.qs)
            return [""] * len(lengths)
        routes = [self._route(tag) for tag in columns.barcodes]
        for (_, (kept_lengths, kept_qs)), length, qs in zip(
            routes, lengths, columns.qs, strict=True
        ):
            kept_lengths.append(length)
            kept_qs.append(qs)
        return [alias for alias, _ in routes]

    def _route(self, tag: str | None) -> tuple[str, _Kept]:
        """Where the reads of one `BC` tag go: their folder's alias and its lists."""
        route = self.routes.get(tag)
        if route is None:
            alias = _alias(tag, self.request)
            kept = self.by_alias.get(alias)
            if kept is None:
                kept = self.by_alias[alias] = ([], [])
            route = self.routes[tag] = (alias, kept)
        return route


def _alias(tag: str | None, request: SplitRequest) -> str:
    """The folder a read's barcode (its `BC` tag) goes to: the sample sheet's alias, else
    the barcode; `unclassified` for a name that cannot be a folder (an engine writes the
    tag)."""
    barcode = barcode_name(tag)
    alias = request.aliases.get(barcode, barcode)
    return alias if _FOLDER_NAME.fullmatch(alias) else UNCLASSIFIED


# A barcode folder's name: what MinKNOW's aliases allow, never "." or "..", one part.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _start_slot(start: str | None) -> int | None:
    """The ten-minute slot of a read's start (`st`), or None. A slot is known from the
    time up to its minute and the zone (`2026-12-05T10:23` … `+05:45`), so each is
    worked out once (parsing a date for each of millions of reads costs)."""
    if not start:
        return None
    key = start[:16] + start[-6:]
    if key in _SLOTS:
        return _SLOTS[key]
    if len(_SLOTS) >= _SLOTS_KEPT:
        _SLOTS.clear()
    slot = _SLOTS[key] = _slot_of(start)
    return slot


_SLOTS: dict[str, int | None] = {}
_SLOTS_KEPT = 10_000


def _add_starts(by_start: Counter[int], starts: list[str | None], lengths: list[int]) -> None:
    """Each read's bases to the slot of its start (`starts[i]`, `lengths[i]` one read's).
    The slot is `_start_slot`'s, its cache looked up once for each run of reads whose
    starts have one key (dorado writes reads about in the order they started: a chunk
    of reads is a few runs), the bases of a run summed by the standard library."""
    keys = [start[:16] + start[-6:] if start else "" for start in starts]
    for key, rows in itertools.groupby(zip(keys, starts, lengths, strict=True), _KEY):
        _, start, bases = next(rows)
        if not start:
            continue
        slot = _SLOTS[key] if key in _SLOTS else _start_slot(start)
        if slot is not None:
            by_start[slot] += bases + sum(map(_LENGTH, rows))  # noqa: B031  # its other reads


_KEY, _LENGTH = operator.itemgetter(0), operator.itemgetter(2)


def _slot_of(start: str) -> int | None:
    try:
        when = datetime.datetime.fromisoformat(start)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp()) // YIELD_SLOT_S


def _opened(
    request: SplitRequest, outputs: Outputs, result: SplitResult
) -> Iterator[tuple[str, str, str, str]]:
    """(result folder, name, format, a path that names the opened file) for each output
    that holds reads; the others go to `not_reads`."""
    for kind, name in outputs.entries:
        fmt = read_format(name)
        if fmt is None:
            result.not_reads.append(f"{kind}/{name}")
            continue
        with _output(request.job_folder, kind, name) as path:
            yield kind, name, fmt, path


@contextlib.contextmanager
def _output(job_folder: str, kind: str, name: str) -> Iterator[str]:
    """One output, opened through descriptors without following any link; yields a path
    that names the opened file (the libraries open by path), valid until the end."""
    try:
        job_fd = os.open(job_folder, _DIR_FLAGS)
        try:
            kind_fd = os.open(kind, _DIR_FLAGS, dir_fd=job_fd)
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=kind_fd)
            finally:
                os.close(kind_fd)
        finally:
            os.close(job_fd)
    except OSError as exc:
        msg = f"{kind}/{name} cannot be opened: {exc.strerror or exc}"
        raise UnreadableOutput(msg) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            msg = f"{kind}/{name} is not a regular file"
            raise UnreadableOutput(msg)
        os.set_blocking(fd, True)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


_CHUNK = 256  # records read before their headers are parsed together


def _chunks(path: str, fmt: str, shown: str, keep: bool, barcodes: bool) -> Iterator[_Chunk]:
    """Every record of one output, up to _CHUNK at a time: their tags (the `BC` tags only
    with `barcodes`), their lengths and (with `keep`, to be written again) the records.
    UnreadableOutput when the file is not what `fmt` says."""
    try:
        if fmt == FASTQ:
            yield from _fastq_chunks(path, keep=keep, barcodes=barcodes)
        else:
            yield from _bam_chunks(path, shown, keep=keep)
    except UnreadableOutput:
        raise
    except (OSError, ValueError, EOFError, dnaio.exceptions.FileFormatError) as exc:
        msg = f"{shown} cannot be read as {fmt.upper()}: {' '.join(str(exc).split())}"
        raise UnreadableOutput(msg) from None


def _fastq_chunks(path: str, *, keep: bool, barcodes: bool) -> Iterator[_Chunk]:
    """The records' headers are only gathered here and parsed a chunk at once
    (`parse_headers`); the records are kept only when asked (a chunk of kept reads of
    dorado is a few MB, past the CPU's caches)."""
    with dnaio.open(path, fileformat="fastq") as reader:
        records = iter(reader)
        while True:
            names: list[str] = []
            lengths: list[int] = []
            kept: list[_Record] = []
            for record in itertools.islice(records, _CHUNK):
                names.append(record.name)
                lengths.append(len(record))
                if keep:
                    kept.append(record)
            if not names:
                return
            yield parse_headers(names, barcodes=barcodes), lengths, kept


def _bam_chunks(path: str, shown: str, *, keep: bool) -> Iterator[_Chunk]:
    _check_bgzf(path, shown)
    with pysam.AlignmentFile(path, "rb", check_sq=False) as bam:
        if bam.header.to_dict().get("SQ"):
            msg = f"{shown} is aligned (it has @SQ lines): give unaligned BAM"
            raise UnreadableOutput(msg)
        segments = bam.fetch(until_eof=True)
        while True:
            tags: list[ReadTags] = []
            lengths: list[int] = []
            kept: list[_Record] = []
            for segment in itertools.islice(segments, _CHUNK):
                tags.append(_bam_tags(segment))
                lengths.append(segment.query_length)
                if keep:
                    kept.append(segment)
            if not tags:
                return
            yield TagColumns.of(tags), lengths, kept


def _records(path: str, fmt: str, shown: str, *, all_tags: bool = False) -> Iterator[_Read]:
    """Every record of one output, as `_Read`s (one generator, no nesting: it runs once
    per read of the run; a FASTQ header's `ch` and `RG` only with `all_tags`).
    UnreadableOutput when the file is not what `fmt` says."""
    try:
        if fmt == FASTQ:
            with dnaio.open(path, fileformat="fastq") as reader:
                for record in reader:
                    yield (parse_header(record.name, all_tags=all_tags), len(record), record, None)
        else:
            _check_bgzf(path, shown)
            with pysam.AlignmentFile(path, "rb", check_sq=False) as bam:
                if bam.header.to_dict().get("SQ"):
                    msg = f"{shown} is aligned (it has @SQ lines): give unaligned BAM"
                    raise UnreadableOutput(msg)
                for segment in bam.fetch(until_eof=True):
                    yield (_bam_tags(segment), segment.query_length, None, segment)
    except UnreadableOutput:
        raise
    except (OSError, ValueError, EOFError, dnaio.exceptions.FileFormatError) as exc:
        msg = f"{shown} cannot be read as {fmt.upper()}: {' '.join(str(exc).split())}"
        raise UnreadableOutput(msg) from None


BGZF_MAGIC = b"\x1f\x8b\x08\x04"  # a BAM file's first bytes (a BGZF block)


def _check_bgzf(path: str, shown: str) -> None:
    """A BAM is BGZF: anything else named .bam (CRAM, which htslib would go and fetch a
    reference for over the network; SAM text) is not read at all."""
    with open(path, "rb") as data:
        head = data.read(len(BGZF_MAGIC))
    if head != BGZF_MAGIC:
        msg = f"{shown} is not BAM (no BGZF block at its start)"
        raise UnreadableOutput(msg)


def _bam_tags(segment: pysam.AlignedSegment) -> ReadTags:
    """A BAM record's tags, each only when of the type dorado writes (an engine's BAM is
    data: a tag of another type is passed over, as in a FASTQ header)."""

    def text(tag: str) -> str | None:
        value = segment.get_tag(tag) if segment.has_tag(tag) else None
        return value if isinstance(value, str) and value else None

    qs = segment.get_tag("qs") if segment.has_tag("qs") else None
    channel = segment.get_tag("ch") if segment.has_tag("ch") else None
    return ReadTags(
        read_id=segment.query_name or "",
        qs=float(qs) if isinstance(qs, int | float) and math.isfinite(qs) else None,
        parent=text("pi"),
        channel=channel if isinstance(channel, int) else None,
        start=text("st"),
        read_group=text("RG"),
        barcode=text("BC"),
    )


# ------------------------------------------------------------------ writing


def fastq_header(segment: pysam.AlignedSegment) -> str:
    """A BAM record's name and tags as dorado writes them in a FASTQ header (arrays such
    as the move table are left out, as dorado does)."""
    fields = [segment.query_name or ""]
    for tag, value, kind in segment.get_tags(with_value_type=True):
        if kind == "B":
            continue
        fields.append(f"{tag}:{'i' if kind in _INTEGER_TYPES else kind}:{value}")
    return "\t".join(fields)


def _segment(record: dnaio.SequenceRecord, header: pysam.AlignmentHeader) -> pysam.AlignedSegment:
    """A FASTQ record as an unaligned BAM record, its header's tags as the record's."""
    read_id, *fields = record.name.split("\t")
    segment = pysam.AlignedSegment(header)
    segment.query_name = read_id
    segment.flag = 4
    segment.query_sequence = record.sequence
    segment.query_qualities = pysam.qualitystring_to_array(record.qualities or "")
    tags: list[tuple[str, Any, str]] = []
    for item in fields:
        tag, _, rest = item.partition(":")
        kind, _, text = rest.partition(":")
        if len(tag) != 2 or kind not in ("i", "f", "Z", "A", "H"):
            continue
        with contextlib.suppress(ValueError):
            value: Any = int(text) if kind == "i" else float(text) if kind == "f" else text
            tags.append((tag, value, kind))
    segment.set_tags(tags)
    return segment


def _read_groups(path: str, fmt: str, shown: str) -> list[dict[str, Any]]:
    if fmt == BAM:
        return [dict(group) for group in _bam_header(path, shown).get("RG", [])]
    groups = {read[0].read_group for read in _records(path, fmt, shown, all_tags=True)}
    return [{"ID": group} for group in sorted(g for g in groups if g)]


def _programs(path: str, shown: str) -> list[dict[str, Any]]:
    return [dict(program) for program in _bam_header(path, shown).get("PG", [])]


def _bam_header(path: str, shown: str) -> dict[str, Any]:
    _check_bgzf(path, shown)
    try:
        with pysam.AlignmentFile(path, "rb", check_sq=False) as bam:
            return dict(bam.header.to_dict())
    except (OSError, ValueError) as exc:
        msg = f"{shown} cannot be read as BAM: {' '.join(str(exc).split())}"
        raise UnreadableOutput(msg) from None


class _Writers:
    """The split outputs of one job, one file per (format, pass or fail, barcode), each
    opened on its first read, in the staging folder under its final name."""

    def __init__(self, request: SplitRequest, outputs: Outputs, naming: Naming) -> None:
        assert request.stage is not None  # noqa: S101  # the caller's condition
        self.request = request
        self.outputs = outputs
        self.naming = naming
        self.stage = Path(request.stage)
        if self.stage.is_symlink() or self.stage.exists():
            shutil.rmtree(self.stage)  # a leftover of a try a crash cut short
        self.stage.mkdir(mode=0o700, parents=True)
        self.fastq: dict[tuple[bool, str], Any] = {}
        self.bam: dict[tuple[bool, str], pysam.AlignmentFile] = {}
        self.written: list[tuple[str, str]] = []
        self._bam_header: pysam.AlignmentHeader | None = None
        self._read_groups: dict[str, dict[str, Any]] = {}
        self._programs: list[dict[str, Any]] = []
        self._scan_headers()

    def _formats(self, fmt: str) -> tuple[str, ...]:
        chosen = self.request.output_format
        if chosen == "auto":
            return (fmt,)
        if chosen == "both":
            return (FASTQ, BAM)
        return (BAM,) if chosen == "bam" else (FASTQ,)

    def _scan_headers(self) -> None:
        """The read groups and programs of the inputs, for the header of BAM outputs: a
        BAM input's from its header, a FASTQ input's read groups from its records (only
        when BAM is written)."""
        for kind, name in self.outputs.entries:
            fmt = read_format(name)
            if fmt is None or BAM not in self._formats(fmt):
                continue
            with _output(self.request.job_folder, kind, name) as path:
                for group in _read_groups(path, fmt, f"{kind}/{name}"):
                    self._read_groups.setdefault(str(group.get("ID")), group)
                if fmt == BAM:
                    known = {str(p.get("ID")) for p in self._programs}
                    for program in _programs(path, f"{kind}/{name}"):
                        if str(program.get("ID")) not in known:  # IDs are unique in SAM
                            self._programs.append(program)
                            known.add(str(program.get("ID")))

    def _header(self) -> pysam.AlignmentHeader:
        if self._bam_header is None:
            programs = [dict(p) for p in self._programs]
            ids = {str(p.get("ID")) for p in programs}
            own = "reactor"
            while own in ids:
                own += "'"
            ours: dict[str, Any] = {"ID": own, "PN": "pod5-reactor"}
            if programs:
                ours["PP"] = str(programs[-1].get("ID"))
            provenance = self.request.provenance
            if provenance.get("version"):
                ours["VN"] = provenance["version"]
            described = " ".join(
                f"{k}={v}" for k, v in sorted(provenance.items()) if k != "version" and v
            )
            if described:
                ours["DS"] = described
            self._bam_header = pysam.AlignmentHeader.from_dict(
                {
                    "HD": {"VN": "1.6", "SO": "unknown"},
                    "PG": [*programs, ours],
                    **({"RG": list(self._read_groups.values())} if self._read_groups else {}),
                }
            )
        return self._bam_header

    def _open(self, fmt: str, passed: bool, alias: str) -> Any:
        extension = "fastq.gz" if fmt == FASTQ else "bam"
        name = self.naming.name(passed, alias, extension)
        path = self.stage / name
        self.written.append((output_folder(fmt, passed, alias), name))
        if fmt == FASTQ:
            return dnaio.open(path, mode="w", fileformat="fastq", compression_level=1)
        # BGZF at level 1: level 6 (htslib's default) is most of a split's time, for 2 %
        # smaller files (tests/bench/qc.py)
        return pysam.AlignmentFile(
            str(path), "wb", header=self._header(), format_options=["level=1"]
        )

    def write(self, record: _Record, passed: bool, alias: str) -> None:
        key = (passed, alias)
        fmt = FASTQ if isinstance(record, dnaio.SequenceRecord) else BAM
        for out in self._formats(fmt):
            if out == FASTQ:
                writer = self.fastq.get(key)
                if writer is None:
                    writer = self.fastq[key] = self._open(FASTQ, passed, alias)
                if isinstance(record, dnaio.SequenceRecord):
                    writer.write(record)
                    continue
                qualities = record.query_qualities
                writer.write(
                    dnaio.SequenceRecord(
                        fastq_header(record),
                        record.query_sequence or "",
                        pysam.qualities_to_qualitystring(qualities) if qualities else None,
                    )
                )
            else:
                bam = self.bam.get(key)
                if bam is None:
                    bam = self.bam[key] = self._open(BAM, passed, alias)
                if isinstance(record, dnaio.SequenceRecord):
                    bam.write(_segment(record, self._header()))
                else:
                    bam.write(record)

    def close(self) -> list[tuple[str, str]]:
        for writer in [*self.fastq.values(), *self.bam.values()]:
            writer.close()
        return self.written

    def unlabel(self, alias: str) -> list[tuple[str, str]]:
        """(Once closed.) The files written for `alias` renamed, in the staging folder, to
        the names and folders of a run without barcodes."""
        written = []
        for folder, name in self.written:
            top, _, label = folder.partition("/")
            if label != alias:
                written.append((folder, name))
                continue
            verdict = top.rsplit("_", 1)[1]
            plain = self.naming.name(verdict == "pass", "", name.split(".", 1)[1])
            (self.stage / name).rename(self.stage / plain)
            written.append((top, plain))
        self.written = written
        return written

    def abandon(self) -> None:
        """The split failed: its files and folder go (nothing was decided on them)."""
        for writer in [*self.fastq.values(), *self.bam.values()]:
            with contextlib.suppress(Exception):
                writer.close()
        shutil.rmtree(self.stage, ignore_errors=True)


# ------------------------------------------------------------------ a run's outputs


def output_files(output_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """(verdict, format, path) of every file of reads in a run's outputs, in either
    layout: the seed's `pass/` and `fail/`, MinKNOW's `fastq_pass/`, `bam_fail/`, … with
    their barcode folders. A BAM file with a FASTQ twin (the same name but for its
    extension, in the same barcode folder: `output_format = both` writes each batch
    twice) is left out; any other BAM file is listed, so a run whose jobs wrote both
    formats is read whole."""
    for verdict in ("pass", "fail"):
        folder = output_dir / verdict
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                fmt = read_format(path.name)
                if fmt is not None and path.is_file() and not path.is_symlink():
                    yield verdict, fmt, path
    twins: set[tuple[str, str, str]] = set()  # (verdict, barcode folder, name stem)
    for fmt, suffix in ((FASTQ, ".fastq.gz"), (BAM, ".bam")):
        for verdict in ("pass", "fail"):
            top = output_dir / f"{fmt}_{verdict}"
            if not top.is_dir():
                continue
            for path in sorted(top.rglob("*")):
                if read_format(path.name) != fmt or not path.is_file() or path.is_symlink():
                    continue
                key = (verdict, str(path.parent.relative_to(top)), path.name.removesuffix(suffix))
                if fmt == FASTQ:
                    twins.add(key)
                elif key in twins:
                    continue
                yield verdict, fmt, path


def file_reads(path: Path, fmt: str) -> Iterator[tuple[ReadTags, int]]:
    """(tags, length) of every record of one file of reads; UnreadableOutput if it
    cannot be read as `fmt`."""
    for read in _records(str(path), fmt, str(path), all_tags=True):
        yield read[0], read[1]
