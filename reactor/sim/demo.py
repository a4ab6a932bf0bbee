"""`reactor demo`: a whole live run on this machine, ending with an exactly-once proof.

It starts, as real processes in a fresh folder: `reactor serve`, the live-run simulator
(`reactor simulate-run`, writing real `.pod5` files in pieces over time, as MinKNOW does)
and a few engines (`reactor engine --preset fake`, running the stand-in basecaller). It
shows progress while the run goes on, stops everything once the run is complete, then
reads every read id of every `.pod5` and every FASTQ record in `pass/` + `fail/` and
checks that each read was basecalled exactly once. Exit code 0 only if it was.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Verdict:
    files: int
    reads: int
    in_pass: int
    in_fail: int
    missing: int
    duplicated: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return self.reads > 0 and not (self.missing or self.duplicated or self.unexpected)


def check_exactly_once(input_dir: Path, output_dir: Path) -> Verdict:
    """Compare the read ids of every `.pod5` with the FASTQ records in pass/ and fail/."""
    return verdict_of(sorted(input_dir.glob("*.pod5")), output_dir)


def verdict_of(files: list[Path], output_dir: Path) -> Verdict:
    """Compare the read ids of `files` with the FASTQ records in `output_dir`'s pass/ and
    fail/."""
    from reactor.sim.pod5_files import read_ids

    expected: Counter[str] = Counter()
    for path in files:
        expected.update(read_ids(path))
    found: dict[str, Counter[str]] = {}
    for kind in ("pass", "fail"):
        found[kind] = Counter()
        for path in sorted((output_dir / kind).glob("*.fastq")):
            found[kind].update(fastq_names(path.read_text()))
    seen = found["pass"] + found["fail"]
    return Verdict(
        files=len(files),
        reads=sum(expected.values()),
        in_pass=sum(found["pass"].values()),
        in_fail=sum(found["fail"].values()),
        missing=sum((expected - seen).values()),
        duplicated=sum(count - 1 for count in seen.values() if count > 1),
        unexpected=sum(count for rid, count in seen.items() if rid not in expected),
    )


def fastq_names(text: str) -> list[str]:
    """The record names (first word after '@') of a FASTQ text, four lines a record."""
    lines = text.splitlines()
    return [line[1:].split(maxsplit=1)[0] for line in lines[0::4] if line.startswith("@")]


def serve_args(input_dir: Path, output_dir: Path, port: int, **settings: object) -> list[str]:
    """Module arguments (for `python -m`) of `reactor serve` on a run folder, listening
    on 127.0.0.1:`port`; each keyword is a setting: `sweep_interval=1` gives
    `--sweep-interval 1`."""
    args = [
        "reactor", "serve",
        "--input-dir", str(input_dir),
        "--output-dir", str(output_dir),
        "--listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - our own server
            result: dict[str, Any] = json.load(reply)
            return result
    except (OSError, ValueError):
        return None


class Demo:
    def __init__(self, args: argparse.Namespace, root: Path, out: TextIO) -> None:
        self.args = args
        self.root = root
        self.out = out
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.make_folders()
        self.url = f"http://127.0.0.1:{free_port()}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.tty = out.isatty()

    def make_folders(self) -> None:
        """The run's folders: what the simulator writes into, what the engines are given."""
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        for folder in (self.input_dir, self.output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.written_to = self.input_dir
        self.engine_folders = (self.input_dir, self.output_dir)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def start(self) -> None:
        self._start("serve", self.serve_argv(int(self.url.rsplit(":", 1)[1])))
        self._wait_ready()
        self._start("simulate-run", self.simulator_argv())
        for i in range(self.args.engines):
            self._start(f"engine-{i}", self.engine_argv(i))

    def serve_argv(self, port: int) -> list[str]:
        return serve_args(
            self.input_dir,
            self.output_dir,
            port,
            report_back_interval=10,
            sweep_interval=1,
            settle_seconds=2,
            log_format="json",
        )

    def simulator_argv(self) -> list[str]:
        return [
            "reactor", "simulate-run", str(self.written_to),
            "--files", str(self.args.files),
            "--reads-per-file", str(self.args.reads_per_file),
            "--interval", str(self.args.interval),
            "--pieces", "4",
            "--piece-interval", str(self.args.interval / 4),
            "--concurrent", "2",
            "--quiet",
        ]  # fmt: skip

    def engine_argv(self, number: int) -> list[str]:
        input_dir, output_dir = self.engine_folders
        return [
            "reactor", "engine",
            "--manager", self.url,
            "--engine-id", f"demo-gpu{number}",
            "--input-dir", str(input_dir),
            "--output-dir", str(output_dir),
            "--preset", "fake",
            "--poll-interval", "0.2",
            "--max-poll-interval", "1",
            "--log-format", "json",
        ]  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while get_json(f"{self.url}/readyz") is None:
            if self.processes["serve"].poll() is not None or time.monotonic() > deadline:
                msg = f"reactor serve did not start; see {self.logs / 'serve.log'}"
                raise RuntimeError(msg)
            time.sleep(0.1)

    def follow(self) -> dict[str, Any]:
        """Show progress until the run is complete: the simulator finished (its last
        step writes final_summary_*.txt), every file it wrote is done, and the service
        says the run is complete. Returns the last /status."""
        began = time.monotonic()
        last_line = 0.0
        simulator = self.processes["simulate-run"]
        while True:
            status = get_json(f"{self.url}/status") or {}
            files = status.get("files", {})
            now = time.monotonic()
            if self.tty or now - last_line >= 2.0:
                self._show(files, now - began, status)
                last_line = now
            finished = simulator.poll() is not None
            if finished and simulator.returncode != 0:
                msg = f"the simulator failed; see {self.logs / 'simulate-run.log'}"
                raise RuntimeError(msg)
            on_disk = len(list(self.input_dir.glob("*.pod5")))
            waiting = sum(files.get(k, 0) for k in ("incomplete", "ready", "assigned"))
            complete = status.get("phase") == "complete"
            if finished and files.get("done", -1) == on_disk and waiting == 0 and complete:
                if self.tty:
                    self.out.write("\n")
                return status
            if now - began > TIMEOUT_S:
                msg = f"the run did not complete in {TIMEOUT_S:.0f} s; see {self.logs}"
                raise RuntimeError(msg)
            time.sleep(0.25)

    def _show(self, files: dict[str, int], elapsed: float, status: dict[str, Any]) -> None:
        seen = sum(files.values())
        done = files.get("done", 0)
        reads = done * self.args.reads_per_file
        line = (
            f"{elapsed:6.1f}s  files seen {seen:4d}  writing {files.get('incomplete', 0):3d}"
            f"  ready {files.get('ready', 0):3d}  basecalling {files.get('assigned', 0):3d}"
            f"  done {done:4d}/{self.args.files}  reads/s {reads / max(elapsed, 1e-9):7.1f}"
            f"  engines {len(status.get('engines', []))}"
        )
        self.out.write(f"\r{line}" if self.tty else f"{line}\n")
        self.out.flush()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM engines first (they finish their batch), then the server."""
        codes: dict[str, int | None] = {}
        order = [n for n in self.processes if n.startswith("engine")] + ["simulate-run", "serve"]
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes


def summary_table(verdict: Verdict, elapsed_s: float, engines: int, phase: str) -> str:
    rows = [
        ("pod5 files", f"{verdict.files}"),
        ("reads in the pod5 files", f"{verdict.reads}"),
        ("reads basecalled into pass/", f"{verdict.in_pass}"),
        ("reads basecalled into fail/", f"{verdict.in_fail}"),
        ("reads missing", f"{verdict.missing}"),
        ("reads duplicated", f"{verdict.duplicated}"),
        ("reads not in any pod5", f"{verdict.unexpected}"),
        ("end of run", f"{phase} (final_summary seen, every file done)"),
        ("engines", f"{engines}"),
        ("wall time", f"{elapsed_s:.1f} s"),
        ("verdict", "every read basecalled exactly once" if verdict.ok else "FAILED"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def unusable(args: argparse.Namespace) -> bool:
    """Whether the demo's options cannot run (said on stderr, for exit code 2)."""
    if args.files < 1 or args.engines < 1 or args.reads_per_file < 1:
        print("reactor demo: --files, --engines and --reads-per-file must be 1 or more",
              file=sys.stderr)  # fmt: skip
        return True
    try:
        import reactor.sim.pod5_files  # noqa: F401 - fails without the pod5 library
    except ImportError:
        print("reactor demo: needs the pod5 library: pip install 'pod5-reactor[sim]'",
              file=sys.stderr)  # fmt: skip
        return True
    return False


def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """The whole demo with the options of `reactor demo`; 0 only if every read was
    basecalled exactly once."""
    if unusable(args):
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="reactor-demo-"))
    demo = Demo(args, root, out)
    out.write(
        f"pod5-reactor demo: {args.files} files x {args.reads_per_file} reads, "
        f"{args.engines} engines, in {root}\n"
    )
    played = play(demo)
    if isinstance(played, int):
        return played
    verdict = check_exactly_once(demo.input_dir, demo.output_dir)
    phase = str(played.status.get("phase"))
    out.write("\n" + summary_table(verdict, played.elapsed_s, args.engines, phase) + "\n")
    return wrap_up(demo, played, ok=verdict.ok, what="run folder")


@dataclass(frozen=True)
class Played:
    """A demo played to its end: the last /status, the processes' exit codes, the time."""

    status: dict[str, Any]
    codes: dict[str, int | None]
    elapsed_s: float


def play(demo: Demo) -> Played | int:
    """Start the demo's processes, follow it to its end and stop them; the exit code
    instead when it could not get there (1 on a failure, said on stderr; 130 on Ctrl-C)."""
    began = time.monotonic()
    try:
        demo.start()
        status = demo.follow()
    except RuntimeError as exc:
        demo.stop()
        print(f"reactor demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        demo.stop()
        return 130
    codes = demo.stop()
    return Played(status, codes, time.monotonic() - began)


def wrap_up(demo: Demo, played: Played, *, ok: bool, what: str) -> int:
    """Say which processes did not exit cleanly, remove the folder (unless kept); 0 only
    if the proof held and every process exited cleanly."""
    unclean = {name: code for name, code in played.codes.items() if code not in (0, None)}
    if unclean:
        demo.out.write(f"  processes that did not exit cleanly: {unclean}; see {demo.logs}\n")
    if not (demo.args.keep or demo.args.workdir):
        shutil.rmtree(demo.root, ignore_errors=True)
    else:
        demo.out.write(f"  {what} kept: {demo.root}\n")
    return 0 if ok and not unclean else 1
