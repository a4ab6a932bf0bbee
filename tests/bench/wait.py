"""Trial 7: long-poll beside polling, with real engines.

Each figure is measured for a reference engine (`reactor engine`) asking with long-poll
(`wait_for_work`, its default) beside one that polls as before (`--wait-for-work 0`:
`poll_interval`, doubling to `max_poll_interval` while idle; their defaults), the
baseline. Every process is real and on loopback: a `reactor serve` of its own for each
engine, started as `tests.bench.servers` starts them.

- **New file to command started**, p50 and p99: complete `.pod5` files (hard links of one
  made by `reactor.sim.pod5_files`) are renamed into both servers' INPUTDIRs at once, one
  at a time: each `gap` seconds (seeded, between `gap_s`) after the previous file was done
  on both servers, so both engines are idle and the polling one has backed off. The
  engines' command (`tests/bench/stamp.py`, run with `{python} -S`) appends its start,
  `time.monotonic()`, and its batch's file names to a log, then runs the `fake` preset's
  command so the batch completes. CLOCK_MONOTONIC is one clock for all processes on
  Linux: the latency is that start minus the time noted just before the rename. Waiting
  for each file is bounded (`DRAIN_S`); a file not started by then counts as missing.
- **`/assignwork` requests per idle engine per minute**: with no file at all, one more
  engine of each kind, each on a server of its own, over its first `idle_s` seconds
  (from its start, so a polling engine's backing off is in the count). Counted by the
  server, not the engine: the requests it answered (`reactor_request_seconds_count` of
  the route in `/metrics`) plus the one it holds (`engines_waiting` in `/status`).

Both halves run at the same time (four servers, four engines, all idle between the
arrivals), so the trial takes about as long as the longer half.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from reactor.settings.engine import EngineConfig
from reactor.settings.templates import PRESETS
from reactor.sim.pod5_files import pod5_bytes
from tests.bench.figures import Figure
from tests.bench.servers import Served, reactor_serve
from tests.support.launch import fetch_json
from tests.support.paths import REPO
from tests.support.stats import percentile

STAMP = REPO / "tests" / "bench" / "stamp.py"
READY_TIMEOUT_S = 60.0  # a server ready, an engine's first request in
DRAIN_S = 60.0  # bound on one file reaching both engines and being done (> max_poll_interval)
CONDITION_POLL_S = 0.05
SAMPLE_S = 0.5  # how often the idle servers' counts are read
ENGINE_STOP_S = 10.0
ASSIGNWORK_COUNT = 'reactor_request_seconds_count{route="/assignwork"}'
# The engines' settings under test, with today's defaults: the long-poll engine runs on
# them, the polling one with wait_for_work 0.
ENGINE_DEFAULTS = {
    f.name: f.default for f in fields(EngineConfig) if f.name.endswith(("_interval", "_for_work"))
}
MODES = {"long-poll": None, "polling": 0.0}  # mode -> --wait-for-work (None: the default)


@dataclass(frozen=True)
class Shape:
    """The trial's size: files and the gaps before them, the idle engines' window."""

    files: int = 12
    gap_s: tuple[float, float] = (2.0, 20.0)
    idle_s: float = 120.0
    seed: int = 1


@dataclass
class Engine:
    """A `reactor engine` process with its own server and run folder."""

    mode: str
    server: Served
    input_dir: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self, output_dir: Path, stamps: Path, log: Path) -> None:
        command = shlex.join(["{python}", "-S", str(STAMP), str(stamps), "{input_dir}"])
        args = [
            sys.executable, "-m", "reactor", "engine",
            "--manager", self.server.url,
            "--engine-id", f"bench-{self.mode}",
            "--input-dir", str(self.input_dir),
            "--output-dir", str(output_dir),
            "--command", f"{command} {PRESETS['fake'].command}",
            "--log-format", "json",
        ]  # fmt: skip
        wait_s = MODES[self.mode]
        if wait_s is not None:
            args += ["--wait-for-work", f"{wait_s:g}"]
        # The settings under test are the defaults: none may come from this environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_ENGINE_")}
        with log.open("ab") as out:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )

    def stop(self) -> None:
        """SIGTERM (an idle engine exits at once, a held request given up), SIGKILL after
        ENGINE_STOP_S."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=ENGINE_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _metrics_count(url: str, line_start: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # noqa: S310 - ours
        text: str = reply.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return int(float(line.split()[-1]))
    return 0


def asked(server: Served) -> int:
    """`/assignwork` requests the server has had: answered, plus those it holds now. The
    held ones are read first: one answered between the two reads is counted twice for an
    instant (its engine asks again at once) rather than missed."""
    status = fetch_json(f"{server.url}/status")
    if status is None:
        msg = f"no /status from {server.url}; see {server.log}"
        raise RuntimeError(msg)
    return int(status["engines_waiting"]) + _metrics_count(server.url, ASSIGNWORK_COUNT)


def files_done(server: Served) -> int:
    status = fetch_json(f"{server.url}/status")
    return -1 if status is None else int(status["files"]["done"])


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `condition()` every CONDITION_POLL_S until true (True) or `timeout_s` (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(CONDITION_POLL_S)
    return True


def _all_done(engines: list[Engine], count: int) -> bool:
    return all(files_done(e.server) >= count for e in engines)


def _started(engine: Engine) -> bool:
    assert engine.process is not None
    if engine.process.poll() is not None:
        msg = f"the {engine.mode} engine exited with {engine.process.returncode}"
        raise RuntimeError(msg)
    if engine.mode == "long-poll":  # its first request is held
        status = fetch_json(f"{engine.server.url}/status")
        return status is not None and status["engines_waiting"] == 1
    return asked(engine.server) >= 1


@dataclass
class _Run:
    """Servers and engines of the trial, stopped (on `stack`, in reverse order) whatever
    happens."""

    root: Path
    logs: Path
    stack: contextlib.ExitStack

    def engine(self, half: str, mode: str) -> Engine:
        folder = self.root / half / mode
        input_dir, output_dir = folder / "input", folder / "output"
        for made in (input_dir, output_dir / "pass", output_dir / "fail", folder / "staging"):
            made.mkdir(parents=True)
        label = f"wait-{half}-{mode}"
        server = reactor_serve(input_dir, output_dir, self.logs / f"{label}-serve.jsonl")
        self.stack.callback(server.stop)
        server.start(READY_TIMEOUT_S)
        engine = Engine(mode, server, input_dir)
        self.stack.callback(engine.stop)
        engine.start(output_dir, folder / "stamps.jsonl", self.logs / f"{label}-engine.jsonl")
        return engine


def _idle_counts(
    engines: list[Engine], idle_s: float, stop: threading.Event, out: dict[str, Any]
) -> None:
    """Each engine's requests over its first `idle_s` seconds, read every SAMPLE_S (and
    the times, from the engine's start, at which the count went up) into `out`."""
    try:
        seen = {e.mode: 0 for e in engines}
        asked_at: dict[str, list[float]] = {e.mode: [] for e in engines}
        pending = list(engines)
        while pending and not stop.is_set():
            for engine in list(pending):
                since = time.monotonic() - engine.started_at
                count = asked(engine.server)
                asked_at[engine.mode] += [round(since, 1)] * (count - seen[engine.mode])
                seen[engine.mode] = max(count, seen[engine.mode])
                if since >= idle_s:
                    pending.remove(engine)
            ends = [e.started_at + idle_s for e in pending]
            if ends:
                stop.wait(max(0.0, min(SAMPLE_S, min(ends) - time.monotonic())))
        for engine in engines:
            out[engine.mode] = {
                "requests": seen[engine.mode],
                "per_minute": seen[engine.mode] / idle_s * 60,
                "asked_at_s": asked_at[engine.mode],
            }
    except Exception as exc:  # handed to the main thread, which raises it
        out["error"] = exc


def _stamps(path: Path) -> dict[str, float]:
    """File name -> when the command of its batch started (the first, if it ran twice)."""
    found: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            for name in entry["files"]:
                found.setdefault(name, entry["at"])
    return found


def _arrivals(engines: list[Engine], source: Path, shape: Shape) -> dict[str, Any]:
    """The files, one after another; each mode's latencies (ms) and missing files."""
    rng = random.Random(shape.seed)
    gaps = [rng.uniform(*shape.gap_s) for _ in range(shape.files)]
    names = [f"PAK00000_pass_wait0000_0123abcd_{k}.pod5" for k in range(shape.files)]
    renamed: dict[str, dict[str, float]] = {e.mode: {} for e in engines}
    for engine in engines:
        for name in names:
            os.link(source, engine.input_dir.parent / "staging" / name)
    for k, (name, gap) in enumerate(zip(names, gaps, strict=True)):
        time.sleep(gap)  # the workload: both engines idle this long
        for engine in engines:
            at = time.monotonic()
            (engine.input_dir.parent / "staging" / name).rename(engine.input_dir / name)
            renamed[engine.mode][name] = at
        _until(functools.partial(_all_done, engines, k + 1), DRAIN_S)
    result: dict[str, Any] = {"gaps_s": [round(g, 2) for g in gaps]}
    for engine in engines:
        started = _stamps(engine.input_dir.parent / "stamps.jsonl")
        latencies = {n: (started[n] - at) * 1000 for n, at in renamed[engine.mode].items()
                     if n in started}  # fmt: skip
        ordered = sorted(latencies.values())
        result[engine.mode] = {
            "files": len(names),
            "missing": len(names) - len(latencies),
            "done": files_done(engine.server),
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
            "max_ms": ordered[-1] if ordered else None,
            "latencies_ms": [round(latencies[n], 1) if n in latencies else None for n in names],
        }
    return result


def run(work: Path, logs: Path, shape: Shape) -> tuple[list[Figure], dict[str, Any]]:
    root = work / "wait"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = root / "source.pod5"
    source.write_bytes(pod5_bytes(2, seed=1))
    raw: dict[str, Any] = {"shape": asdict(shape), "engine_defaults": ENGINE_DEFAULTS}
    idle: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        processes = _Run(root, logs, stack)
        busy = [processes.engine("busy", mode) for mode in MODES]
        quiet = [processes.engine("idle", mode) for mode in MODES]
        if not _until(lambda: all(_started(e) for e in busy + quiet), READY_TIMEOUT_S):
            msg = f"an engine did not ask for work within {READY_TIMEOUT_S:g} s; see {logs}"
            raise RuntimeError(msg)
        stop = threading.Event()
        counter = threading.Thread(
            target=_idle_counts, args=(quiet, shape.idle_s, stop, idle), name="bench-wait-idle"
        )
        counter.start()
        try:
            raw["latency"] = _arrivals(busy, source, shape)
        except BaseException:
            stop.set()  # no count is wanted now: stop at once
            raise
        finally:
            counter.join()
    if "error" in idle:
        msg = f"counting the idle engines' requests failed: {idle['error']}"
        raise RuntimeError(msg)
    raw["idle"] = idle
    return _figures(raw, shape), raw


def _figures(raw: dict[str, Any], shape: Shape) -> list[Figure]:
    latency, idle = raw["latency"], raw["idle"]
    lo, hi = shape.gap_s
    counts = {mode: {k: latency[mode][k] for k in ("missing", "done", "max_ms")} for mode in MODES}
    figures = [
        Figure(
            f"new file to command started {stat[:-3]}, long-poll "
            f"({shape.files} files, idle {lo:g}-{hi:g} s before each)",
            latency["long-poll"][stat],
            "ms",
            latency["polling"][stat],
            "polling",
            compare="difference",
            detail=counts,
        )
        for stat in ("p50_ms", "p99_ms")
    ]
    figures.append(
        Figure(
            f"/assignwork requests per idle engine per minute, long-poll "
            f"(first {shape.idle_s:g} s, counted by the server)",
            idle["long-poll"]["per_minute"],
            "/min",
            idle["polling"]["per_minute"],
            "polling",
            detail={mode: idle[mode]["requests"] for mode in MODES},
        )
    )
    return figures
