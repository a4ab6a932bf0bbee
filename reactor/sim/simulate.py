"""`reactor simulate-run DIR`: a stand-in for MinKNOW writing a live run's `.pod5` files.

There is no sequencer here, so demos and tests need something that writes real `.pod5`
files the way MinKNOW does (docs/architecture.md, "Facts of the field"):

- names `{flow_cell}_pass_{protocol_run}_{acquisition}_{batch}.pod5`, batch from 0, where
  the two ids are the first 8 hex digits of the run's protocol run id and acquisition id;
- each file appears under its final name and grows in pieces, so it starts with the POD5
  signature long before the trailing signature arrives with its last piece;
- a new file every `--interval` seconds, at most `--concurrent` of them open at once;
- `final_summary_{flow_cell}_{protocol_run}_{acquisition}.txt` once all files are written:
  the end-of-run marker.

The schedule is the pure function `plan`; `run` only plays it against the clock. The
`pod5` library is imported when the command runs (the `sim` extra), never at import time.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from reactor.core.names import POD5_SIGNATURE

PROG = "reactor simulate-run"
SIGNATURE_LEN = len(POD5_SIGNATURE)


class WriteStep(NamedTuple):
    """Write piece `piece_index` of file `file_index` at `at_s` seconds after the start."""

    at_s: float
    file_index: int
    piece_index: int


def plan(
    files: int, interval_s: float, pieces: int, piece_interval_s: float, concurrent: int
) -> list[WriteStep]:
    """The whole write schedule, in the order to play it.

    File `i` starts (its first piece) at `i * interval_s`, unless `concurrent` files are
    still open then: it waits for the oldest to close (its last piece). Its pieces follow
    every `piece_interval_s` seconds. Steps are ordered by time, then file, then piece, so a
    file's last piece comes before the first piece of the file waiting for its slot.
    """
    if files < 0:
        msg = f"files must not be negative, not {files}"
        raise ValueError(msg)
    if pieces < 1:
        msg = f"pieces must be at least 1, not {pieces}"
        raise ValueError(msg)
    if concurrent < 1:
        msg = f"concurrent must be at least 1, not {concurrent}"
        raise ValueError(msg)
    if interval_s < 0 or piece_interval_s < 0:
        msg = f"intervals must not be negative, not {interval_s} and {piece_interval_s}"
        raise ValueError(msg)
    duration = (pieces - 1) * piece_interval_s
    starts: list[float] = []
    for index in range(files):
        start = index * interval_s
        if index >= concurrent:
            # Same expression as the last piece's time below, so ties compare equal.
            start = max(start, starts[index - concurrent] + duration)
        starts.append(start)
    steps = [
        WriteStep(start + piece * piece_interval_s, index, piece)
        for index, start in enumerate(starts)
        for piece in range(pieces)
    ]
    steps.sort()
    return steps


def piece_bounds(size: int, pieces: int) -> list[int]:
    """Offsets that cut `size` bytes into `pieces` near-equal chunks: `[0, ..., size]`.

    Every chunk is longer than the 8-byte POD5 signature, so the first chunk holds the whole
    head signature and the trailing one arrives only with the last chunk.
    """
    if pieces < 1:
        msg = f"pieces must be at least 1, not {pieces}"
        raise ValueError(msg)
    bounds = [size * i // pieces for i in range(pieces + 1)]
    if bounds[1] <= SIGNATURE_LEN:
        msg = f"{pieces} pieces are too many for a {size}-byte file; use fewer --pieces"
        raise ValueError(msg)
    return bounds


def file_seed(seed: int, batch: int) -> int:
    """The seed of one file's reads: distinct per file, the same for the same run seed."""
    digest = hashlib.sha256(f"reactor-sim/{seed}/{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """The ids of one simulated sequencing run, and the names MinKNOW derives from them."""

    flow_cell_id: str
    protocol_run_id: str  # a UUID, as MinKNOW's
    acquisition_id: str  # 40 hex digits, as MinKNOW's

    @classmethod
    def from_seed(cls, flow_cell_id: str, seed: int) -> SimulatedRun:
        digest = hashlib.sha256(f"reactor-sim-run/{seed}".encode()).hexdigest()
        protocol_run_id = str(uuid.UUID(hex=digest[:32], version=4))
        acquisition_id = hashlib.sha256(digest.encode()).hexdigest()[:40]
        return cls(flow_cell_id, protocol_run_id, acquisition_id)

    @property
    def _short_ids(self) -> str:
        return f"{self.protocol_run_id[:8]}_{self.acquisition_id[:8]}"

    def pod5_name(self, batch: int) -> str:
        return f"{self.flow_cell_id}_pass_{self._short_ids}_{batch}.pod5"

    @property
    def summary_name(self) -> str:
        return f"final_summary_{self.flow_cell_id}_{self._short_ids}.txt"

    def summary_text(
        self, files: int, started: datetime.datetime, stopped: datetime.datetime
    ) -> str:
        """The `key=value` lines of MinKNOW's `final_summary_*.txt` for this run."""
        fields = {
            "instrument": "reactor-sim",
            "position": "1A",
            "flow_cell_id": self.flow_cell_id,
            "sample_id": "sample",
            "protocol_group_id": "reactor-sim",
            "protocol": "sequencing/sequencing_PRO114_DNA_e8_2_400K:FLO-PRO114M:SQK-LSK114",
            "protocol_run_id": self.protocol_run_id,
            "acquisition_run_id": self.acquisition_id,
            "started": started.isoformat(),
            "acquisition_stopped": stopped.isoformat(),
            "processing_stopped": stopped.isoformat(),
            "basecalling_enabled": "0",
            "sequencing_summary_file": "",
            "fast5_files_in_final_dest": "0",
            "fast5_files_in_fallback": "0",
            "pod5_files_in_final_dest": str(files),
            "pod5_files_in_fallback": "0",
            "fastq_files_in_final_dest": "0",
            "fastq_files_in_fallback": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in fields.items())


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def write_atomic(path: Path, text: str) -> None:
    """Write under a hidden staging name in the same folder, then rename into place."""
    staging = path.with_name(f".{path.name}.tmp")
    try:
        with open(staging, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        staging.replace(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


@dataclass(slots=True)
class _OpenFile:
    handle: IO[bytes]
    data: bytes
    bounds: list[int]


class _Player:
    """Plays a schedule: opens, appends to and closes the run's `.pod5` files."""

    def __init__(
        self, args: argparse.Namespace, sim: SimulatedRun, build: Callable[[int], bytes]
    ) -> None:
        self.args = args
        self.sim = sim
        self.build = build  # file index -> the file's bytes
        self.open_files: dict[int, _OpenFile] = {}
        self.completed = 0

    def play(self, steps: list[WriteStep]) -> None:
        start = time.monotonic()
        try:
            for step in steps:
                _sleep_until(start + step.at_s)
                self._write(step)
        finally:
            # Files in progress stay incomplete, as after a real interrupted run.
            for piece in self.open_files.values():
                piece.handle.close()

    def _write(self, step: WriteStep) -> None:
        name = self.sim.pod5_name(step.file_index)
        if step.piece_index == 0:
            data = self.build(step.file_index)
            bounds = piece_bounds(len(data), self.args.pieces)
            handle = open(self.args.dir / name, "xb")  # noqa: SIM115  # closed by the last piece
            self.open_files[step.file_index] = _OpenFile(handle, data, bounds)
        current = self.open_files[step.file_index]
        begin, end = current.bounds[step.piece_index : step.piece_index + 2]
        current.handle.write(current.data[begin:end])
        current.handle.flush()
        if step.piece_index == len(current.bounds) - 2:
            current.handle.close()
            del self.open_files[step.file_index]
            self.completed += 1
            if not self.args.quiet:
                print(f"file {name} reads={self.args.reads_per_file}", flush=True)


def _existing(directory: Path, names: list[str]) -> str | None:
    return next((name for name in names if (directory / name).exists()), None)


def write_run(args: argparse.Namespace) -> int:
    """Write the simulated run into `args.dir` (`args`: the options of `reactor
    simulate-run`); 0 when complete, 130 when interrupted."""
    try:
        from reactor.sim import pod5_files
    except ImportError:
        print(f"{PROG}: needs the pod5 library: pip install 'pod5-reactor[sim]'", file=sys.stderr)
        return 2
    directory: Path = args.dir
    sim = SimulatedRun.from_seed(args.flow_cell, args.seed)
    names = [sim.pod5_name(batch) for batch in range(args.files)] + [sim.summary_name]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{PROG}: cannot create {directory}: {exc.strerror}", file=sys.stderr)
        return 2
    clash = _existing(directory, names)
    if clash is not None:
        print(
            f"{PROG}: {clash} already exists in {directory}; use an empty folder or another --seed",
            file=sys.stderr,
        )
        return 2
    steps = plan(args.files, args.interval, args.pieces, args.piece_interval, args.concurrent)
    identity = pod5_files.RunIdentity(
        flow_cell_id=sim.flow_cell_id,
        protocol_run_id=sim.protocol_run_id,
        acquisition_id=sim.acquisition_id,
        experiment_name="reactor-sim",
    )

    def build(batch: int) -> bytes:
        seed = file_seed(args.seed, batch)
        return pod5_files.pod5_bytes(args.reads_per_file, seed, run=identity)

    player = _Player(args, sim, build)
    started = datetime.datetime.now(datetime.UTC)
    try:
        player.play(steps)
        stopped = datetime.datetime.now(datetime.UTC)
        write_atomic(directory / sim.summary_name, sim.summary_text(args.files, started, stopped))
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted after {player.completed} of {args.files} files", file=sys.stderr
        )
        return 130
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot write into {directory}: {exc}", file=sys.stderr)
        return 1
    return 0
