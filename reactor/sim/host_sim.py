"""`reactor simulate-run --flow-cells N ROOT`: a sequencer host's data root, several runs
at once, as MinKNOW lays them out.

Flow cell `i` starts `i * stagger` seconds after the first, each in a run folder of its
own, `ROOT/{group}/{sample}/{YYYYMMDD_HHMM}_{device}_{flow_cell}_{prid8}/`, written
the way MinKNOW writes (docs/host.md, "What counts as a run"):

- each `.pod5` is written in pieces in the run's `tmp/` folder, then moved into place
  whole (MinKNOW moves reads out of `tmp/` and `queued_reads/`);
- the layouts differ from run to run: the current one (`pod5/`,
  `{fc}_{prid8}_{runid8}_{batch}.pod5`), the older split by barcode
  (`pod5_pass/barcode01…/`, `{fc}_pass_barcode01_{prid8}_{runid8}_{batch}.pod5`), and two
  runs pooled in one sample folder (their files side by side in `{sample}/pod5/`);
- the run split by barcode has a sample sheet (`sample_sheet_*.csv`, MinKNOW's columns:
  its barcoding kit, `KIT`, and an alias for each of three barcodes), written as the run
  starts;
- once a run's files are all written: its `output_hash_*.csv` and then its
  `final_summary_*.txt` (the end-of-run marker).

The schedule for each run is `reactor.sim.simulate.plan`; the runs' steps are merged and
played against the clock.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from reactor.sim.simulate import (
    PROG,
    SimulatedRun,
    WriteStep,
    file_seed,
    piece_bounds,
    plan,
    write_atomic,
)

GROUP = "demo"
KIT = "SQK-NBD114-24"  # the barcoding kit of the run split by barcode
ALIASES = {"barcode01": "patient_a", "barcode02": "patient_b", "barcode03": "patient_c"}
# flow cell i's layout, in turn: the two pooled runs share a sample folder
LAYOUTS = ("current", "barcoded", "pooled", "pooled")
DEVICES = ("1A", "1B", "1C", "1D", "1E", "2A", "2B", "2C")


@dataclass(frozen=True)
class HostRun:
    """One simulated run on the host: where its files go and what they are called."""

    index: int
    sim: SimulatedRun
    folder: Path  # the run folder (pooled: the sample folder it shares)
    layout: str  # "current", "barcoded" or "pooled"
    sample: str

    @property
    def prid8(self) -> str:
        return self.sim.protocol_run_id[:8]

    @property
    def runid8(self) -> str:
        return self.sim.acquisition_id[:8]

    @property
    def key(self) -> str:
        return f"{self.sim.flow_cell_id}_{self.prid8}"

    def pod5_path(self, batch: int) -> Path:
        fc = self.sim.flow_cell_id
        if self.layout == "barcoded":
            barcode = f"barcode{batch % 3 + 1:02d}"
            name = f"{fc}_pass_{barcode}_{self.prid8}_{self.runid8}_{batch}.pod5"
            return self.folder / "pod5_pass" / barcode / name
        return self.folder / "pod5" / f"{fc}_{self.prid8}_{self.runid8}_{batch}.pod5"

    @property
    def summary_path(self) -> Path:
        return self.folder / f"final_summary_{self.key}_{self.runid8}.txt"

    def sample_sheet(self, started: datetime.datetime) -> tuple[Path, str]:
        """The run's sample sheet, as MinKNOW names and writes it."""
        stamp = started.astimezone().strftime("%Y%m%d_%H%M")
        path = self.folder / f"sample_sheet_{self.sim.flow_cell_id}_{stamp}_{self.prid8}.csv"
        rows = "".join(
            f"{self.sim.flow_cell_id},{KIT},{self.sample},{GROUP},{barcode},{alias}\n"
            for barcode, alias in ALIASES.items()
        )
        return path, "flow_cell_id,kit,sample_id,experiment_id,barcode,alias\n" + rows

    @property
    def hash_path(self) -> Path:
        return self.folder / f"output_hash_{self.key}_{self.runid8}.csv"


def host_runs(root: Path, flow_cells: int, seed: int, started: datetime.datetime) -> list[HostRun]:
    """The runs of a simulated host: layouts in turn (current, barcoded, then two pooled)."""
    runs: list[HostRun] = []
    stamp = started.astimezone().strftime("%Y%m%d_%H%M")  # the host's local time, as MinKNOW
    for index in range(flow_cells):
        flow_cell = f"PAW{index + 1:05d}"
        sim = SimulatedRun.from_seed(flow_cell, seed * 1000 + index)
        layout = LAYOUTS[index % len(LAYOUTS)]
        if layout == "pooled":
            sample = f"pooled{index // len(LAYOUTS)}"
            folder = root / GROUP / sample
        else:
            sample = f"sample{index + 1}"
            device = DEVICES[index % len(DEVICES)]
            folder = (
                root / GROUP / sample / f"{stamp}_{device}_{flow_cell}_{sim.protocol_run_id[:8]}"
            )
        runs.append(HostRun(index, sim, folder, layout, sample))
    return runs


@dataclass
class _Open:
    handle: IO[bytes]
    staging: Path
    data: bytes
    bounds: list[int]


def write_host(args: argparse.Namespace) -> int:
    """Play a host under `args.dir`; 0 when every run is complete, 130 if interrupted."""
    try:
        from reactor.sim import pod5_files
    except ImportError:
        print(f"{PROG}: needs the pod5 library: pip install 'pod5-reactor[sim]'", file=sys.stderr)
        return 2
    root: Path = args.dir
    started = datetime.datetime.now(datetime.UTC)
    runs = host_runs(root, args.flow_cells, args.seed, started)
    for run in runs:
        if run.summary_path.exists() or any(run.pod5_path(b).exists() for b in range(args.files)):
            print(f"{PROG}: {run.folder} has this run's files already; use an empty root or "
                  "another --seed", file=sys.stderr)  # fmt: skip
            return 2
    steps: list[tuple[float, int, WriteStep]] = []
    for run in runs:
        offset = run.index * args.stagger
        for step in plan(args.files, args.interval, args.pieces, args.piece_interval,
                         args.concurrent):  # fmt: skip
            steps.append((offset + step.at_s, run.index, step))
    steps.sort()
    open_files: dict[tuple[int, int], _Open] = {}
    written = dict.fromkeys(range(len(runs)), 0)
    hashes: dict[int, list[Path]] = {run.index: [] for run in runs}
    began = time.monotonic()
    try:
        for at_s, index, step in steps:
            remaining = began + at_s - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            run = runs[index]
            key = (index, step.file_index)
            if run.layout == "barcoded" and step.file_index == 0 and step.piece_index == 0:
                run.folder.mkdir(parents=True, exist_ok=True)
                write_atomic(*run.sample_sheet(started))  # before its first file
            if step.piece_index == 0:
                identity = pod5_files.RunIdentity(
                    flow_cell_id=run.sim.flow_cell_id,
                    protocol_run_id=run.sim.protocol_run_id,
                    acquisition_id=run.sim.acquisition_id,
                    sample_id=run.sample,
                    experiment_name=GROUP,
                )
                data = pod5_files.pod5_bytes(
                    args.reads_per_file, file_seed(args.seed * 1000 + index, step.file_index),
                    run=identity,
                )  # fmt: skip
                tmp = run.folder / "tmp"
                tmp.mkdir(parents=True, exist_ok=True)
                staging = tmp / run.pod5_path(step.file_index).name
                open_files[key] = _Open(
                    open(staging, "xb"),  # noqa: SIM115 - closed by the last piece
                    staging, data, piece_bounds(len(data), args.pieces),
                )  # fmt: skip
            current = open_files[key]
            begin, end = current.bounds[step.piece_index : step.piece_index + 2]
            current.handle.write(current.data[begin:end])
            current.handle.flush()
            if step.piece_index == len(current.bounds) - 2:
                current.handle.close()
                del open_files[key]
                final = run.pod5_path(step.file_index)
                final.parent.mkdir(parents=True, exist_ok=True)
                current.staging.rename(final)  # moved into place whole, as MinKNOW does
                hashes[index].append(final)
                written[index] += 1
                if written[index] == args.files:
                    _finish(run, hashes[index], args.files, started)
                if not args.quiet:
                    print(f"{run.key} file {final.name}", flush=True)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted after {sum(written.values())} files", file=sys.stderr)
        return 130
    finally:
        for current in open_files.values():
            current.handle.close()
    for run in runs:
        if args.files == 0:
            _finish(run, [], 0, started)
    return 0


def _finish(run: HostRun, files: list[Path], count: int, started: datetime.datetime) -> None:
    """A run's end: `output_hash_*.csv` (the hash is empty for POD5 rows, as MinKNOW
    writes it), then `final_summary_*.txt`."""
    run.folder.mkdir(parents=True, exist_ok=True)
    header = (
        "runid,protocol_group_id,flow_cell_id,sample_id,file_hash,file_path,barcode,barcode_alias\n"
    )
    rows = "".join(
        f"{run.sim.acquisition_id},{GROUP},{run.sim.flow_cell_id},{run.sample},,"
        f"{path.relative_to(run.folder)},,\n"
        for path in files
    )
    write_atomic(run.hash_path, header + rows)
    stopped = datetime.datetime.now(datetime.UTC)
    write_atomic(run.summary_path, run.sim.summary_text(count, started, stopped))
