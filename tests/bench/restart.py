"""Trial 1 (restart) and 4 (memory).

For each size and share done: the floor (`scanfloor` in a subprocess: Popen to exit), then
`reactor serve` on the same folders, `repeats` times each, alternating, best of each kept:
Popen to the first batch (`/assignwork` polled until it hands out a file: the service
serves while its start-up scan goes on) and Popen to the first 200 of /readyz (the scan
done). The trial's job is removed afterwards, so the tree stays as it was built. Peak RSS
is the server's VmHWM at ready. Memory per tracked file: (VmRSS at ready with N files -
VmRSS at ready with none) / N, nothing done.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.bench.figures import Figure
from tests.bench.servers import reactor_serve, run_to_end
from tests.bench.trees import Tree, empty_tree

READY_TIMEOUT_S = 600.0
FLOOR_TIMEOUT_S = 600.0
TARGET_SIZE = 100_000
TARGET_READY_S = 2.0
TARGET_FLOOR_RATIO = 2.0  # ready, at TARGET_FLOOR_SIZES files
TARGET_FLOOR_SIZES = (100_000, 1_000_000)
TARGET_FIRST_BATCH_S = 1.0  # at TARGET_FIRST_BATCH_SIZE files
TARGET_FIRST_BATCH_SIZE = 1_000_000
TARGET_BYTES_PER_FILE = 256


@dataclass
class Start:
    ready_s: float
    first_batch_s: float
    memory: dict[str, int]
    recovered: dict[str, Any]


def start_server(tree: Tree, done: int, logs: Path, label: str) -> Start:
    tree.clean_input()
    tree.touch_leases()
    output = tree.output_dir(done)
    before = _job_entries(output)
    server = reactor_serve(tree.input_dir, output, logs / f"{label}.jsonl")
    try:
        ready_s = server.start(READY_TIMEOUT_S, first_batch=tree.files > 0)
    finally:
        server.stop()
        _remove_new(output, before)
    recovered = server.log_events("recovered")
    reconciled = server.log_events("reconciled")
    summary = dict(recovered[0]) if recovered else {}
    if reconciled:
        summary["reconcile_s"] = reconciled[0].get("duration_s")
    if server.exit_code != 0:
        msg = f"reactor serve exited with {server.exit_code}; see {server.log}"
        raise RuntimeError(msg)
    first_batch_s = server.first_batch_s if server.first_batch_s is not None else ready_s
    return Start(ready_s, first_batch_s, server.memory_at_ready, summary)


def _job_entries(output: Path) -> set[Path]:
    """What a trial's assignment adds to OUTPUTDIR: its TMPOUTPUT folder, its record."""
    found: set[Path] = set()
    for folder in (output, output / ".reactor" / "jobs"):
        if folder.is_dir():
            found.update(Path(entry.path) for entry in os.scandir(folder))
    return found


def _remove_new(output: Path, before: set[Path]) -> None:
    for path in _job_entries(output) - before:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def run(trees: list[Tree], data_dir: Path, logs: Path, repeats: int) -> tuple[list[Figure], Any]:
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    base = start_server(empty_tree(data_dir), 0, logs, "restart-empty")
    raw["empty"] = base.memory
    imports = min(
        (run_to_end(["-m", "tests.bench.imports"], FLOOR_TIMEOUT_S) for _ in range(repeats)),
        key=lambda f: f.wall_s,
    )
    raw["imports_s"] = imports.wall_s
    figures.append(
        Figure(
            "interpreter start + imports of reactor serve (no files)",
            imports.wall_s,
            "s",
            base.ready_s,
            "ready, empty folder",
        )
    )
    for tree in trees:
        for done in (0, 50):
            key = f"{tree.files}-{done}"
            floors, starts = [], []
            for attempt in range(repeats):
                folders = [str(tree.input_dir), str(tree.output_dir(done))]
                floor = run_to_end(["-m", "tests.bench.scanfloor", *folders], FLOOR_TIMEOUT_S)
                floors.append(floor)
                starts.append(start_server(tree, done, logs, f"restart-{key}-{attempt}"))
            best_floor = min(floors, key=lambda f: f.wall_s)
            best = min(starts, key=lambda s: s.ready_s)
            best = replace(best, first_batch_s=min(s.first_batch_s for s in starts))
            raw[key] = {
                "floor_s": [round(f.wall_s, 4) for f in floors],
                "ready_s": [round(s.ready_s, 4) for s in starts],
                "first_batch_s": [round(s.first_batch_s, 4) for s in starts],
                "memory_at_ready": best.memory,
                "floor_maxrss_bytes": best_floor.maxrss_bytes,
                "recovered": best.recovered,
            }
            figures += _restart_figures(
                tree, done, best, best_floor.wall_s, best_floor.maxrss_bytes
            )
    largest = max(trees, key=lambda t: t.files, default=None)
    if largest is not None and largest.files:
        figures.append(_memory_figure(largest, raw, base.memory))
    return figures, raw


def _restart_figures(
    tree: Tree, done: int, best: Start, floor_s: float, floor_rss: int
) -> list[Figure]:
    label = f"restart {tree.files:,} files, {done}% done, {tree.jobs} jobs"
    target, met = "", None
    if tree.files == TARGET_SIZE and done == 50:
        target = f"< {TARGET_READY_S:g} s and <= {TARGET_FLOOR_RATIO:g}x floor"
        met = best.ready_s < TARGET_READY_S and best.ready_s <= TARGET_FLOOR_RATIO * floor_s
    elif tree.files in TARGET_FLOOR_SIZES:
        target = f"<= {TARGET_FLOOR_RATIO:g}x floor"
        met = best.ready_s <= TARGET_FLOOR_RATIO * floor_s
    ready = Figure(
        f"{label}: ready", best.ready_s, "s", floor_s, "floor", target=target, met=met,
        detail={"recovered": best.recovered},
    )  # fmt: skip
    first_target, first_met = "", None
    if tree.files == TARGET_FIRST_BATCH_SIZE:
        first_target = f"< {TARGET_FIRST_BATCH_S:g} s"
        first_met = best.first_batch_s < TARGET_FIRST_BATCH_S
    first = Figure(
        f"{label}: first batch", best.first_batch_s, "s", floor_s, "floor",
        target=first_target, met=first_met,
    )  # fmt: skip
    rss = Figure(
        f"{label}: peak RSS",
        best.memory.get("VmHWM", 0) / 2**20,
        "MiB",
        floor_rss / 2**20,
        "floor",
    )
    return [first, ready, rss]


def _memory_figure(tree: Tree, raw: dict[str, Any], empty: dict[str, int]) -> Figure:
    rss = raw[f"{tree.files}-0"]["memory_at_ready"].get("VmRSS", 0)
    per_file = (rss - empty.get("VmRSS", 0)) / tree.files
    return Figure(
        f"memory per tracked file at {tree.files:,} files",
        per_file,
        "B",
        target=f"<= {TARGET_BYTES_PER_FILE} B",
        met=per_file <= TARGET_BYTES_PER_FILE,
        detail={"rss_bytes": rss, "empty_rss_bytes": empty.get("VmRSS")},
    )
