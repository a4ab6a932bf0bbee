"""Load: many engines at once against one real `reactor serve` while files arrive.

Runs, on loopback: `reactor serve` as a real process (short lease), a thread that makes
`--files` real `.pod5` files arrive in its input folder at a steady rate (all of them
within 80 % of `--seconds`), and `--engines` engines as asyncio tasks in this one process,
sharing one aiohttp session. Each engine speaks the seed protocol: `/assignwork`
(batchsize 1-10), one `/keepalive` per job, a stand-in "basecall" that writes one small
FASTQ per file into the job's `pass/` (no pod5 reading: this measures the manager, not a
basecaller), then `/completed` with DONE. Every request is timed (`time.perf_counter`
around the request and its body) and filed under its verb.

The run is bounded: engines stop asking for work at `--seconds`; their jobs in hand are
let finish (at most `--drain-seconds`); then `/status` is polled (at most
`--drain-seconds`) until every file that arrived is done; then the server gets SIGTERM.
The proof is per FILE (the copies share read ids, so reads cannot tell them apart): each
file that arrived is listed by exactly one DONE job's record (`.reactor/jobs/`), and
its FASTQ is in `pass/` exactly once.

    python -m tests.system.load --engines 64 --seconds 60 --files 10000 --json load.json

Exit code 0 only if there was no error answer (non-2xx or exception), no file lost, none
duplicated, every file arrived and the server stopped cleanly. Latencies are measured from
the client, so they include this process's own event-loop delays (64 engines and the
arrival thread share one interpreter with each other, and the machine with the server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from tests.support.launch import free_port, serve_args
from tests.support.records import job_records
from tests.support.stand_in import basecall
from tests.support.stats import percentile

PROG = "python -m tests.system.load"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
ARRIVAL_SHARE = 0.8  # every file has arrived by this share of --seconds
DISTINCT_FILES = 8  # distinct .pod5 contents, copied under new names
ENGINE_VERBS = ("assignwork", "keepalive", "completed")
ERROR_SAMPLES = 10
OUTPUT_NAME = re.compile(r"^job_id_\d+_(?P<stem>.+)\.fastq$")
ROW_LABELS = {"assignwork:batch": "  with a batch", "assignwork:empty": "  empty"}
LEASE_S = 10.0
SERVE_SETTINGS = {
    "report_back_interval": LEASE_S,
    "sweep_interval": 1,
    "settle_seconds": 2,
    "log_level": "warning",
    "log_format": "json",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", type=_positive(int), default=64, help="engines (64)")
    parser.add_argument(
        "--seconds", type=_positive(float), default=60.0, help="engines ask for work this long (60)"
    )
    parser.add_argument(
        "--files", type=_positive(int), default=10_000, help=".pod5 files that arrive (10000)"
    )
    parser.add_argument("--reads-per-file", type=_positive(int), default=2, help="(2)")
    parser.add_argument(
        "--drain-seconds",
        type=_positive(float),
        default=30.0,
        help="bound of each wait after --seconds: jobs in hand, then /status (30)",
    )
    parser.add_argument(
        "--idle-poll-ms",
        type=_positive(float),
        default=100.0,
        help="mean pause of an engine after an empty /assignwork, jittered +-50%% (100)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the batch sizes (1)")
    parser.add_argument(
        "--durability",
        choices=("fsync", "none"),
        default="fsync",
        help="the server's durability setting (fsync, its default)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="run folder, kept (default: a temporary one)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            msg = f"must be more than 0, not {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


# ------------------------------------------------------------------ figures


@dataclass
class VerbFigures:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "count": len(ordered),
            "errors": self.errors,
            "p50_ms": _ms(percentile(ordered, 50)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "max_ms": _ms(ordered[-1] if ordered else None),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@dataclass
class Figures:
    verbs: dict[str, VerbFigures] = field(
        default_factory=lambda: {
            verb: VerbFigures()
            for verb in (
                "assignwork",
                "assignwork:batch",
                "assignwork:empty",
                "keepalive",
                "completed",
                "status",
            )
        }
    )
    error_samples: list[str] = field(default_factory=list)
    jobs: int = 0
    late: int = 0
    engines_cancelled: int = 0

    def record(self, verb: str, elapsed_s: float, error: str | None) -> None:
        figures = self.verbs[verb]
        figures.latencies_s.append(elapsed_s)
        if error is not None:
            figures.errors += 1
            if len(self.error_samples) < ERROR_SAMPLES:
                self.error_samples.append(f"{verb}: {error}")


# ------------------------------------------------------------------ arrivals


class Arrivals(threading.Thread):
    """Copies a few distinct `.pod5` contents under new MinKNOW-style names, each written
    under a staging name and renamed into the input folder, at a steady rate."""

    def __init__(
        self, contents: list[bytes], input_dir: Path, staging: Path, files: int, span_s: float
    ) -> None:
        super().__init__(name="arrivals", daemon=True)
        self.contents = contents
        self.input_dir = input_dir
        self.staging = staging
        self.files = files
        self.interval_s = span_s / files
        self.stop = threading.Event()
        self.names: list[str] = []
        self.max_lag_s = 0.0
        self.error: str | None = None

    def run(self) -> None:
        began = time.monotonic()
        try:
            for i in range(self.files):
                delay = began + i * self.interval_s - time.monotonic()
                if self.stop.wait(max(delay, 0.0)):
                    return
                self.max_lag_s = max(self.max_lag_s, -delay)
                name = f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5"
                staged = self.staging / name
                staged.write_bytes(self.contents[i % len(self.contents)])
                staged.rename(self.input_dir / name)
                self.names.append(name)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ engines


class Load:
    def __init__(self, args: argparse.Namespace, root: Path, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.staging = root / "staging"
        self.logs = root / "logs"
        for folder in (self.input_dir, self.output_dir, self.staging, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.figures = Figures()
        self.server: subprocess.Popen[bytes] | None = None
        self.stop_at = math.inf

    def start_server(self) -> None:
        with (self.logs / "serve.log").open("wb") as log:
            self.server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    *serve_args(
                        self.input_dir,
                        self.output_dir,
                        self.port,
                        **SERVE_SETTINGS,
                        durability=self.args.durability,
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop_server(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; the exit code."""
        if self.server is None:
            return None
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
        try:
            return self.server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.server.kill()
            return self.server.wait(timeout=STOP_TIMEOUT_S)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.server is not None
            if self.server.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(f"{self.url}/readyz") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.1)
        msg = f"reactor serve did not become ready; see {self.logs / 'serve.log'}"
        raise RuntimeError(msg)

    async def call(
        self, session: aiohttp.ClientSession, verb: str, **params: str | int
    ) -> dict[str, Any] | None:
        """GET a verb, timed; None (and an error counted) on a non-2xx answer or exception."""
        began = time.perf_counter()
        error: str | None = None
        result: dict[str, Any] | None = None
        try:
            async with session.get(f"{self.url}/{verb}", params=params) as reply:
                body = await reply.read()
                if 200 <= reply.status < 300:
                    result = json.loads(body)
                else:
                    error = f"HTTP {reply.status} {body[:200]!r}"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - began
        self.figures.record(verb, elapsed, error)
        if verb == "assignwork" and result is not None:
            kind = "assignwork:batch" if result.get("batch") else "assignwork:empty"
            self.figures.record(kind, elapsed, None)
        return result

    async def engine(self, session: aiohttp.ClientSession, number: int) -> None:
        """One seed-protocol engine; asks for work until `stop_at`, then finishes its job."""
        engine_id = f"load-gpu{number:03d}"
        rng = random.Random(self.args.seed * 1_000_003 + number)
        idle_s = self.args.idle_poll_ms / 1000
        while time.monotonic() < self.stop_at:
            work = await self.call(
                session, "assignwork", engineid=engine_id, batchsize=rng.randint(1, 10)
            )
            if work is None or not work.get("batch"):
                pause = rng.uniform(0.5 * idle_s, 1.5 * idle_s)
                await asyncio.sleep(max(0.0, min(pause, self.stop_at - time.monotonic())))
                continue
            self.figures.jobs += 1
            job_id = str(work["jobid"])
            alive = await self.call(session, "keepalive", job_id=job_id, job_state="PROCESSING")
            if alive is not None and alive.get("late"):
                self.figures.late += 1
                continue
            basecall(self.output_dir / work["job_output_dir"], work["batch"])
            await self.call(session, "completed", job_id=job_id, job_state="DONE")

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        return await self.call(session, "status")

    async def progress(self, session: aiohttp.ClientSession, arrivals: Arrivals) -> None:
        """A /status poll every second (timed as a verb), a progress line every 5 s."""
        began = time.monotonic()
        tick = 0
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(max(0.0, min(1.0, self.stop_at - time.monotonic())))
            status = await self.status(session)
            tick += 1
            if status is not None and tick % 5 == 0:
                self._show(time.monotonic() - began, len(arrivals.names), status)

    def _show(self, elapsed_s: float, arrived: int, status: dict[str, Any]) -> None:
        files = status.get("files", {})
        self.out.write(
            f"{elapsed_s:6.1f}s  arrived {arrived:6d}  ready {files.get('ready', 0):5d}"
            f"  assigned {files.get('assigned', 0):4d}  done {files.get('done', 0):6d}"
            f"  live jobs {len(status.get('jobs', {}).get('live', [])):3d}\n"
        )
        self.out.flush()

    async def wait_all_done(self, session: aiohttp.ClientSession, arrived: int) -> dict[str, Any]:
        """Poll /status (at most --drain-seconds) until every file that arrived is done."""
        deadline = time.monotonic() + self.args.drain_seconds
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = await self.status(session) or status
            files = status.get("files", {})
            pending = sum(files.get(k, 0) for k in ("incomplete", "ready", "assigned"))
            if files.get("done", -1) >= arrived and pending == 0:
                break
            await asyncio.sleep(0.1)
        return status

    async def drive(self, arrivals: Arrivals) -> dict[str, Any]:
        """The engines' phase and the drain; returns timings and the last /status."""
        connector = aiohttp.TCPConnector(limit=self.args.engines + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await self.wait_ready(session)
            began = time.monotonic()
            self.stop_at = began + self.args.seconds
            arrivals.start()
            engines = [
                asyncio.create_task(self.engine(session, i)) for i in range(self.args.engines)
            ]
            progress = asyncio.create_task(self.progress(session, arrivals))
            # every engine stops asking at stop_at; its job in hand gets --drain-seconds
            bound = self.args.seconds + self.args.drain_seconds
            _, pending = await asyncio.wait([*engines, progress], timeout=bound)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.figures.engines_cancelled = sum(1 for task in engines if task in pending)
            for task in engines:
                if not task.cancelled() and task.exception() is not None:
                    self.figures.error_samples.append(f"engine crashed: {task.exception()!r}")
                    self.figures.engines_cancelled += 1
            engines_s = time.monotonic() - began
            loop_lag = await self.loop_lag(session)  # over the loaded phase, before the drain
            arrivals.join(timeout=self.args.drain_seconds)
            arrivals.stop.set()
            status = await self.wait_all_done(session, len(arrivals.names))
            return {"engines_s": engines_s, "status": status, "loop_lag": loop_lag}

    async def loop_lag(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """The server's event-loop lag so far, from its reactor_loop_lag_seconds histogram:
        samples, the share under LOOP_LAG_TARGET_S, and the bucket bound the p99 is under."""
        async with session.get(f"{self.url}/metrics") as reply:
            text = await reply.text()
        return loop_lag_summary(text)


# ------------------------------------------------------------------ verdict

LOOP_LAG_TARGET_S = 0.010
BUCKET = re.compile(r'^reactor_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)


def loop_lag_summary(metrics_text: str) -> dict[str, Any]:
    """From the histogram's cumulative buckets: how many samples, what share woke within
    LOOP_LAG_TARGET_S of when it asked, and the smallest bucket bound holding 99 %."""
    buckets = [(float(le), float(count)) for le, count in BUCKET.findall(metrics_text)]
    total = max((count for _, count in buckets), default=0.0)
    within = next((count for le, count in buckets if le == LOOP_LAG_TARGET_S), 0.0)
    p99 = next((le for le, count in buckets if total and count >= 0.99 * total), None)
    return {
        "samples": int(total),
        "share_within_target": round(within / total, 5) if total else None,
        "p99_at_most_ms": None if p99 is None else p99 * 1000,
        "target": f"p99 < {LOOP_LAG_TARGET_S * 1000:g} ms",
        "met": bool(total) and within >= 0.99 * total,
    }


def merged_files(output_dir: Path) -> Counter[str]:
    """How many DONE jobs' records list each file."""
    merged: Counter[str] = Counter()
    for record in job_records(output_dir):
        if record["state"] == "done":
            merged.update(record["files"].keys())
    return merged


def outputs_in_pass(output_dir: Path) -> Counter[str]:
    """How many FASTQs in the final pass/ belong to each file (by stem)."""
    found: Counter[str] = Counter()
    for path in (output_dir / "pass").iterdir():
        match = OUTPUT_NAME.match(path.name)
        if match:
            found[f"{match['stem']}.pod5"] += 1
    return found


def server_log_levels(log: Path) -> Counter[str]:
    """`level:event` counts of the server's JSON log (warnings and worse, at this level)."""
    counts: Counter[str] = Counter()
    if not log.exists():
        return counts
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            counts["unparsed"] += 1
            continue
        if isinstance(entry, dict):
            counts[f"{entry.get('level')}:{entry.get('event')}"] += 1
    return counts


def verdict(
    load: Load, arrivals: Arrivals, drive: dict[str, Any], server_exit: int | None, wall_s: float
) -> dict[str, Any]:
    figures = load.figures
    arrived = arrivals.names
    merged = merged_files(load.output_dir)
    outputs = outputs_in_pass(load.output_dir)
    arrived_set = set(arrived)
    verbs = {verb: figures.verbs[verb].summary() for verb in figures.verbs}
    errors = sum(verbs[verb]["errors"] for verb in (*ENGINE_VERBS, "status"))
    requests = sum(verbs[verb]["count"] for verb in ENGINE_VERBS)
    totals = {
        "files_requested": load.args.files,
        "files_arrived": len(arrived),
        "files_done": sum(1 for name in arrived if merged[name] >= 1),
        "lost": sum(1 for name in arrived if merged[name] == 0),
        "duplicated": sum(1 for name in arrived if merged[name] > 1),
        "merged_but_never_arrived": sum(1 for name in merged if name not in arrived_set),
        "outputs_missing": sum(1 for name in arrived if outputs[name] == 0),
        "outputs_duplicated": sum(1 for name in arrived if outputs[name] > 1),
        "errors": errors,
        "jobs": figures.jobs,
        "late_keepalives": figures.late,
        "engines_cancelled": figures.engines_cancelled,
        "engine_requests": requests,
        "engine_phase_s": round(drive["engines_s"], 2),
        "requests_per_s": round(requests / max(drive["engines_s"], 1e-9), 1),
        "arrival_max_lag_s": round(arrivals.max_lag_s, 3),
        "wall_s": round(wall_s, 2),
        # CPU seconds of this process (engines, arrivals) and of the server (once reaped)
        "client_cpu_s": _cpu_s(resource.RUSAGE_SELF),
        "server_cpu_s": _cpu_s(resource.RUSAGE_CHILDREN),
        "server_exit": server_exit,
    }
    ok = (
        errors == 0
        and totals["lost"] == 0
        and totals["duplicated"] == 0
        and totals["merged_but_never_arrived"] == 0
        and totals["outputs_missing"] == 0
        and totals["outputs_duplicated"] == 0
        and len(arrived) == load.args.files
        and arrivals.error is None
        and figures.engines_cancelled == 0
        and server_exit == 0
    )
    return {
        "ok": ok,
        "settings": {
            "engines": load.args.engines,
            "seconds": load.args.seconds,
            "files": load.args.files,
            "reads_per_file": load.args.reads_per_file,
            "lease_s": LEASE_S,
            "idle_poll_ms": load.args.idle_poll_ms,
            "durability": load.args.durability,
        },
        "verbs": verbs,
        "totals": totals,
        "final_status_files": drive["status"].get("files", {}),
        "loop_lag": drive["loop_lag"],
        "server_log": dict(server_log_levels(load.logs / "serve.log").most_common(20)),
        "error_samples": figures.error_samples,
        "arrival_error": arrivals.error,
    }


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return round(usage.ru_utime + usage.ru_stime, 1)


def table(result: dict[str, Any]) -> str:
    lines = [f"  {'verb':<18} {'count':>8} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"]
    for verb, row in result["verbs"].items():
        label = ROW_LABELS.get(verb, verb)
        cells = [_cell(row[k]) for k in ("p50_ms", "p99_ms", "max_ms")]
        lines.append(
            f"  {label:<18} {row['count']:>8} {row['errors']:>7} "
            f"{cells[0]:>9} {cells[1]:>9} {cells[2]:>9}"
        )
    lines.append("")
    width = max(len(key) for key in result["totals"])
    lines += [f"  {key:<{width}}  {value}" for key, value in result["totals"].items()]
    lag = result["loop_lag"]
    share = lag["share_within_target"]
    lines.append(
        f"  {'loop lag':<{width}}  p99 <= {lag['p99_at_most_ms']} ms over {lag['samples']} "
        f"probes ({'-' if share is None else f'{share:.2%}'} within 10 ms; target "
        f"{lag['target']}: {'met' if lag['met'] else 'NOT met'})"
    )
    lines.append(f"  {'verdict':<{width}}  {'good' if result['ok'] else 'FAILED'}")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ------------------------------------------------------------------ main


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from reactor.sim.pod5_files import pod5_bytes

    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-load-"))
    load = Load(args, root, out)
    contents = [pod5_bytes(args.reads_per_file, seed=k) for k in range(DISTINCT_FILES)]
    span_s = args.seconds * ARRIVAL_SHARE
    arrivals = Arrivals(contents, load.input_dir, load.staging, args.files, span_s)
    out.write(
        f"{PROG}: {args.engines} engines for {args.seconds:g} s, {args.files} files arriving "
        f"over {span_s:g} s, in {root}\n"
    )
    out.flush()
    began = time.monotonic()
    try:
        load.start_server()
        drive = asyncio.run(load.drive(arrivals))
    except RuntimeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        arrivals.stop.set()
        server_exit = load.stop_server()
        if arrivals.is_alive():
            arrivals.join(timeout=STOP_TIMEOUT_S)
    result = verdict(load, arrivals, drive, server_exit, time.monotonic() - began)
    out.write("\n" + table(result) + "\n")
    for sample in result["error_samples"]:
        out.write(f"  error: {sample}\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["ok"] and args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    elif not result["ok"]:
        out.write(f"  run folder kept: {root}\n")
    return 0 if result["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
