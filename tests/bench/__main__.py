"""`python -m tests.bench`: run the trials, print one table, write the figures as JSON."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench import (
    api,
    dashboard,
    durability,
    host,
    idle,
    ingest,
    qc,
    restart,
    throughput,
    trees,
    wait,
)
from tests.bench.figures import Figure, markdown, table
from tests.bench.figures import missed as figures_missed
from tests.support.paths import REPO

PROG = "python -m tests.bench"
PARTS = (
    "restart", "ingest", "api", "durability", "host", "qc", "wait", "throughput", "dashboard",
    "idle",
)  # fmt: skip
QUICK = {
    "sizes": [200, 2000],
    "api_sizes": [200, 2000],
    "jobs": 5,
    "repeats": 1,
    "ingest_files": 30,
    "ingest_idle_ms": 5.0,
    "ingest_rounds": 1,
    "requests": 40,
    "cell_seconds": 1.0,
    "files_per_cell": 40,
    "concurrency": [2, 8],
    "rounds": 1,
    "host": [4, 20, 50, 3],
    "host_polling": [400, 1.0, 0.25],
    "stage_files": 2,
    "qc_mb": 20,
    "qc_repeats": 1,
    "wait_files": 3,
    "wait_gap_s": [0.5, 1.5],
    "wait_idle_s": 5.0,
    "dashboard": [8, 40, 50, 20, 30],
    "dashboard_window_s": 2.0,
    "idle_s": 1.0,
    "load_s": 2.0,
    "load_files": 100,
    "cli_runs": 1,
    "thru_files": 40,
    "thru_engines": [8],
    "thru_rounds": 1,
    "thru_settle_s": 0.2,
    "thru_fresh_fs": False,
}


def _numbers(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part]
    except ValueError:
        msg = f"expected whole numbers separated by commas, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values or min(values) < 1:
        msg = f"expected numbers of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _gap(text: str) -> list[float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        msg = f"expected two numbers of seconds, MIN,MAX, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 < low <= high:
        msg = f"expected 0 < MIN <= MAX, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return [low, high]


def _parts(text: str) -> list[str]:
    parts = [part for part in text.split(",") if part]
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        msg = f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}"
        raise argparse.ArgumentTypeError(msg)
    return parts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").strip())
    p.add_argument(
        "--parts",
        type=_parts,
        default=list(PARTS),
        help="restart,ingest,api,durability,host,qc,wait,throughput,dashboard,idle (all)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: check the harness only")
    p.add_argument("--sizes", type=_numbers, help="restart: files (10000,100000,1000000)")
    p.add_argument("--api-sizes", type=_numbers, help="API: files queued (10000,1000000)")
    p.add_argument("--jobs", type=int, help="jobs in flight in each tree (300)")
    p.add_argument("--repeats", type=int, help="restart: runs of floor and server, best kept (2)")
    p.add_argument("--ingest-files", type=int, help="ingest: files measured per phase (1000)")
    p.add_argument("--ingest-idle-ms", type=float, help="ingest: ms between idle arrivals (10)")
    p.add_argument(
        "--ingest-rounds", type=int, help="ingest: rounds of the three phases, median kept (3)"
    )
    p.add_argument("--requests", type=int, help="API: requests per cell at most (2000)")
    p.add_argument("--cell-seconds", type=float, help="API: seconds per cell at most (3)")
    p.add_argument("--files-per-cell", type=int, help="API: files an assign cell takes (5000)")
    p.add_argument("--concurrency", type=_numbers, help="API: clients (8,32,128)")
    p.add_argument("--rounds", type=int, help="API: rounds of every cell, median kept (3)")
    p.add_argument(
        "--host",
        type=_numbers,
        help="host: live runs, files each, finished runs, new runs timed (48,500,2000,20)",
    )
    p.add_argument("--qc-mb", type=int, help="qc: MB of each input format (1000)")
    p.add_argument("--qc-repeats", type=int, help="qc: runs of each floor and count, best kept (3)")
    p.add_argument("--wait-files", type=int, help="wait: files arriving at idle engines (12)")
    p.add_argument(
        "--wait-gap-s", type=_gap, help="wait: seconds idle before each file, MIN,MAX (2,20)"
    )
    p.add_argument("--wait-idle-s", type=float, help="wait: seconds requests are counted (120)")
    p.add_argument("--idle-s", type=float, help="idle: seconds of CPU measured each way (30)")
    p.add_argument("--load-s", type=float, help="idle: seconds of load for the loop lag (20)")
    p.add_argument("--load-files", type=int, help="idle: files arriving during the load (5000)")
    p.add_argument("--cli-runs", type=int, help="idle: starts of each command, best kept (5)")
    p.add_argument(
        "--dashboard",
        type=_numbers,
        help="dashboard: live runs, files each, finished runs, viewers, live jobs "
        "(48,500,2000,20,300)",
    )
    p.add_argument(
        "--dashboard-window-s", type=float, help="dashboard: seconds each CPU window lasts (30)"
    )
    p.add_argument("--thru-files", type=int, help="throughput: files of the run (5000)")
    p.add_argument("--thru-engines", type=_numbers, help="throughput: engines (8,32)")
    p.add_argument("--thru-rounds", type=int, help="throughput: rounds, median kept (3)")
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("BENCH_DATA", REPO / ".venv" / "bench-data")),
        help="where the cached trees live ($BENCH_DATA or .venv/bench-data)",
    )
    p.add_argument("--fresh", action="store_true", help="rebuild the cached trees")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    return p


def settings(args: argparse.Namespace) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "sizes": [10_000, 100_000, 1_000_000],
        "api_sizes": [10_000, 1_000_000],
        "jobs": 300,
        "repeats": 2,
        "ingest_files": 1000,
        "ingest_idle_ms": 10.0,
        "ingest_rounds": 3,
        "requests": 2000,
        "cell_seconds": 3.0,
        "files_per_cell": 5000,
        "concurrency": list(api.CONCURRENCY),
        "rounds": 3,
        "host": [48, 500, 2000, 20],
        "host_polling": [100_000, 20.0, 2.0],
        "stage_files": 20,
        "qc_mb": 1000,
        "qc_repeats": 3,
        "wait_files": 12,
        "wait_gap_s": [2.0, 20.0],
        "wait_idle_s": 120.0,
        "dashboard": [48, 500, 2000, 20, 300],
        "dashboard_window_s": 30.0,
        "idle_s": 30.0,
        "load_s": 20.0,
        "load_files": 5000,
        "cli_runs": 5,
        "thru_files": 5000,
        "thru_engines": list(throughput.ENGINES),
        "thru_rounds": 3,
        "thru_settle_s": 2.0,
        "thru_fresh_fs": True,
    }
    if args.quick:
        defaults.update(QUICK)
    return {key: default if getattr(args, key, None) is None else getattr(args, key)
            for key, default in defaults.items()}  # fmt: skip


def _api_settings(chosen: dict[str, Any]) -> api.Settings:
    return api.Settings(
        concurrency=tuple(chosen["concurrency"]),
        requests=chosen["requests"],
        seconds=chosen["cell_seconds"],
        files_per_cell=chosen["files_per_cell"],
        rounds=chosen["rounds"],
    )


def run(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    chosen = settings(args)
    data = args.data.absolute()
    if args.quick:
        data = data / "quick"
    logs = data / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    print(f"{PROG}: parts {','.join(args.parts)}; data in {data}", file=sys.stderr)
    # Every start is timed as installed: with its bytecode (pip writes it; a source tree
    # run with PYTHONDONTWRITEBYTECODE would compile each changed module at every start).
    compileall.compile_dir(REPO / "reactor", quiet=1)
    compileall.compile_dir(REPO / "tests" / "bench", quiet=1)
    figures: list[Figure] = []
    raw: dict[str, Any] = {"settings": chosen}
    timings: dict[str, float] = {}
    sizes = sorted(
        set(chosen["sizes"] if "restart" in args.parts else [])
        | set(chosen["api_sizes"] if "api" in args.parts else [])
    )
    step = time.perf_counter()
    built = {n: trees.build(data, n, chosen["jobs"], fresh=args.fresh) for n in sizes}
    timings["build_s"] = time.perf_counter() - step
    try:
        if "restart" in args.parts:
            step = time.perf_counter()
            chosen_trees = [built[n] for n in chosen["sizes"]]
            found, raw["restart"] = restart.run(chosen_trees, data, logs, chosen["repeats"])
            figures += found
            timings["restart_s"] = time.perf_counter() - step
        if "ingest" in args.parts:
            step = time.perf_counter()
            found, raw["ingest"] = ingest.run(
                data,
                logs,
                chosen["ingest_files"],
                chosen["ingest_idle_ms"],
                chosen["ingest_rounds"],
            )
            figures += found
            timings["ingest_s"] = time.perf_counter() - step
        if "api" in args.parts:
            step = time.perf_counter()
            api_settings = _api_settings(chosen)
            api_trees = [built[n] for n in chosen["api_sizes"]]
            found, raw["api"] = api.run(api_trees, data, logs, api_settings)
            figures += found
            timings["api_s"] = time.perf_counter() - step
        if "durability" in args.parts:
            step = time.perf_counter()
            found, raw["durability"] = durability.run(data, data, logs, _api_settings(chosen))
            figures += found
            timings["durability_s"] = time.perf_counter() - step
        if "host" in args.parts:
            step = time.perf_counter()
            shape = host.Shape(*chosen["host"])
            found, raw["host"] = host.run(data, logs, shape)
            figures += found
            polling = host.Polling(*chosen["host_polling"])
            found, raw["host_polling"] = host.polling(data, logs, shape.live, polling)
            figures += found
            found, raw["host_staging"] = host.staging(data, chosen["stage_files"])
            figures += found
            timings["host_s"] = time.perf_counter() - step
        if "qc" in args.parts:
            step = time.perf_counter()
            found, raw["qc"] = qc.run(data, chosen["qc_mb"], chosen["qc_repeats"], fresh=args.fresh)
            figures += found
            timings["qc_s"] = time.perf_counter() - step
        if "wait" in args.parts:
            step = time.perf_counter()
            low, high = chosen["wait_gap_s"]
            arrivals = wait.Shape(chosen["wait_files"], (low, high), chosen["wait_idle_s"])
            found, raw["wait"] = wait.run(data, logs, arrivals)
            figures += found
            timings["wait_s"] = time.perf_counter() - step
        if "dashboard" in args.parts:
            step = time.perf_counter()
            shape = dashboard.Shape(*chosen["dashboard"], window_s=chosen["dashboard_window_s"])
            found, raw["dashboard"] = dashboard.run(data, logs, shape)
            figures += found
            timings["dashboard_s"] = time.perf_counter() - step
        if "idle" in args.parts:
            step = time.perf_counter()
            found, raw["idle"] = idle.run(
                data,
                logs,
                chosen["idle_s"],
                chosen["load_s"],
                chosen["load_files"],
                chosen["cli_runs"],
            )
            figures += found
            timings["idle_s"] = time.perf_counter() - step
        if "throughput" in args.parts:
            step = time.perf_counter()
            shape = throughput.Settings(
                files=chosen["thru_files"],
                engines=tuple(chosen["thru_engines"]),
                rounds=chosen["thru_rounds"],
                settle_s=chosen["thru_settle_s"],
                fresh_fs=chosen["thru_fresh_fs"],
            )
            found, raw["throughput"] = throughput.run(data, logs, shape)
            figures += found
            timings["throughput_s"] = time.perf_counter() - step
    except RuntimeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    timings["total_s"] = time.perf_counter() - began
    print(table(figures))
    missed = [f.name for f in figures_missed(figures)]
    beyond = sum(f.met is False and bool(f.out_of_reach) for f in figures)
    print(
        f"\n{sum(f.met is True for f in figures)} targets met, {len(missed)} not met, "
        f"{beyond} out of reach on this machine; "
        f"{timings['total_s']:.0f} s in all "
        f"({', '.join(f'{k[:-2]} {v:.0f} s' for k, v in timings.items() if k != 'total_s')})"
    )
    if args.json:
        result = {
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "platform": platform.platform(),
            },
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "figures": [f.to_json() for f in figures],
            "markdown": markdown(figures),
            "raw": raw,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if args.strict and missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
