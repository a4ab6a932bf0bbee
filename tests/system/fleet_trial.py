"""The fleet on a simulated run, against a fixed fleet: engines over time beside the backlog,
and the engine time each holds for the same run.

Starts a real single-node Slurm (tests/support/slurm.py: needs root, slurm-wlm and
munge), then twice the same run: a real `reactor serve` with a `[fleet]`, engines that
are real `reactor engine` processes in Slurm jobs, each batch taking `--batch-s` seconds
(the stand-in basecaller after a sleep, standing in for a GPU), and `.pod5` files
arriving in the shape of a run with a pause (`--shape`: seconds and files per second of
each phase). First the fleet as a lab would set it (0 to `--max-engines`, engines exit
after `--idle-s`), then a fixed fleet (`min_engines = max_engines`: always held).

Every half second it notes the files waiting (from /status) and the jobs running and
pending (from squeue itself); engine time held is the running jobs integrated over time,
from the first file until the last job has left the queue (the fleet) or the last file
is done (the fixed fleet, which holds its engines for as long as the run lasts). Each
run must end with every read exactly once.

    python -m tests.system.fleet_trial --json fleet-trial.json      (make fleet-trial)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.engine_run import Run
from tests.support.slurm import SlurmCluster, start_cluster

SAMPLE_S = 0.5
BATCH = 2


@dataclass
class Sample:
    at_s: float
    arrived: int
    waiting: int
    running: int
    pending: int


@dataclass
class Trial:
    label: str
    samples: list[Sample] = field(default_factory=list)
    files: int = 0
    last_arrival_s: float = 0.0
    all_done_s: float = 0.0
    released_s: float = 0.0  # the last engine job left the queue (fleet) / run done (fixed)
    fleet: dict[str, Any] = field(default_factory=dict)

    def engine_s(self, until_s: float) -> float:
        held = 0.0
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            if before.at_s >= until_s:
                break
            held += before.running * (min(after.at_s, until_s) - before.at_s)
        return held

    @property
    def peak(self) -> int:
        return max((s.running + s.pending for s in self.samples), default=0)


def _shape(text: str) -> list[tuple[float, float]]:
    phases = []
    for part in text.split(","):
        seconds, rate = part.split(":")
        phases.append((float(seconds), float(rate)))
    return phases


def _engine_command(run: Run, batch_s: float) -> str:
    command = (
        f'sh -c \'sleep {batch_s:g}; exec "$0" -m reactor fake-basecaller "$1" "$2"\' '
        "{python} {input_dir} {output_dir}"
    )
    return shlex.join(
        [
            sys.executable, "-m", "reactor", "engine",
            "--input-dir", str(run.input_dir), "--output-dir", str(run.output_dir),
            "--command", command, "--log-format", "json",
        ]
    )  # fmt: skip


def one_trial(
    cluster: SlurmCluster, root: Path, label: str, args: argparse.Namespace, fixed: bool
) -> Trial:
    root.mkdir(parents=True)
    run = Run(root)
    run.settings = {**Run.settings, "batch_size": BATCH, "report_back_interval": 30.0}
    name = f"reactor-trial-{label}"
    fleet = {
        "manager_url": run.url,
        "engine_command": _engine_command(run, args.batch_s),
        "name": name,
        "min_engines": args.max_engines if fixed else 0,
        "max_engines": args.max_engines,
        "idle_s": 3600 if fixed else args.idle_s,
        "catch_up_s": args.catch_up_s,
        "check_interval": 1,
        "time_limit": "30",
        "log_dir": str(root / "job-logs"),
    }
    (root / "job-logs").mkdir()
    saved = dict(os.environ)
    os.environ["SLURM_CONF"] = str(cluster.conf)
    for key, value in fleet.items():
        os.environ[f"REACTOR_FLEET_{key.upper()}"] = str(value)
    trial = Trial(label)
    stop = threading.Event()
    began = time.monotonic()
    arrived = [0]

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            jobs = cluster.jobs(name)
            try:
                waiting = run.status()["files"].get("ready", 0)
            except OSError:
                continue
            trial.samples.append(
                Sample(
                    round(time.monotonic() - began, 2),
                    arrived[0],
                    waiting,
                    sum(state == "RUNNING" for state in jobs.values()),
                    sum(state == "PENDING" for state in jobs.values()),
                )
            )

    try:
        run.start_server()
        sampler = threading.Thread(target=sample, daemon=True)
        began = time.monotonic()
        sampler.start()
        clock = 0.0
        for seconds, rate in _shape(args.shape):
            phase_end = clock + seconds
            if rate > 0:
                step = 1.0 / rate
                while clock < phase_end - 1e-9:
                    delay = began + clock - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    run.add_files(1)
                    arrived[0] += 1
                    clock += step
            clock = phase_end
        trial.last_arrival_s = time.monotonic() - began
        trial.files = arrived[0]
        _wait(run.all_done, args.timeout_s, "all files done")
        trial.all_done_s = time.monotonic() - began
        if not fixed:
            _wait(lambda: not cluster.jobs(name), args.timeout_s, "the fleet back to zero")
        trial.released_s = time.monotonic() - began
        trial.fleet = run.status()["fleet"]
        stop.set()
        sampler.join(timeout=10)
        run.assert_exactly_once()
    finally:
        stop.set()
        run.stop()
        cluster.cancel_all(name)
        os.environ.clear()
        os.environ.update(saved)
    return trial


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            msg = f"not within {timeout_s:g} s: {what}"
            raise RuntimeError(msg)
        time.sleep(0.2)


def timeline(trial: Trial, every_s: float) -> list[str]:
    rows = ["|   t (s) | files arrived | waiting | engines running | pending |", "|" + "---|" * 5]
    next_at = 0.0
    for s in trial.samples:
        if s.at_s + 1e-9 >= next_at:
            cells = (f"{s.at_s:7.0f}", f"{s.arrived:13}", f"{s.waiting:7}", f"{s.running:15}")
            rows.append(f"| {' | '.join(cells)} | {s.pending:7} |")
            next_at += every_s
    return rows


def report(fleet: Trial, fixed: Trial, args: argparse.Namespace) -> dict[str, Any]:
    fleet_s = fleet.engine_s(fleet.released_s)
    fixed_s = fixed.engine_s(fixed.released_s)
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "fleet": {
            "files": fleet.files,
            "last_arrival_s": round(fleet.last_arrival_s, 1),
            "all_done_s": round(fleet.all_done_s, 1),
            "drain_after_last_arrival_s": round(fleet.all_done_s - fleet.last_arrival_s, 1),
            "engine_s_held": round(fleet_s, 1),
            "peak_jobs": fleet.peak,
            "submitted": fleet.fleet.get("submitted"),
            "cancelled": fleet.fleet.get("cancelled"),
        },
        "fixed": {
            "files": fixed.files,
            "all_done_s": round(fixed.all_done_s, 1),
            "drain_after_last_arrival_s": round(fixed.all_done_s - fixed.last_arrival_s, 1),
            "engine_s_held": round(fixed_s, 1),
            "peak_jobs": fixed.peak,
        },
        "engine_time_share": round(fleet_s / fixed_s, 3) if fixed_s else None,
        "timeline": timeline(fleet, args.every_s),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.system.fleet_trial", description=__doc__)
    parser.add_argument(
        "--shape", default="30:3,60:0.4,40:0,20:2", help="seconds:files per second,..."
    )
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds per batch of 2 files")
    parser.add_argument("--max-engines", type=int, default=4)
    parser.add_argument("--idle-s", type=float, default=15.0)
    parser.add_argument(
        "--catch-up-s", type=float, default=30.0, help="the fleet's catch_up_s (time is compressed)"
    )
    parser.add_argument("--every-s", type=float, default=10.0, help="timeline row spacing")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    # SIGTERM (a killed trial) unwinds like Ctrl-C: the cluster and servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fleet-trial-") as folder:
        root = Path(folder)
        cluster = start_cluster(root / "slurm")
        try:
            fleet = one_trial(cluster, root / "fleet", "fleet", args, fixed=False)
            fixed = one_trial(cluster, root / "fixed", "fixed", args, fixed=True)
        finally:
            cluster.stop()
    result = report(fleet, fixed, args)
    print("\n".join(result["timeline"]))
    f, x = result["fleet"], result["fixed"]
    print(
        f"\n{f['files']} files. Fleet (0-{args.max_engines}, idle {args.idle_s:g} s): "
        f"done {f['drain_after_last_arrival_s']} s after the last file, "
        f"{f['engine_s_held']} engine-s held, peak {f['peak_jobs']} jobs, "
        f"{f['submitted']} submitted, {f['cancelled']} cancelled.\n"
        f"Fixed fleet of {args.max_engines}: done {x['drain_after_last_arrival_s']} s after "
        f"the last file, {x['engine_s_held']} engine-s held.\n"
        f"The fleet held {100 * (result['engine_time_share'] or 0):.0f} % of the fixed "
        "fleet's engine time."
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
