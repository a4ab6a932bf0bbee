"""A run folder with a real `reactor serve` process, for tests that need one.

Shared by the end-to-end, engine, end-of-run, sd_notify, systemd and poison-file tests:
starting the server on a free loopback port and waiting (bounded) until it is ready,
reading /status, stopping it with SIGTERM. `SeedEngineRun` adds engines that speak only
the seed's protocol (`tests/support/seed_engine.py`); other tests add their own engines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.launch import free_port, serve_args
from tests.support.paths import REPO

SEED_ENGINE = REPO / "tests" / "support" / "seed_engine.py"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 50 ms until true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class ServedRun:
    """`root/input`, `root/output`, `root/logs`, and the server serving them."""

    # settings of `reactor serve` for this kind of test; subclasses change them
    settings: ClassVar[dict[str, object]] = {
        "sweep_interval": 0.5,
        "settle_seconds": 1,
        "log_format": "json",
    }
    ready_timeout_s: ClassVar[float] = 30.0  # bound on each (re)start

    def __init__(self, root: Path) -> None:
        self.root = root
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.logs = root / "logs"
        for folder in (self.input_dir, self.output_dir, self.logs):
            folder.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.server_starts = 0

    def start_server(self, *extra: str, wait: bool = True) -> None:
        """Start (or restart) the server on the same port; log to logs/server-N.jsonl.
        Waits until it is ready unless `wait` is False."""
        self.server_starts += 1
        args = serve_args(self.input_dir, self.output_dir, self.port, **self.settings)
        with (self.logs / f"server-{self.server_starts}.jsonl").open("wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", *args, *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        if wait:
            wait_for(self.is_ready, self.ready_timeout_s, "the server to be ready")

    def is_ready(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            pytest.fail(f"server exited with {self.server.returncode}; see {self.logs}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/status", timeout=5) as reply:  # noqa: S310
            result: dict[str, Any] = json.load(reply)
            return result

    def files_done(self) -> int:
        """Files done per /status; -1 while the server does not answer."""
        try:
            done: int = self.status()["files"]["done"]
        except OSError:
            return -1
        return done

    def stop_server(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait; the exit code, or None if it was not running."""
        if self.server is None or self.server.poll() is not None:
            return None
        self.server.send_signal(signal.SIGTERM)
        return self.server.wait(timeout=timeout_s)


class SeedEngineRun(ServedRun):
    """A served run with a 5 s lease, and engine processes that `stop` kills first."""

    settings: ClassVar[dict[str, object]] = {**ServedRun.settings, "report_back_interval": 5.0}

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.engines: list[subprocess.Popen[bytes]] = []

    def start_engines(self, count: int, *extra: str) -> None:
        """`count` seed-protocol engines (`seed_engine.py`), batches of 10, logs in logs/;
        `extra`: more of its options (`--dorado`)."""
        for i in range(count):
            log = (self.logs / f"engine-{i}.log").open("wb")
            self.engines.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(SEED_ENGINE),
                        "--url",
                        self.url,
                        "--engine-id",
                        f"gpu-node{i:02d}",
                        "--input-dir",
                        str(self.input_dir),
                        "--output-dir",
                        str(self.output_dir),
                        "--batch-size",
                        "10",
                        *extra,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
            log.close()

    def stop(self) -> int | None:
        for engine in self.engines:
            engine.kill()
            engine.wait(timeout=10)
        return self.stop_server()
