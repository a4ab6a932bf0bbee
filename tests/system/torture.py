"""Crash torture: `kill -9` the service again and again during a live run.

Runs, as real processes on loopback: `reactor serve`, the live-run simulator (`reactor
simulate-run`, in waves: a new simulated run, with its own flow cell id and seed, starts
whenever the previous one has written all its files, so files keep arriving through every
round) and a few engines (`reactor engine` running the stand-in basecaller). Each round
lets the run go on for a random time (mostly 0.05-1.5 s; some rounds outlast a lease, so
that the jobs of killed engines expire while the kills go on), then `kill -9`s the server
and restarts it on the same port; in some rounds one engine is `kill -9`ed too, at a
random moment, and restarted (sometimes with its basecaller, as when a node dies;
otherwise the basecaller is left running as an orphan, as when only the engine is
OOM-killed). After the last round the
run is let finish, everything is stopped with SIGTERM, and every read id in `pass/` +
`fail/` is compared with the read ids of the `.pod5` files (recounted by
`tests.support.exactly_once`, not by the demo's own check):

- each read of each `.pod5` exactly once, except the reads of quarantined files (those in
  an `INPUTDIR/FAILED_*` or `UNKNOWN_*` folder), which must be absent;
- the quarantined files on disk are the ones `/status` counts.

With `--hostile-every N`, hostile engines (`tests/support/hostile_engine.py`, seed
protocol) work beside the others and mishandle every N-th batch they take, in turn:
`pass/` a link to INPUTDIR, a link among the outputs leading to a canary file outside
the run, the output folder removed before DONE, a DONE long after the lease ran out. They
are `kill -9`ed like the other engines. The end check adds: no spoiled output folder was
ever merged (every such DONE answered `merged: false`), the refused jobs' files were
basecalled by others (each of their reads exactly once), and nothing outside the run's
job folders was touched (the canary folder as it was, every `.pod5` the simulator wrote
still in INPUTDIR, only plain `job_id_…` files in `pass/` and `fail/`).

    python -m tests.system.torture --rounds 500 --seed 1 --json torture.json
    python -m tests.system.torture --rounds 50 --hostile-every 3 --json torture.json

Exit code 0 only if the verdict is good; the folder of a bad run is kept (with the
server's logs, `logs/serve-NNNN.log`, one per start) and its path printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from reactor.commands.arguments import whole_number
from tests.support.exactly_once import Recount, output_read_names, pod5_read_ids, recount
from tests.support.hostile import Untouched, make_canary
from tests.support.launch import fetch_json, free_port, serve_args
from tests.support.paths import REPO
from tests.support.records import job_records

PROG = "python -m tests.system.torture"
READY_TIMEOUT_S = 30.0  # a restart must be ready within this
STOP_TIMEOUT_S = 30.0  # SIGTERM, then SIGKILL after this
TICK_S = 0.05
QUARANTINE_PREFIXES = ("FAILED_", "UNKNOWN_")
SPOILED = ("pass-link", "link-out", "gone")  # hostile mischief that must never be merged
# Short leases, so the jobs of killed engines expire fast (seconds).
LEASE_S = 3.0
SERVE_SETTINGS = {
    "report_back_interval": LEASE_S,
    "sweep_interval": 0.5,
    "settle_seconds": 1,
    "log_format": "json",
}
ENGINE_OPTIONS = [
    "--poll-interval", "0.05",
    "--max-poll-interval", "0.5",
    "--grace", "60",
    "--kill-grace", "2",
    "--log-format", "json",
]  # fmt: skip


class TortureError(Exception):
    """The torture could not go on (a process that would not start, a run that would
    not finish); the message says what and where to look."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=whole_number(1), default=20, help="kill rounds (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random schedule (1)")
    parser.add_argument(
        "--files", type=whole_number(1), default=20, help="files per simulated run (wave) (20)"
    )
    parser.add_argument(
        "--reads-per-file", type=whole_number(1), default=10, help="reads per file (10)"
    )
    parser.add_argument("--engines", type=whole_number(1), default=3, help="engines (3)")
    parser.add_argument(
        "--interval", type=float, default=0.4, help="seconds between new files (0.4)"
    )
    parser.add_argument(
        "--min-run", type=float, default=0.05, help="shortest run between kills, s (0.05)"
    )
    parser.add_argument(
        "--max-run", type=float, default=1.5, help="longest run between kills, s (1.5)"
    )
    parser.add_argument(
        "--long-round-rate",
        type=float,
        default=0.1,
        help=f"probability that a round runs longer than a lease ({LEASE_S:g} s), so that"
        " jobs of killed engines expire between two kills (0.1)",
    )
    parser.add_argument(
        "--engine-kill-rate",
        type=float,
        default=0.3,
        help="probability that a round also kills an engine (0.3)",
    )
    parser.add_argument(
        "--delay-per-read",
        type=float,
        default=0.01,
        help="the stand-in basecaller's seconds per read (0.01)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds the run may take to finish after the last round (300)",
    )
    parser.add_argument(
        "--hostile-every",
        type=whole_number(0),
        default=0,
        help="add hostile engines that mishandle every N-th batch they take: pass/ a link"
        " to INPUTDIR, a link leading out, the folder removed, a late DONE (0: none)",
    )
    parser.add_argument(
        "--hostile-engines",
        type=whole_number(1),
        default=1,
        help="hostile engines, with --hostile-every (1)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="run folder (kept); default: a temporary one"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


@dataclass
class Tally:
    """What the torture did, for the figures."""

    rounds: int = 0
    long_rounds: int = 0  # rounds longer than a lease
    server_kills: int = 0
    engine_kills: int = 0
    basecallers_killed: int = 0
    basecallers_orphaned: int = 0
    engine_exits: int = 0  # engines that stopped on their own and were restarted
    waves: int = 0
    restart_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Orphan:
    """A basecaller left running when its engine was killed; (pid, start time) so that
    the final clean-up never signals a process that merely reuses the pid."""

    pid: int
    started: int


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children(pid: int) -> list[Orphan]:
    """The live child processes of `pid` (Linux /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
            found.append(Orphan(int(entry.name), int(fields[19])))
    return found


def kill_orphan(orphan: Orphan) -> None:
    fields = _stat_fields(orphan.pid)
    if fields is not None and int(fields[19]) == orphan.started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan.pid, signal.SIGKILL)


class Torture:
    """The processes of one torture run and the rounds that kill them."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)  # a test schedule, not a secret
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.logs = root / "logs"
        for folder in (self.input_dir, self.output_dir, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.server_starts = 0
        hostile = args.hostile_engines if args.hostile_every else 0
        self.engines: list[subprocess.Popen[bytes] | None] = [None] * (args.engines + hostile)
        self.engine_starts = [0] * len(self.engines)
        # what hostile engines would like reactor to touch: a folder beside the run's
        self.canary = make_canary(root)
        self.outside = Untouched(roots=(self.canary,))
        self.canary_before = self.outside.take()
        self.simulator: subprocess.Popen[bytes] | None = None
        self.orphans: list[Orphan] = []
        self.tally = Tally()
        self.last_status: dict[str, Any] = {}

    # -- processes -------------------------------------------------------------------

    def _spawn(self, log_name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / log_name).open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )

    def start_server(self) -> float:
        """Start `reactor serve` and wait (bounded) for /readyz; the seconds it took."""
        self.server_starts += 1
        began = time.monotonic()
        self.server = self._spawn(
            f"serve-{self.server_starts:04d}.log",
            serve_args(self.input_dir, self.output_dir, self.port, **SERVE_SETTINGS),
        )
        deadline = began + READY_TIMEOUT_S
        while fetch_json(f"{self.url}/readyz") is None:
            if self.server.poll() is not None:
                msg = (
                    f"reactor serve (start {self.server_starts}) exited with "
                    f"{self.server.returncode}; see {self.logs}/serve-{self.server_starts:04d}.log"
                )
                raise TortureError(msg)
            if time.monotonic() > deadline:
                msg = f"reactor serve (start {self.server_starts}) not ready in {READY_TIMEOUT_S} s"
                raise TortureError(msg)
            time.sleep(TICK_S)
        return time.monotonic() - began

    def kill_server(self) -> None:
        assert self.server is not None
        if self.server.poll() is not None:
            msg = f"reactor serve exited on its own with {self.server.returncode}; see {self.logs}"
            raise TortureError(msg)
        self.server.kill()  # SIGKILL: no clean-up of any kind
        self.server.wait(timeout=STOP_TIMEOUT_S)
        self.tally.server_kills += 1

    def is_hostile(self, index: int) -> bool:
        return index >= self.args.engines

    def start_engine(self, index: int) -> None:
        if self.is_hostile(index):
            self.start_hostile_engine(index)
            return
        self.engine_starts[index] += 1
        command = (
            f"{{python}} -m reactor fake-basecaller {{input_dir}} {{output_dir}} "
            f"--delay-per-read {self.args.delay_per_read}"
        )
        self.engines[index] = self._spawn(
            f"engine-{index}-{self.engine_starts[index]:03d}.log",
            [
                "reactor", "engine",
                "--manager", self.url,
                "--engine-id", f"torture-gpu{index}",
                "--input-dir", str(self.input_dir),
                "--output-dir", str(self.output_dir),
                "--command", command,
                *ENGINE_OPTIONS,
            ],
        )  # fmt: skip

    def start_hostile_engine(self, index: int) -> None:
        self.engine_starts[index] += 1
        self.engines[index] = self._spawn(
            f"engine-{index}-{self.engine_starts[index]:03d}.log",
            [
                "tests.support.hostile_engine",
                "--url", self.url,
                "--engine-id", f"torture-rogue{index - self.args.engines}",
                "--input-dir", str(self.input_dir),
                "--output-dir", str(self.output_dir),
                "--canary", str(self.canary / "secret.fastq"),
                "--batch-size", "5",
                "--every", str(self.args.hostile_every),
                "--mischief", "pass-link,link-out,gone,late",
                "--retry-s", "60",
            ],
        )  # fmt: skip

    def kill_engine(self, index: int) -> None:
        """`kill -9` one engine and start it again. Half the time its basecaller dies with
        it (the node is gone); otherwise the basecaller runs on as an orphan."""
        engine = self.engines[index]
        assert engine is not None
        basecallers = children(engine.pid)
        engine.kill()
        engine.wait(timeout=STOP_TIMEOUT_S)
        self.tally.engine_kills += 1
        if self.rng.random() < 0.5:
            for orphan in basecallers:
                kill_orphan(orphan)
            self.tally.basecallers_killed += len(basecallers)
        else:
            self.orphans.extend(basecallers)
            self.tally.basecallers_orphaned += len(basecallers)
        self.start_engine(index)

    def start_wave(self) -> None:
        """A new simulated run into INPUTDIR: its own flow cell id (distinct file names:
        simulate-run refuses names that exist) and seed (distinct read ids)."""
        self.tally.waves += 1
        wave = self.tally.waves
        interval = self.args.interval
        self.simulator = self._spawn(
            f"simulate-{wave:04d}.log",
            [
                "reactor", "simulate-run", str(self.input_dir),
                "--files", str(self.args.files),
                "--reads-per-file", str(self.args.reads_per_file),
                "--interval", str(interval),
                "--pieces", "3",
                "--piece-interval", str(interval / 3),
                "--concurrent", "2",
                "--flow-cell", f"TRT{wave:05d}",
                "--seed", str(self.args.seed * 100_000 + wave),
                "--quiet",
            ],
        )  # fmt: skip

    def _simulator_done(self) -> bool:
        assert self.simulator is not None
        code = self.simulator.poll()
        if code is not None and code != 0:
            msg = f"simulate-run wave {self.tally.waves} exited with {code}; see {self.logs}"
            raise TortureError(msg)
        return code == 0

    def tend(self, *, more_files: bool) -> None:
        """Keep the run going: a new wave when the last one is written (if `more_files`),
        a fresh engine for one that stopped on its own."""
        if more_files and self._simulator_done():
            self.start_wave()
        for index, engine in enumerate(self.engines):
            if engine is not None and engine.poll() is not None:
                self.tally.engine_exits += 1
                self.start_engine(index)

    def start(self) -> None:
        self.tally.restart_s.append(self.start_server())
        self.start_wave()
        for index in range(len(self.engines)):
            self.start_engine(index)

    # -- rounds ----------------------------------------------------------------------

    def round(self) -> None:
        """Run for a random time (an engine maybe killed on the way), then kill -9 the
        server and restart it."""
        # A recovered job's lease restarts at each start, so the jobs of killed engines
        # expire only in rounds longer than a lease: a few rounds are.
        if self.rng.random() < self.args.long_round_rate:
            run_s = self.rng.uniform(LEASE_S + 0.5, LEASE_S + 2.0)
            self.tally.long_rounds += 1
        else:
            run_s = self.rng.uniform(self.args.min_run, self.args.max_run)
        engine_at: float | None = None
        victim = 0
        if self.rng.random() < self.args.engine_kill_rate:
            engine_at = self.rng.uniform(0.0, run_s)
            victim = self.rng.randrange(len(self.engines))
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < run_s:
            if engine_at is not None and elapsed >= engine_at:
                self.kill_engine(victim)
                engine_at = None
            self.tend(more_files=True)
            time.sleep(min(TICK_S, max(run_s - elapsed, 0.0)))
        if engine_at is not None:
            self.kill_engine(victim)
        self.kill_server()
        self.tally.restart_s.append(self.start_server())
        self.tally.rounds += 1

    def drain(self) -> float:
        """After the rounds: let the last wave finish and every file be done or
        quarantined (bounded). The seconds it took."""
        began = time.monotonic()
        deadline = began + self.args.drain_timeout
        while True:
            self.tend(more_files=False)
            status = fetch_json(f"{self.url}/status")
            if status is not None:
                self.last_status = status
            if self._simulator_done() and status is not None and _finished(status, self.input_dir):
                return time.monotonic() - began
            if time.monotonic() > deadline:
                msg = (
                    f"the run did not finish {self.args.drain_timeout:.0f} s after the last "
                    f"round; last /status files: {self.last_status.get('files')}"
                )
                raise TortureError(msg)
            time.sleep(0.1)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM the engines (they finish their batch), then the server; bounded."""
        codes: dict[str, int | None] = {}
        named = [(f"engine-{i}", engine) for i, engine in enumerate(self.engines)]
        for name, process in [*named, ("simulate-run", self.simulator), ("serve", self.server)]:
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes

    def kill_all(self) -> None:
        """The `finally`: nothing this torture started outlives it."""
        for process in [*self.engines, self.simulator, self.server]:
            if process is not None and process.poll() is None:
                for child in children(process.pid):
                    kill_orphan(child)
                process.kill()
                process.wait()
        for orphan in self.orphans:
            kill_orphan(orphan)


def _finished(status: dict[str, Any], input_dir: Path) -> bool:
    files: dict[str, int] = status.get("files", {})
    waiting = sum(files.get(key, 0) for key in ("incomplete", "ready", "assigned"))
    settled = files.get("done", 0) + files.get("quarantined", 0)
    return waiting == 0 and settled == len(list(input_dir.glob("*.pod5")))


def quarantined_names(input_dir: Path) -> list[str]:
    """The `.pod5` names in INPUTDIR's FAILED_/UNKNOWN_ folders (one entry per file)."""
    return sorted(
        link.name
        for prefix in QUARANTINE_PREFIXES
        for folder in input_dir.glob(f"{prefix}*")
        for link in folder.glob("*.pod5")
    )


@dataclass(frozen=True)
class Outcome:
    """The checked end state of a torture run."""

    verdict: Recount  # against every .pod5 that is not quarantined
    quarantined_files: int
    quarantined_reads: int
    quarantined_reads_in_output: int
    quarantine_unaccounted: int  # quarantined files /status does not count, or vice versa
    assigned_left: int  # ASSIGNED_ folders left after a clean stop

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and self.quarantined_reads_in_output == 0
            and self.quarantine_unaccounted == 0
        )


def check(input_dir: Path, output_dir: Path, status: dict[str, Any]) -> Outcome:
    """Exactly once for every read of every file not quarantined; none of the others."""
    quarantined = quarantined_names(input_dir)
    all_names = sorted(path.name for path in input_dir.glob("*.pod5"))
    if not quarantined:
        verdict = recount(input_dir.glob("*.pod5"), output_dir)
        q_reads = q_found = 0
    else:
        kept = sorted(set(all_names) - set(quarantined))
        verdict = recount((input_dir / name for name in kept), output_dir)
        # (a quarantined name that is missing or listed twice is counted as unaccounted below)
        aside_names = set(quarantined) & set(all_names)
        aside = recount((input_dir / name for name in aside_names), output_dir)
        q_reads = aside.reads
        q_found = aside.reads - aside.missing
        # Quarantined reads present in the output show up as "unexpected" in `verdict`;
        # they are counted apart, so "unexpected" means reads not in any .pod5.
        verdict = Recount(
            files=len(all_names),
            reads=verdict.reads,
            in_pass=verdict.in_pass,
            in_fail=verdict.in_fail,
            missing=verdict.missing,
            duplicated=verdict.duplicated,
            unexpected=verdict.unexpected - q_found,
        )
    counted = status.get("files", {}).get("quarantined", 0)
    unaccounted = abs(counted - len(quarantined)) + len(set(quarantined) - set(all_names))
    unaccounted += len(quarantined) - len(set(quarantined))  # a file in two folders
    return Outcome(
        verdict=verdict,
        quarantined_files=len(quarantined),
        quarantined_reads=q_reads,
        quarantined_reads_in_output=q_found,
        quarantine_unaccounted=unaccounted,
        assigned_left=len(list(input_dir.glob("ASSIGNED_*"))),
    )


def outside_touched(torture: Torture) -> list[str]:
    """What changed outside the run's job folders (at most 10 lines): the canary folder
    beside the run, `.pod5` files gone from INPUTDIR (the simulator wrote `files` per
    wave), anything in pass/ or fail/ that is not a plain merged output."""
    found = [f"canary: {line}" for line in torture.outside.differences(torture.canary_before)]
    written = torture.tally.waves * torture.args.files
    present = len(list(torture.input_dir.glob("*.pod5")))
    if present != written:
        found.append(f"{present} .pod5 files in INPUTDIR, {written} written")
    for kind in ("pass", "fail"):
        for path in sorted((torture.output_dir / kind).iterdir()):
            plain = path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1
            if not (plain and path.name.startswith("job_id_")):
                found.append(f"{kind}/{path.name!r} is not a plain merged output")
    return found[:10]


@dataclass(frozen=True)
class HostileOutcome:
    """What the hostile engines did and what came of it."""

    batches: dict[str, int]  # mischief ("none" for a batch done properly) -> batches
    answers: dict[str, int]  # what their reports were answered
    spoiled_merged: int  # spoiled output folders merged: must be 0
    refused_jobs: int
    refused_files: int
    refused_reads: int
    refused_reads_not_once: int  # reads of refused (not quarantined) files not exactly once
    held_at_end: int

    @property
    def ok(self) -> bool:
        return self.spoiled_merged == 0 and self.refused_reads_not_once == 0


def _answer_kind(answer: dict[str, Any]) -> str:
    if answer.get("told_late"):
        return "told_late_no_report"
    if "http_error" in answer:
        return f"http_{answer['http_error']}"
    if answer.get("merged") is False:
        return "late_not_merged" if "expired" in answer.get("detail", "") else "refused"
    return "merged"


def hostile_outcome(torture: Torture, status: dict[str, Any]) -> HostileOutcome | None:
    """The hostile engines' batches (from their logs) and the refused jobs (from the
    service's records), with the reads of the refused files recounted."""
    if not torture.args.hostile_every:
        return None
    batches: dict[str, int] = {}
    answers: dict[str, int] = {}
    spoiled_merged = 0
    for index in range(torture.args.engines, len(torture.engines)):
        for log in sorted(torture.logs.glob(f"engine-{index}-*.log")):
            for line in log.read_text().splitlines():
                if not line.startswith("{"):
                    continue
                batch = json.loads(line)
                batches[batch["mischief"]] = batches.get(batch["mischief"], 0) + 1
                kind = _answer_kind(batch["answer"])
                answers[kind] = answers.get(kind, 0) + 1
                spoiled_merged += batch["mischief"] in SPOILED and kind == "merged"
    refused = [r for r in job_records(torture.output_dir) if r["state"] == "refused"]
    quarantined = set(quarantined_names(torture.input_dir))
    names = {name for record in refused for name in record["files"]} - quarantined
    found = output_read_names(torture.output_dir)
    seen = found["pass"] + found["fail"]
    reads = [read for name in sorted(names) for read in pod5_read_ids(torture.input_dir / name)]
    return HostileOutcome(
        batches=dict(sorted(batches.items())),
        answers=dict(sorted(answers.items())),
        spoiled_merged=spoiled_merged,
        refused_jobs=len(refused),
        refused_files=len(names),
        refused_reads=len(reads),
        refused_reads_not_once=sum(1 for read in reads if seen[read] != 1),
        held_at_end=status.get("held", {}).get("total", 0),
    )


def figures(
    args: argparse.Namespace,
    torture: Torture,
    outcome: Outcome | None,
    codes: dict[str, int | None],
    wall_s: float,
    drain_s: float | None,
    error: str | None,
    touched: list[str] | None = None,
    hostile: HostileOutcome | None = None,
) -> dict[str, Any]:
    tally = torture.tally
    unclean = {name: code for name, code in codes.items() if code not in (0, None)}
    ok = error is None and outcome is not None and outcome.ok and not unclean
    ok = ok and not touched and (hostile is None or hostile.ok)
    restarts = tally.restart_s or [0.0]
    result: dict[str, Any] = {
        "rounds": tally.rounds,
        "long_rounds": tally.long_rounds,
        "kills": {
            "server": tally.server_kills,
            "engines": tally.engine_kills,
            "basecallers_killed_with_engine": tally.basecallers_killed,
            "basecallers_orphaned": tally.basecallers_orphaned,
        },
        "engine_exits_on_their_own": tally.engine_exits,
        "server_ready_after_start_s": {
            "mean": round(sum(restarts) / len(restarts), 3),
            "max": round(max(restarts), 3),
        },
        "waves": tally.waves,
        "engines": args.engines,
        "seed": args.seed,
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "wall_s": round(wall_s, 1),
        "unclean_exits": unclean,
        "error": error,
        "verdict": "good" if ok else "BAD",
        "ok": ok,
        "workdir": str(torture.input_dir.parent),
    }
    if outcome is not None:
        verdict = outcome.verdict
        result |= {
            "files": verdict.files,
            "reads": verdict.reads + outcome.quarantined_reads,
            "reads_expected": verdict.reads,
            "in_pass": verdict.in_pass,
            "in_fail": verdict.in_fail,
            "lost": verdict.missing,
            "duplicated": verdict.duplicated,
            "not_in_any_pod5": verdict.unexpected,
            "quarantined": {
                "files": outcome.quarantined_files,
                "reads": outcome.quarantined_reads,
                "reads_in_output": outcome.quarantined_reads_in_output,
                "unaccounted": outcome.quarantine_unaccounted,
            },
            "assigned_folders_left": outcome.assigned_left,
            "outside_touched": touched or [],
        }
    if hostile is not None:
        result["hostile"] = {
            "every": args.hostile_every,
            "engines": args.hostile_engines,
            "batches": hostile.batches,
            "answers": hostile.answers,
            "spoiled_merged": hostile.spoiled_merged,
            "refused": {
                "jobs": hostile.refused_jobs,
                "files": hostile.refused_files,
                "reads": hostile.refused_reads,
                "reads_not_exactly_once": hostile.refused_reads_not_once,
            },
            "held_at_end": hostile.held_at_end,
        }
    return result


def table(result: dict[str, Any]) -> str:
    kills = result["kills"]
    rows = [
        ("rounds", f"{result['rounds']} ({result['long_rounds']} longer than a lease)"),
        ("kills: server", f"{kills['server']}"),
        (
            "kills: engines",
            f"{kills['engines']} ({kills['basecallers_killed_with_engine']} basecallers killed"
            f" with them, {kills['basecallers_orphaned']} left running)",
        ),
        ("engines that exited on their own", f"{result['engine_exits_on_their_own']}"),
        (
            "server ready after (re)start",
            f"mean {result['server_ready_after_start_s']['mean']} s,"
            f" max {result['server_ready_after_start_s']['max']} s",
        ),
    ]
    if "files" in result:
        quarantined = result["quarantined"]
        rows += [
            ("pod5 files", f"{result['files']} (in {result['waves']} simulated runs)"),
            ("reads in the pod5 files", f"{result['reads']}"),
            ("reads in pass/ + fail/", f"{result['in_pass']} + {result['in_fail']}"),
            ("reads lost", f"{result['lost']}"),
            ("reads duplicated", f"{result['duplicated']}"),
            ("reads not in any pod5", f"{result['not_in_any_pod5']}"),
            (
                "quarantined",
                f"{quarantined['files']} files, {quarantined['reads']} reads"
                f" ({quarantined['reads_in_output']} of them in the output,"
                f" {quarantined['unaccounted']} files unaccounted)",
            ),
            ("ASSIGNED_ folders left", f"{result['assigned_folders_left']}"),
            ("touched outside the job folders", "; ".join(result["outside_touched"]) or "nothing"),
        ]
    if "hostile" in result:
        hostile = result["hostile"]
        refused = hostile["refused"]
        rows += [
            (
                "hostile batches",
                ", ".join(f"{kind} {count}" for kind, count in hostile["batches"].items()),
            ),
            (
                "hostile answers",
                ", ".join(f"{kind} {count}" for kind, count in hostile["answers"].items()),
            ),
            ("spoiled folders merged", f"{hostile['spoiled_merged']}"),
            (
                "refused",
                f"{refused['jobs']} jobs, {refused['files']} files, {refused['reads']} reads"
                f" ({refused['reads_not_exactly_once']} not exactly once in the output)",
            ),
            ("held at the end", f"{hostile['held_at_end']}"),
        ]
    rows += [
        ("drain after last round", f"{result['drain_s']} s"),
        ("wall time", f"{result['wall_s']} s"),
    ]
    if result["unclean_exits"]:
        rows.append(("unclean exits", f"{result['unclean_exits']}"))
    if result["error"]:
        rows.append(("error", result["error"]))
    rows.append(
        ("verdict", "every read exactly once" if result["ok"] else "BAD"),
    )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    rates = (args.engine_kill_rate, args.long_round_rate)
    if not 0 < args.min_run <= args.max_run or not all(0 <= rate <= 1 for rate in rates):
        print(f"{PROG}: need 0 < --min-run <= --max-run, and rates between 0 and 1",
              file=sys.stderr)  # fmt: skip
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-torture-"))
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        print(f"{PROG}: --workdir {args.workdir} is not empty", file=sys.stderr)
        return 2
    torture = Torture(args, root)
    hostile = (
        f" + {args.hostile_engines} hostile (one batch in {args.hostile_every} mishandled)"
        if args.hostile_every
        else ""
    )
    out.write(
        f"torture: {args.rounds} rounds, seed {args.seed}, {args.engines} engines{hostile},"
        f" waves of {args.files} files x {args.reads_per_file} reads, in {root}\n"
    )
    out.flush()
    began = time.monotonic()
    codes, drain_s, error = play(
        torture, args.rounds, lambda n: _progress(out, torture, n, time.monotonic() - began)
    )
    outcome = None
    touched: list[str] | None = None
    hostile: HostileOutcome | None = None
    if error is None:
        outcome = check(torture.input_dir, torture.output_dir, torture.last_status)
        touched = outside_touched(torture)
        hostile = hostile_outcome(torture, torture.last_status)
    wall_s = time.monotonic() - began
    result = figures(args, torture, outcome, codes, wall_s, drain_s, error, touched, hostile)
    out.write("\n" + table(result) + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["ok"] and args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        out.write(f"  run folder kept: {root} (server logs: {torture.logs}/serve-*.log)\n")
    return 0 if result["ok"] else 1


def play(
    torture: Torture, rounds: int, progress: Callable[[int], None]
) -> tuple[dict[str, int | None], float | None, str | None]:
    """Start, `rounds` rounds (`progress` after each twentieth), the drain and the clean
    stop; nothing started outlives it. (exit codes, drain seconds, error or None)."""
    codes: dict[str, int | None] = {}
    drain_s: float | None = None
    error: str | None = None
    every = max(1, rounds // 20)
    try:
        torture.start()
        for number in range(1, rounds + 1):
            torture.round()
            if number % every == 0 or number == rounds:
                progress(number)
        drain_s = torture.drain()
        codes = torture.stop()
    except TortureError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        torture.kill_all()
    return codes, drain_s, error


def _progress(out: TextIO, torture: Torture, number: int, elapsed: float) -> None:
    files = (fetch_json(f"{torture.url}/status") or {}).get("files", {})
    tally = torture.tally
    out.write(
        f"{elapsed:7.1f}s  round {number:4d}  kills server {tally.server_kills:4d}"
        f" engines {tally.engine_kills:3d}  waves {tally.waves:3d}  files {files}\n"
    )
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Crash torture: kill -9 reactor serve again and again during a live run.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
