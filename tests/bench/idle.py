"""Trial 8: what the service costs when nothing happens, how long its loop is held under
load, and how fast the command line starts.

- **Idle CPU with 64 engines waiting**: a real `reactor serve` on an empty run; its CPU
  (utime + stime from /proc) over `idle_s` with no client at all (the baseline, same
  run), then with 64 engines each holding `/assignwork?...&wait_s=60` and asking again
  as soon as answered, as `reactor engine` does while idle. Target: under 1 % of a core.
- **Loop lag under load**: `make load`'s driver (`tests.system.load`: engines asking,
  keeping alive and completing while files arrive) for `load_s` seconds; the p99 of the
  service's own loop-lag probe (`reactor_loop_lag_seconds`), beside its 10 ms target.
- **CLI start**: `reactor --help` and `reactor status` (against a port nothing listens
  on: it starts, fails to connect, says so), best of `runs`, beside the interpreter's
  own start (`python -c pass`), the floor. Target: under 150 ms.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench import client
from tests.bench.figures import Figure
from tests.bench.host import cpu_seconds
from tests.bench.servers import reactor_serve
from tests.support.launch import free_port
from tests.support.paths import REPO

WAITING_ENGINES = 64
WAIT_S = 60
READY_TIMEOUT_S = 60.0
IDLE_TARGET = 0.01  # of a core
CLI_TARGET_S = 0.150


async def _hold(url: str, engines: int, until: float, asked: list[int]) -> None:
    """`engines` long-polling engines until `until` (monotonic); `asked` counts requests."""
    connector = aiohttp.TCPConnector(limit=engines + 4)
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 30)  # a held request lasts up to WAIT_S
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def engine(k: int) -> None:
            while time.monotonic() < until:
                wait_s = max(min(WAIT_S, until - time.monotonic()), 0.1)
                await client.get_json(
                    http,
                    f"{url}/assignwork",
                    engineid=f"idle{k}",
                    batchsize=10,
                    wait_s=f"{wait_s:g}",
                )
                asked[0] += 1

        await asyncio.gather(*(engine(k) for k in range(engines)))


def idle_cpu(root: Path, logs: Path, idle_s: float) -> tuple[list[Figure], dict[str, Any]]:
    input_dir, output_dir = root / "input", root / "output"
    for folder in (input_dir, output_dir / "pass", output_dir / "fail"):
        folder.mkdir(parents=True, exist_ok=True)
    server = reactor_serve(input_dir, output_dir, logs / "idle.jsonl")
    server.start(READY_TIMEOUT_S)
    try:
        assert server.process is not None
        pid = server.process.pid
        time.sleep(1.0)  # start-up's own work (the first sweep, the scan) is over
        began, cpu = time.monotonic(), cpu_seconds(pid)
        time.sleep(idle_s)
        alone = (cpu_seconds(pid) - cpu) / (time.monotonic() - began)
        asked = [0]
        until = time.monotonic() + idle_s + 2.0

        async def measure() -> float:
            holding = asyncio.create_task(_hold(server.url, WAITING_ENGINES, until, asked))
            await asyncio.sleep(2.0)  # every engine connected and waiting
            began, cpu = time.monotonic(), cpu_seconds(pid)
            await asyncio.sleep(idle_s)
            share = (cpu_seconds(pid) - cpu) / (time.monotonic() - began)
            await holding
            return share

        waiting = asyncio.run(measure())
    finally:
        server.stop()
    raw = {"idle_s": idle_s, "alone": alone, "waiting": waiting, "requests": asked[0]}
    figure = Figure(
        f"idle CPU, {WAITING_ENGINES} engines waiting (long-poll)",
        100 * waiting,
        "% core",
        100 * alone,
        "no engine",
        compare="difference",
        target=f"< {100 * IDLE_TARGET:g} % of a core",
        met=waiting < IDLE_TARGET,
        detail={"requests": asked[0], "seconds": idle_s},
    )
    return [figure], raw


def loop_lag(root: Path, load_s: float, files: int) -> tuple[list[Figure], dict[str, Any]]:
    out = root / "load.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "tests.system.load", "--engines", "64",
            "--seconds", f"{load_s:g}", "--files", str(files), "--workdir", str(root / "load"),
            "--json", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=load_s + 180, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        msg = (
            f"the load driver failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}"
        )
        raise RuntimeError(msg)
    lag = json.loads(out.read_text())["loop_lag"]
    p99_ms = lag["p99_at_most_ms"]
    figure = Figure(
        f"event loop lag p99 under load (64 engines, {files:,} files, {load_s:g} s)",
        p99_ms,
        "ms",
        10.0,
        "target",
        target="< 10 ms (a histogram bucket bound)",
        met=bool(lag["met"]),
        detail={"samples": lag["samples"], "share_within_10ms": lag["share_within_target"]},
    )
    return [figure], lag


def _best_start_s(args: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(args, cwd=REPO, capture_output=True, timeout=60, check=False)
        best = min(best, time.perf_counter() - began)
    return best


def cli_start(runs: int) -> tuple[list[Figure], dict[str, Any]]:
    reactor = str(Path(sys.executable).with_name("reactor"))
    floor = _best_start_s([sys.executable, "-c", "pass"], runs)
    dead = f"http://127.0.0.1:{free_port()}"
    found = {
        "reactor --help": _best_start_s([reactor, "--help"], runs),
        "reactor status": _best_start_s([reactor, "status", "--url", dead], runs),
    }
    figures = [
        Figure(
            f"CLI start: {name}",
            1000 * seconds,
            "ms",
            1000 * floor,
            "python -c pass",
            compare="difference",
            target=f"< {1000 * CLI_TARGET_S:g} ms",
            met=seconds < CLI_TARGET_S,
        )
        for name, seconds in found.items()
    ]
    return figures, {"floor_s": floor, **found}


def run(
    data: Path, logs: Path, idle_s: float, load_s: float, load_files: int, cli_runs: int
) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=data, prefix="idle-") as folder:
        root = Path(folder)
        found, raw["idle"] = idle_cpu(root / "idle", logs, idle_s)
        figures += found
        found, raw["loop_lag"] = loop_lag(root, load_s, load_files)
        figures += found
    found, raw["cli"] = cli_start(cli_runs)
    figures += found
    return figures, raw
