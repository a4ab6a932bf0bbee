"""`reactor fake-basecaller --dorado IN`: the stand-in for `dorado basecaller MODEL IN`.

Like dorado, it writes one stream on stdout and no folders: unaligned BAM (SAM when
stdout is a terminal, as dorado does), or FASTQ text with `--emit-fastq`, each record
the read id, then dorado's tags tab-separated in the header. The service splits pass from
fail; dorado does not. Inputs are every `*.pod5` in IN (symlinks followed, sorted by
name), all read before anything is written; each read becomes zero, one or two records
(`reactor.sim.dorado_reads`: dropped, written, or split), in file order.

The BAM header is dorado's: `@HD VN:1.6 SO:unknown`; `@PG ID:basecaller PN:dorado`
with this stand-in's version and command line; one `@RG` per run (`ID` `<runid>_<model>`,
`PU` the flow cell, `PM` the device, `DT` the acquisition's start, `PL:ONT`, `DS`
`basecall_model=<model> runid=<runid>`, `LB` and `SM` the sample), and with `--kit-name`
one more per barcode of the kit (`SM` and `al` the barcode, `bk` the kit). Records are
unmapped (flag 4, no position).

The faults of the folder mode work here too (`--fail-rate`, `--fail-on`,
`--crash-after-reads`, counting records written, and `--delay-per-read`); the exit codes
are the same. The pod5 library is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO, Protocol

import pysam

from reactor.sim.dorado_reads import (
    DEFAULT_MODEL,
    CalledRead,
    Tag,
    called_reads,
    is_dropped,
    is_split,
    kit_barcodes,
    read_group_id,
    timestamp,
)
from reactor.sim.fake_basecaller import (
    CRASH_EXIT_CODE,
    PROG,
    BadInput,
    read_inputs,
    usable_inputs,
)
from reactor.sim.pod5_reads import Pod5Read, Pod5Run

FAKE_DORADO_VERSION = "0.0.0+reactor-fake"


def _tag_text(tag: Tag) -> str:
    """A tag as SAM text (and dorado's FASTQ headers) write it: floats as `%g`."""
    value = f"{tag.value:g}" if tag.kind == "f" else str(tag.value)
    return f"{tag.name}:{tag.kind}:{value}"


def fastq_text(read: CalledRead) -> str:
    """The four FASTQ lines of one record: `@<id>`, then its tags tab-separated."""
    tags = "\t".join(_tag_text(tag) for tag in read.tags)
    return f"@{read.read_id}\t{tags}\n{read.bases}\n+\n{read.qualities}\n"


def runs_of(tables: Iterable[tuple[Path, list[Pod5Read]]]) -> list[Pod5Run]:
    """Each run the reads belong to, once (by run id), in the order first met."""
    runs: dict[str, Pod5Run] = {}
    for _path, reads in tables:
        for read in reads:
            runs.setdefault(read.run.run_id, read.run)
    return list(runs.values())


def _read_group_line(run: Pod5Run, model: str, barcode: str | None) -> str:
    fields = [
        f"ID:{read_group_id(run.run_id, model, barcode)}",
        f"PU:{run.flow_cell_id or 'unknown'}",
        f"PM:{run.device or 'unknown'}",
        f"DT:{timestamp(run.acquisition_start_ms)}",
        "PL:ONT",
        f"DS:basecall_model={model} runid={run.run_id}",
        f"LB:{run.sample_id or 'unknown'}",
    ]
    if barcode is None:
        fields.append(f"SM:{run.sample_id or 'unknown'}")
    else:
        name = barcode.rsplit("_", 1)[-1]  # `barcode01`, as dorado's SM and al
        fields += [f"SM:{name}", f"al:{name}", f"bk:{barcode.rsplit('_', 1)[0]}"]
    return "@RG\t" + "\t".join(fields)


def header_text(
    runs: Sequence[Pod5Run], model: str, kit_name: str | None, command_line: str
) -> str:
    """The SAM header dorado writes for these runs (see the module docstring)."""
    lines = [
        "@HD\tVN:1.6\tSO:unknown",
        f"@PG\tID:basecaller\tPN:dorado\tVN:{FAKE_DORADO_VERSION}\tCL:{command_line}\tDS:{PROG}",
    ]
    for run in runs:
        lines.append(_read_group_line(run, model, None))
        for barcode in kit_barcodes(kit_name) if kit_name else []:
            lines.append(_read_group_line(run, model, barcode))
    return "\n".join(lines) + "\n"


class _Stream(Protocol):
    def write(self, read: CalledRead) -> None: ...
    def close(self) -> None: ...


class _FastqStream:
    """FASTQ text onto a binary stream."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, read: CalledRead) -> None:
        self.out.write(fastq_text(read).encode("ascii"))

    def close(self) -> None:
        self.out.flush()


class _BamStream:
    """Unaligned BAM (or SAM) onto the file descriptor of a binary stream, with pysam."""

    def __init__(self, out: BinaryIO, header: str, *, as_text: bool) -> None:
        out.flush()  # pysam writes to a duplicate of its descriptor, behind Python's buffer
        self.file = pysam.AlignmentFile(
            out, "w" if as_text else "wb", header=pysam.AlignmentHeader.from_text(header)
        )

    def write(self, read: CalledRead) -> None:
        self.file.write(bam_record(read, self.file.header))

    def close(self) -> None:
        self.file.close()


@dataclass(slots=True)
class _Tally:
    files: int = 0
    reads: int = 0  # of the POD5 files
    written: int = 0  # records
    dropped: int = 0
    split: int = 0


def command_line(args: argparse.Namespace) -> str:
    """`@PG CL`: the options that shape the output, as one shell line."""
    words = [*PROG.split(), "--dorado", str(args.input), "--model", args.model or DEFAULT_MODEL]
    if args.kit_name:
        words += ["--kit-name", args.kit_name]
    if args.emit_fastq:
        words.append("--emit-fastq")
    return shlex.join(words)


def _crash(stream: _Stream | None, written: int) -> None:
    """Die like a killed process, once the records written so far are out. A BAM is
    closed for that (its end-of-file block written too): htslib keeps the last few
    kilobytes of a BAM in a buffer only closing pushes out."""
    if stream is not None:
        stream.close()
    print(
        f"{PROG}: crashing on purpose after {written} reads (--crash-after-reads)",
        file=sys.stderr,
    )
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def _basecall(
    tables: list[tuple[Path, list[Pod5Read]]], args: argparse.Namespace, out: BinaryIO
) -> _Tally:
    tally = _Tally()
    crash_after: int | None = args.crash_after_reads
    if crash_after == 0:
        _crash(None, 0)
    # dorado names a model by its folder's name, whether given as a name or a path
    model = PurePath(args.model or DEFAULT_MODEL).name
    kit_name: str | None = args.kit_name or None  # empty: no barcoding, as a template gives
    stream: _Stream
    if args.emit_fastq:
        stream = _FastqStream(out)
    else:
        header = header_text(runs_of(tables), model, kit_name, command_line(args))
        stream = _BamStream(out, header, as_text=out.isatty())  # dorado writes SAM to a tty
    for path, reads in tables:
        for read in reads:
            tally.reads += 1
            tally.dropped += is_dropped(read.read_id)
            tally.split += is_split(read.read_id)
            for called in called_reads(read, path.name, model, kit_name):
                if args.delay_per_read > 0:
                    time.sleep(args.delay_per_read)
                stream.write(called)
                tally.written += 1
                if tally.written == crash_after:
                    _crash(stream, tally.written)
        tally.files += 1
    stream.close()
    return tally


def bam_record(read: CalledRead, header: pysam.AlignmentHeader) -> pysam.AlignedSegment:
    """A called read as dorado writes it in unaligned BAM: unmapped, its tags typed."""
    segment = pysam.AlignedSegment(header)
    segment.query_name = read.read_id
    segment.flag = 4  # unmapped, as every record of an unaligned BAM
    segment.query_sequence = read.bases
    segment.query_qualities = pysam.qualitystring_to_array(read.qualities)
    segment.set_tags([(tag.name, tag.value, tag.kind) for tag in read.tags])
    return segment


def basecall_dorado(args: argparse.Namespace, out: BinaryIO | None = None) -> int:
    """Basecall `args.input` onto `out` (stdout by default) as dorado would; returns the
    exit code (0 done, 1 failed, 2 a usage mistake, 137 the simulated crash)."""
    started = time.monotonic()
    inputs = usable_inputs(args)
    if isinstance(inputs, int):
        return inputs
    from reactor.sim import pod5_files

    try:
        tables = read_inputs(inputs, pod5_files.read_facts)
        tally = _basecall(tables, args, out if out is not None else sys.stdout.buffer)
    except BadInput as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PROG}: cannot write to stdout: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(
        f"{PROG}: files={tally.files} reads={tally.reads} written={tally.written} "
        f"dropped={tally.dropped} split={tally.split} "
        f"seconds={time.monotonic() - started:.2f}",
        file=sys.stderr,
    )
    return 0
