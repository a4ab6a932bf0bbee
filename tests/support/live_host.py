"""A live simulated sequencer host for the dashboard's browser tests and its screenshots.

Real processes in a fresh folder: `reactor serve --watch-root` on a free loopback port,
the host simulator (`reactor simulate-run --flow-cells N`: staggered runs in MinKNOW's
layouts, then a final summary each), engines running the stand-in basecaller (`reactor
engine --preset fake`), and one poison `.pod5` (both signatures, garbage between) slipped
into the first run's POD5 folder under that run's name, so that its batches fail until
it is quarantined alone. Nothing here imports pytest: `make screenshots` runs it too.
Every wait is bounded; `stop()` ends every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.core.minknow import parse_pod5_name
from reactor.core.names import POD5_SIGNATURE
from tests.support.launch import free_port
from tests.support.paths import REPO

POISON_BATCH = 999  # the poison file's batch number in its run's MinKNOW name


class TimedOut(AssertionError):
    """A bounded wait ran out."""


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 100 ms until true; TimedOut after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s} s waiting for {what}"
            raise TimedOut(msg)
        time.sleep(0.1)


@dataclass
class LiveHost:
    """The processes of a simulated host. `start()` starts the service, the simulator and
    the engines; `poison()` adds the poison file once the first run has a file."""

    root: Path
    flow_cells: int = 3
    files: int = 8
    reads_per_file: int = 40
    engines: int = 3
    interval_s: float = 0.6
    preset: str = "fake"  # the engines' command: fake-dorado-fastq writes reads of kb, as dorado
    token: str | None = None
    on_complete: str | None = None
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    poison_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def _start(self, name: str, argv: list[str]) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        serve = [
            "reactor", "serve", "--watch-root", str(self.data),
            "--listen", f"127.0.0.1:{self.port}", "--report-back-interval", "10",
            "--sweep-interval", "0.2", "--settle-seconds", "1", "--max-attempts", "2",
            "--batch-size", "2", "--log-format", "json",
        ]  # fmt: skip
        if self.token is not None:
            serve += ["--token", self.token]
        if self.on_complete is not None:
            serve += ["--on-complete", self.on_complete]
        self._start("serve", serve)
        until(self.ready, 30, "the service to be ready")
        self._start("simulate-run", [
            "reactor", "simulate-run", str(self.data), "--flow-cells", str(self.flow_cells),
            "--files", str(self.files), "--reads-per-file", str(self.reads_per_file),
            "--interval", str(self.interval_s), "--pieces", "2", "--stagger", "1", "--quiet",
        ])  # fmt: skip
        for number in range(self.engines):
            argv = [
                "reactor", "engine", "--manager", self.url, "--engine-id", f"gpu{number + 1:02d}",
                "--input-dir", str(self.data), "--output-dir", str(self.data),
                "--preset", self.preset, "--batch-size", "2", "--poll-interval", "0.1",
                "--max-poll-interval", "0.5", "--log-format", "json",
            ]  # fmt: skip
            if self.token is not None:
                argv += ["--token", self.token]
            self._start(f"engine-{number + 1}", argv)

    def ready(self) -> bool:
        serve = self.processes["serve"]
        if serve.poll() is not None:
            msg = f"reactor serve exited with {serve.returncode}; see {self.logs}"
            raise AssertionError(msg)
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def status(self, run: str | None = None) -> dict[str, Any]:
        query = f"?run={run}" if run else ""
        request = urllib.request.Request(f"{self.url}/status{query}")  # noqa: S310
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310
            answer: dict[str, Any] = json.load(reply)
            return answer

    def first_run_file(self) -> Path | None:
        """A `.pod5` of the first flow cell (PAW00001), once the simulator wrote one."""
        for path in sorted(self.data.glob("*/*/*/pod5*/*.pod5")):
            if path.name.startswith("PAW00001_"):
                return path
        return None

    def poison(self, timeout_s: float = 30) -> str:
        """The poison file, beside the first run's first file, under the run's name (so
        the run's own watch takes it); returns the run's name."""
        until(lambda: self.first_run_file() is not None, timeout_s, "the first run's first file")
        first = self.first_run_file()
        assert first is not None
        parsed = parse_pod5_name(first.name)
        assert parsed is not None
        name = first.name.rsplit("_", 1)[0] + f"_{POISON_BATCH}.pod5"
        staged = first.parent.parent / "tmp" / name
        staged.parent.mkdir(exist_ok=True)
        staged.write_bytes(POD5_SIGNATURE + os.urandom(4096) + POD5_SIGNATURE)
        self.poison_path = first.parent / name
        staged.rename(self.poison_path)  # moved in whole, as MinKNOW does
        return str(parsed.key)

    def stop(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if name == "serve" else signal.SIGKILL)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
