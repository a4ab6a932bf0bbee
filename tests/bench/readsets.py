"""Files of reads as dorado writes them, for the `qc` trial: built once, cached by size.

About `mb` MB on disk of each of plain FASTQ, gzip FASTQ and unaligned BAM, in files of
about FILE_MB MB, each set laid out as a job folder `reactor.disk.read_files.split_outputs`
reads: `<root>/<kind>/TMPOUTPUT_1_bench/pass/calls_NNN.<kind>`, `<root>/<kind>` the
OUTPUTDIR. The same run of reads starts each set (the gzip set holds more of them).

Each read is what `reactor.sim.dorado_reads.called_reads` makes of a POD5 read (dorado's
tags in dorado's order: `qs`, `du`, `ns`, `ts`, `mx`, `ch`, `st`, `rn`, `fn`, `sm`, `sd`,
`sv`, `dx`, `RG`; log-normal lengths with a median of 4 kb; about 1 read in 16 split in two
subreads with `pi` and `sp`), its bases and qualities replaced by random ones as varied as
a real run's: the simulator spells them from a short pattern, which gzip would squeeze to
almost nothing and so make every compressed MB hold far more reads than a real one. Bases
are uniform over ACGT; each quality is the read's `qs` plus a rounded normal of sd
QUALITY_SD, clipped to 1..50. Each read takes a slice of a POOL-byte block of random
bytes at a random place, so no compressor's window (32 kB for gzip, 64 kB for a BAM's
BGZF blocks) sees a repeat.

gzip FASTQ is written by dnaio at `compression_level=1` (ISA-L's igzip level 1): the level
the service writes its own split `.fastq.gz` at (MinKNOW does not document its own). BAM
is written by pysam at its default level (zlib's 6), as the simulator's dorado does.
Under load a 1,000 MB set takes about two minutes to build.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from statistics import NormalDist
from typing import Any

import dnaio
import pysam

from reactor.sim.dorado_reads import DEFAULT_MODEL, CalledRead, called_length, called_reads
from reactor.sim.dorado_stream import bam_record, fastq_text, header_text
from reactor.sim.pod5_reads import Pod5Read, Pod5Run

INPUT_FORMAT = 1  # bump when the inputs change: cached sets of another format are rebuilt
FILE_MB = 100
GZIP_LEVEL = 1
QUALITY_SD = 4.0
POOL = 1 << 24  # bytes of random bases, and of random quality draws
JOB = "1"
FOLDER = f"TMPOUTPUT_{JOB}_bench"
KINDS = {"fastq": "plain FASTQ", "fastq.gz": "gzip FASTQ", "bam": "unaligned BAM"}
POD5_NAME = "PBC00000_pass_0f1d7e9e_4a5b6c7d_0.pod5"
RUN = Pod5Run(
    run_id="4a5b6c7d-0000-4000-8000-000000000001",
    acquisition_id="0f1d7e9e-0000-4000-8000-000000000002",
    acquisition_start_ms=1_796_083_200_000,  # 2026-12-01T00:00Z
    sample_rate=5000,
    flow_cell_id="PBC00000",
    sample_id="bench",
    device="PC48B000",
)
SAMPLES_PER_BASE = 12.5  # 5 kHz at 400 bases/s


def _quality_tables() -> list[bytes]:
    """For each whole `qs` from 0 to 50, a table turning a random byte into a quality
    character: `qs` plus a normal of sd QUALITY_SD (by its 256 quantiles), rounded and
    clipped to 1..50, Phred+33."""
    offsets = [NormalDist(0.0, QUALITY_SD).inv_cdf((i + 0.5) / 256) for i in range(256)]
    return [
        bytes(33 + min(50, max(1, round(centre + offset))) for offset in offsets)
        for centre in range(51)
    ]


class _Reads:
    """Dorado's records for an endless run of reads, their bases and qualities random."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.bases = self.rng.randbytes(POOL).translate(b"ACGT" * 64)
        self.noise = self.rng.randbytes(POOL)
        self.tables = _quality_tables()

    def __iter__(self) -> Iterator[CalledRead]:
        number = 0
        while True:
            number += 1
            read_id = str(uuid.UUID(bytes=self.rng.randbytes(16), version=4))
            read = Pod5Read(
                read_id=read_id,
                n_samples=max(1, round(called_length(read_id) * SAMPLES_PER_BASE)),
                channel=self.rng.randint(1, 3000),
                well=self.rng.randint(1, 4),
                read_number=number,
                start_sample=number * 2500,  # a read every half second: hours of run
                run=RUN,
            )
            for called in called_reads(read, POD5_NAME, DEFAULT_MODEL, None):
                yield self._varied(called)

    def _slice(self, pool: bytes, n: int) -> bytes:
        start = self.rng.randrange(POOL - n)
        return pool[start : start + n]

    def _varied(self, called: CalledRead) -> CalledRead:
        n = len(called.bases)
        centre = min(50, max(0, round(float(called.tag("qs") or 0))))
        return dataclasses.replace(
            called,
            bases=self._slice(self.bases, n).decode("ascii"),
            qualities=self._slice(self.noise, n).translate(self.tables[centre]).decode("ascii"),
        )


class _Sink:
    """One kind of input: files of about FILE_MB MB in `pass/`, until `mb` MB in all."""

    def __init__(self, kind: str, output_dir: Path, target_bytes: int, header: str) -> None:
        self.kind = kind
        self.folder = output_dir / FOLDER / "pass"
        self.folder.mkdir(parents=True)
        self.target_bytes = target_bytes
        self.header = pysam.AlignmentHeader.from_text(header)
        self.closed_bytes = 0
        self.files = 0
        self.reads = 0
        self.bases = 0
        self.path: Path | None = None
        self.writer: Any = None

    @property
    def done(self) -> bool:
        return self.closed_bytes >= self.target_bytes

    def _open(self) -> None:
        self.path = self.folder / f"calls_{self.files:03d}.{self.kind}"
        self.files += 1
        if self.kind == "bam":
            self.writer = pysam.AlignmentFile(str(self.path), "wb", header=self.header)
        else:
            self.writer = dnaio.open(
                self.path, mode="w", fileformat="fastq", compression_level=GZIP_LEVEL
            )

    def _close(self) -> None:
        assert self.path is not None
        self.writer.close()
        self.closed_bytes += self.path.stat().st_size
        self.writer = self.path = None

    def write(self, read: CalledRead) -> None:
        if self.writer is None:
            self._open()
        if self.kind == "bam":
            self.writer.write(bam_record(read, self.header))
        else:
            header = fastq_text(read).split("\n", 1)[0][1:]
            self.writer.write(dnaio.SequenceRecord(header, read.bases, read.qualities))
        self.reads += 1
        self.bases += len(read.bases)
        if self.reads % 64 == 0:
            assert self.path is not None
            # the writers buffer at most a few hundred kB: close enough to FILE_MB
            size = self.path.stat().st_size
            if size >= min(FILE_MB * 10**6, self.target_bytes - self.closed_bytes):
                self._close()

    def finish(self) -> dict[str, Any]:
        if self.writer is not None:
            self._close()
        paths = sorted(self.folder.iterdir())
        return {
            "files": len(paths),
            "bytes": sum(path.stat().st_size for path in paths),
            "reads": self.reads,
            "bases": self.bases,
        }


def build(data: Path, mb: int, *, fresh: bool = False) -> tuple[Path, dict[str, Any]]:
    """The three sets of inputs (cached by size under `data`) and what each holds."""
    root = data / f"qc-{mb}mb"
    done = root / "inputs.json"
    if done.exists() and not fresh:
        facts = json.loads(done.read_text())
        if facts.get("format") == INPUT_FORMAT:
            return root, facts["kinds"]
    shutil.rmtree(root, ignore_errors=True)
    header = header_text([RUN], DEFAULT_MODEL, None, "dorado basecaller hac pod5/ (bench)")
    sinks = [_Sink(kind, root / kind, mb * 10**6, header) for kind in KINDS]
    began = time.perf_counter()
    for read in _Reads():
        open_sinks = [sink for sink in sinks if not sink.done]
        if not open_sinks:
            break
        for sink in open_sinks:
            sink.write(read)
    kinds = {sink.kind: sink.finish() for sink in sinks}
    facts = {"format": INPUT_FORMAT, "kinds": kinds, "build_s": time.perf_counter() - began}
    done.write_text(json.dumps(facts, indent=1) + "\n")
    return root, kinds


def paths(root: Path, kind: str) -> list[Path]:
    """The files of one kind of input, in name order."""
    return sorted((root / kind / FOLDER / "pass").iterdir())
