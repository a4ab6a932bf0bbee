"""Trial 6: a job's outputs read read by read, per core, beside what the libraries allow.

`reactor.disk.read_files.split_outputs` reads every output of a job record by record
(dnaio for FASTQ, plain or gzip; pysam for unaligned BAM), counts each read, and in
MinKNOW's layout (`batch` and `stage` given) writes each read again, gzip FASTQ or BAM,
split by pass/fail. The service runs it in a worker process; here it is called in this
process, as the plain function it is, and timed with `time.process_time` (the CPU of
every thread of this process: dnaio reads gzip with ISA-L's igzip in the calling thread,
`open_threads=0`, and pysam starts no thread unless asked) and with the wall clock.

The inputs are `readsets`' (about `mb` MB on disk of each kind, cached). The job has no
`.pod5` files (`pod5_paths=()`): nothing is read from a `.pod5`, and every record is
counted as `unknown` (each run is checked to have counted every record so). Split mode is
`batch=0`, a fresh `stage` folder, `output_format="auto"` (FASTQ in, gzip FASTQ out at
level 1; BAM in, BAM out, BGZF at level 1); no barcode folders (`barcoded=False`).

Figures, in MB of input on disk (10^6 bytes) per CPU-second and per wall-second, each
beside its floor from the same files in the same run: best of `repeats`, the runs
alternating, except the split, run once (it has no target, and takes a minute on 1,000
MB of BAM). The floors: the records read with the same library, each one's length
touched (dnaio's `len(record.sequence)`, pysam's `query_length`); for gzip, also the
decompression alone (xopen as dnaio opens it). Then the share of one core a PromethION 48
writing about PROMETHION_MB_S MB/s of gzip FASTQ (or of BAM: the same reads take about as
many bytes) needs at those rates: derived, not simulated.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dnaio
import pysam
from xopen import xopen

from reactor.core.names import job_tag
from reactor.disk.read_files import split_outputs
from reactor.disk.read_requests import SplitRequest, SplitResult
from tests.bench import readsets
from tests.bench.figures import Figure

MIN_QSCORE = 9.0  # MinKNOW's for dorado's hac models
TARGET_SHARE = 0.5  # of the floor
# gzip FASTQ from a PromethION 48 at full speed, rounded up: 48 flow cells at about 200 Gb
# in 72 h call about 37 Mb/s, and gzip FASTQ of dorado's reads takes about a byte a base.
PROMETHION_MB_S = 50.0
FLOORS = {"fastq": "floor: dnaio", "fastq.gz": "floor: dnaio + igzip", "bam": "floor: pysam"}


def floor_fastq(paths: list[Path]) -> int:
    """Every record through dnaio (decompressing a gzip file on the way), its length
    touched: the least a reader of FASTQ with dnaio does."""
    bases = 0
    for path in paths:
        with dnaio.open(path, fileformat="fastq") as reader:
            for record in reader:
                bases += len(record.sequence)
    return bases


def floor_bam(paths: list[Path]) -> int:
    """Every record through pysam, its length touched."""
    bases = 0
    for path in paths:
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
            for segment in bam.fetch(until_eof=True):
                bases += segment.query_length
    return bases


def gunzip(paths: list[Path]) -> int:
    """The decompression alone, opened as dnaio opens it (xopen, no thread)."""
    size = 0
    for path in paths:
        with xopen(path, "rb", threads=0) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
    return size


def request(root: Path, kind: str, stage: Path | None) -> SplitRequest:
    """The job's request: count only (`stage` None), or the MinKNOW layout (batch 0)."""
    return SplitRequest(
        output_dir=str(root / kind),
        folder=readsets.FOLDER,
        tag=job_tag(readsets.JOB),
        pod5_paths=(),
        min_qscore=MIN_QSCORE,
        batch=None if stage is None else 0,
        stage=None if stage is None else str(stage),
        output_format="auto",
    )


def _timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """CPU seconds of this process, wall seconds, and what `work` returned."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def measure(root: Path, kinds: dict[str, Any], repeats: int, stage: Path) -> dict[str, Any]:
    """Best CPU and wall seconds of every floor and of split_outputs, per kind: each
    floor and the count `repeats` times, the split once."""
    raw: dict[str, Any] = {}
    for kind, facts in kinds.items():
        paths = readsets.paths(root, kind)
        floor = floor_bam if kind == "bam" else floor_fastq
        work: dict[str, Callable[[], object]] = {
            "floor": lambda paths=paths, floor=floor: floor(paths),
            "count": lambda kind=kind: split_outputs(request(root, kind, None)),
            "split": lambda kind=kind: split_outputs(request(root, kind, stage / kind)),
        }
        if kind == "fastq.gz":
            work["gunzip"] = lambda paths=paths: gunzip(paths)
        best: dict[str, dict[str, Any]] = {}
        for round_ in range(repeats):  # the runs alternate: a burst of load hits each alike
            for name, job in work.items():
                if name == "split" and round_ > 0:
                    continue  # once: a minute a run on BAM, and it has no target
                cpu_s, wall_s, result = _timed(job)
                outcome = _outcome(name, result, facts, kind)
                if name == "split":
                    outcome["written_bytes"] = _size(stage / kind)
                    shutil.rmtree(stage / kind)
                kept = best.setdefault(name, {"cpu_s": cpu_s, "wall_s": wall_s, **outcome})
                kept["cpu_s"] = min(kept["cpu_s"], cpu_s)
                kept["wall_s"] = min(kept["wall_s"], wall_s)
        raw[kind] = best
    return raw


def _outcome(name: str, result: object, facts: dict[str, Any], kind: str) -> dict[str, Any]:
    """What a timed run found, checked against what the inputs hold."""
    if name == "floor" and result != facts["bases"]:
        msg = f"qc: the {kind} floor saw {result} bases of the {facts['bases']} written"
        raise RuntimeError(msg)
    if name not in ("count", "split"):
        return {}
    assert isinstance(result, SplitResult)
    reads = result.reads
    if reads.records != facts["reads"] or reads.unknown != facts["reads"] or result.warnings:
        msg = (
            f"qc: {name} of {kind} counted {reads.records} records ({reads.unknown} "
            f"unknown; warnings {result.warnings}) of the {facts['reads']} written"
        )
        raise RuntimeError(msg)
    return {
        "pass_reads": reads.total.pass_reads,
        "written": [written for _, written in result.written],
    }


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# ------------------------------------------------------------------ the trial


def run(
    data: Path, mb: int, repeats: int, *, fresh: bool = False
) -> tuple[list[Figure], dict[str, Any]]:
    step = time.perf_counter()
    root, kinds = readsets.build(data, mb, fresh=fresh)
    raw: dict[str, Any] = {
        "inputs": kinds,
        "build_s": time.perf_counter() - step,
        "repeats": repeats,
        "gzip_level": readsets.GZIP_LEVEL,
        "min_qscore": MIN_QSCORE,
        "in_process": True,
    }
    stage = data / "qc-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        raw["timed"] = measure(root, kinds, repeats, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return figures(raw), raw


def _rates(raw: dict[str, Any], kind: str, name: str) -> tuple[float, float]:
    """MB of input on disk per CPU-second and per wall-second."""
    mb = raw["inputs"][kind]["bytes"] / 1e6
    best = raw["timed"][kind][name]
    return mb / best["cpu_s"], mb / best["wall_s"]


def figures(raw: dict[str, Any]) -> list[Figure]:
    """The CPU figures, the derived shares of a core, then the wall-clock figures."""
    found: list[Figure] = []
    walls: list[Figure] = []
    for mode, shown in (("count", "count"), ("split", "split to MinKNOW layout")):
        for kind, label in readsets.KINDS.items():
            facts = raw["inputs"][kind]
            name = f"qc: {shown}, {label} ({facts['bytes'] / 1e6:,.0f} MB)"
            cpu, wall = _rates(raw, kind, mode)
            floor_cpu, floor_wall = _rates(raw, kind, "floor")
            cpu_s = raw["timed"][kind][mode]["cpu_s"]
            figure = Figure(name, cpu, "MB/CPU-s", floor_cpu, FLOORS[kind], target="context")
            figure.detail = {
                "reads": facts["reads"],
                "reads_per_cpu_s": facts["reads"] / cpu_s,
                "mbases_per_cpu_s": facts["bases"] / 1e6 / cpu_s,
                "bytes_per_base": facts["bytes"] / facts["bases"],
            }
            if mode == "count":
                figure.target = f">= {100 * TARGET_SHARE:g} % of floor"
                figure.met = cpu >= TARGET_SHARE * floor_cpu
            found.append(figure)
            walls.append(Figure(f"{name}, wall clock", wall, "MB/s", floor_wall, FLOORS[kind]))
    gz_floor, _ = _rates(raw, "fastq.gz", "floor")
    gunzip_cpu, _ = _rates(raw, "fastq.gz", "gunzip")
    name = "qc: floor of gzip FASTQ beside its decompression alone"
    found.append(Figure(name, gz_floor, "MB/CPU-s", gunzip_cpu, "igzip via xopen, no parsing"))
    # A PromethION 48 at full speed writes about PROMETHION_MB_S MB/s of gzip FASTQ; BAM
    # of the same reads is about as large (bytes_per_base), so the same rate is shown.
    for kind in ("fastq.gz", "bam"):
        label = readsets.KINDS[kind]
        for mode in ("count", "split"):
            share = 100 * PROMETHION_MB_S / _rates(raw, kind, mode)[0]
            name = f"qc: PromethION 48 at {PROMETHION_MB_S:g} MB/s of {label}, {mode}"
            figure = Figure(f"{name}: share of one core (derived)", share, "%", target="context")
            if kind == "fastq.gz":
                figure.target, figure.met = "< 100 % (one core)", share < 100
            found.append(figure)
    return found + walls
