"""Trial 2: ingest latency, from the rename of a complete `.pod5` into INPUTDIR to the
moment `/assignwork` hands it out.

A thread renames hardlinks of a real `.pod5` from a staging folder (same file system)
into INPUTDIR, noting `time.monotonic()` just before each rename: one every `idle_ms`
("idle"), or 1,000 a second ("loaded"). Meanwhile POLLERS engines ask `/assignwork`
(batch POLL_BATCH) back to back and note when each name comes back. Every file is
measured. The floor is the same arrivals watched by the same watchdog observer
(`reactor.serve.watcher.Watcher`) delivering to a bare callback (`tests.bench.watchfloor`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from reactor.sim.pod5_files import pod5_bytes
from tests.bench import client
from tests.bench.figures import Figure
from tests.bench.servers import reactor_serve
from tests.support.paths import REPO
from tests.support.stats import percentile

POLLERS = 2
POLL_BATCH = 100
LOADED_RATE = 1000  # files per second
DRAIN_S = 15.0  # bound on waiting for the last files after the last arrival
READY_TIMEOUT_S = 60.0
TARGET_P99_MS = 50.0
TARGET_OVER_FLOOR_MS = 10.0


class Arrivals(threading.Thread):
    """Renames `names` from `staging` into `input_dir`, one every `interval_s`."""

    def __init__(self, names: list[str], staging: Path, input_dir: Path, interval_s: float):
        super().__init__(name="bench-arrivals", daemon=True)
        self.names = names
        self.staging = staging
        self.input_dir = input_dir
        self.interval_s = interval_s
        self.renamed_at: dict[str, float] = {}

    def run(self) -> None:
        began = time.monotonic()
        for k, name in enumerate(self.names):
            delay = began + k * self.interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.monotonic()
            (self.staging / name).rename(self.input_dir / name)
            self.renamed_at[name] = at


def _run_folder(root: Path, names: list[str], source: Path) -> tuple[Path, Path, Path]:
    shutil.rmtree(root, ignore_errors=True)
    input_dir, output_dir, staging = root / "input", root / "output", root / "staging"
    for folder in (input_dir, output_dir / "pass", output_dir / "fail", staging):
        folder.mkdir(parents=True)
    for name in names:
        os.link(source, staging / name)
    return input_dir, output_dir, staging


def _latencies_ms(renamed: dict[str, float], seen: dict[str, float]) -> tuple[list[float], int]:
    found = sorted((seen[n] - at) * 1000 for n, at in renamed.items() if n in seen)
    return found, len(renamed) - len(found)


def floor_phase(root: Path, names: list[str], source: Path, interval_s: float) -> dict[str, Any]:
    input_dir, output_dir, staging = _run_folder(root, names, source)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.watchfloor", str(input_dir), str(output_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    assert watcher.stdin is not None and watcher.stdout is not None
    if watcher.stdout.readline().strip() != "ready":
        watcher.kill()
        msg = "the watchdog floor did not start"
        raise RuntimeError(msg)
    arrivals = Arrivals(names, staging, input_dir, interval_s)
    arrivals.run()
    time.sleep(0.5)  # the last events are in flight; the observer delivers in ~ms
    out, _ = watcher.communicate(input="", timeout=60)
    return _summary(*_latencies_ms(arrivals.renamed_at, json.loads(out.splitlines()[-1])))


async def _poll(url: str, names: set[str], handed: dict[str, float], until: list[float]) -> None:
    async with client.session(POLLERS) as http:

        async def poller(k: int) -> None:
            while len(handed) < len(names) and time.monotonic() < until[0]:
                work = await client.get_json(
                    http, f"{url}/assignwork", engineid=f"bench-ingest{k}", batchsize=POLL_BATCH
                )
                at = time.monotonic()
                for name in work["batch"]:
                    handed.setdefault(name, at)

        await asyncio.gather(*(poller(k) for k in range(POLLERS)))


def server_phase(
    root: Path, names: list[str], source: Path, interval_s: float, logs: Path, label: str
) -> dict[str, Any]:
    input_dir, output_dir, staging = _run_folder(root, names, source)
    server = reactor_serve(input_dir, output_dir, logs / f"{label}.jsonl")
    server.start(READY_TIMEOUT_S)
    try:
        arrivals = Arrivals(names, staging, input_dir, interval_s)
        handed: dict[str, float] = {}
        until = [time.monotonic() + len(names) * interval_s + DRAIN_S]
        arrivals.start()
        try:
            asyncio.run(_poll(server.url, set(names), handed, until))
        except (aiohttp.ClientError, RuntimeError) as exc:
            msg = f"ingest polling failed: {exc}"
            raise RuntimeError(msg) from exc
        finally:
            arrivals.join()
    finally:
        server.stop()
    return _summary(*_latencies_ms(arrivals.renamed_at, handed))


def _summary(latencies_ms: list[float], lost: int) -> dict[str, Any]:
    return {
        "files": len(latencies_ms) + lost,
        "missing": lost,
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": latencies_ms[-1] if latencies_ms else None,
    }


def run(work: Path, logs: Path, files: int, idle_ms: float) -> tuple[list[Figure], dict[str, Any]]:
    source = work / "ingest-source.pod5"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(pod5_bytes(2, seed=1))
    raw: dict[str, Any] = {}
    figures: list[Figure] = []
    for mode, interval_s in (("idle", idle_ms / 1000), ("loaded", 1 / LOADED_RATE)):
        names = [f"PAK00000_pass_ingest00_0123abcd_{mode}{k}.pod5" for k in range(files)]
        floor = floor_phase(work / f"ingest-floor-{mode}", names, source, interval_s)
        served = server_phase(
            work / f"ingest-serve-{mode}", names, source, interval_s, logs, f"ingest-{mode}"
        )
        raw[mode] = {"floor": floor, "reactor": served, "interval_ms": interval_s * 1000}
        rate = f"{1 / interval_s:,.0f} files/s"
        for stat in ("p50_ms", "p99_ms", "max_ms"):
            target, met = "", None
            if stat == "p99_ms" and served[stat] is not None and floor[stat] is not None:
                target = f"< {TARGET_P99_MS:g} ms and <= floor + {TARGET_OVER_FLOOR_MS:g} ms"
                met = (
                    served[stat] < TARGET_P99_MS
                    and served[stat] - floor[stat] <= TARGET_OVER_FLOOR_MS
                    and served["missing"] == 0
                )
            figures.append(
                Figure(
                    f"ingest {stat[:-3]}, {mode} ({rate}, {files:,} files)",
                    served[stat],
                    "ms",
                    floor[stat],
                    "floor",
                    compare="difference",
                    target=target,
                    met=met,
                    detail={"missing": served["missing"], "floor_missing": floor["missing"]},
                )
            )
    return figures, raw
