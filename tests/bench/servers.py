"""The processes under test, each a real subprocess on loopback: `reactor serve` on a run
folder, the bare aiohttp handler (the API ceiling) and the floor programs.

Start-up is timed from `Popen` to the first `200` of `/readyz` (polled every 5 ms, each
poll bounded); peak memory is the process's own `VmHWM` from /proc, read while it runs,
and `ru_maxrss` from `os.wait4` once it is reaped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.launch import free_port, serve_args
from tests.support.paths import REPO

READY_POLL_S = 0.005
STOP_TIMEOUT_S = 30.0


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a running process, in bytes."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0]) * 1024
    return found


def _first_batch(port: int) -> bool:
    """Whether `/assignwork` hands out a batch now (one file, to a bench engine)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/assignwork?engineid=bench-first&batchsize=1")
        response = connection.getresponse()
        if response.status != 200:
            return False
        return bool(json.loads(response.read()).get("batch"))
    except (OSError, ValueError):
        return False
    finally:
        connection.close()


def _ready(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class Served:
    """A server process on a free loopback port."""

    args: list[str]
    log: Path
    ready_path: str = "/readyz"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_s: float | None = None
    first_batch_s: float | None = None  # Popen to the first batch (`start(first_batch=True)`)
    memory_at_ready: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    maxrss_bytes: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float, *, first_batch: bool = False) -> float:
        """Start, wait (bounded) for readiness; the seconds from Popen to ready. With
        `first_batch`, first poll `/assignwork` until it hands out a batch (the time is
        `first_batch_s`; that job stays assigned), then wait for readiness."""
        with self.log.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, *self.args, *self._port_args()],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = self.started_at + ready_timeout_s
        while first_batch and time.perf_counter() < deadline:
            if self.process.poll() is not None:
                break
            if _first_batch(self.port):
                self.first_batch_s = time.perf_counter() - self.started_at
                break
            time.sleep(READY_POLL_S)
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                break
            if _ready(self.port, self.ready_path):
                self.ready_s = time.perf_counter() - self.started_at
                self.memory_at_ready = proc_memory(self.process.pid)
                return self.ready_s
            time.sleep(READY_POLL_S)
        self.stop()
        msg = f"{' '.join(self.args[:3])} was not ready within {ready_timeout_s} s; see {self.log}"
        raise RuntimeError(msg)

    def _port_args(self) -> list[str]:
        return []

    def threads(self) -> int | None:
        """Threads of the running process (reactor runs one per watched live job)."""
        if self.process is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return None

    def memory(self) -> dict[str, int]:
        return proc_memory(self.process.pid) if self.process else {}

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT_S; reaps with wait4 for its peak RSS."""
        process = self.process
        if process is None or self.exit_code is not None:
            return self.exit_code
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
                return self.exit_code
            time.sleep(0.02)
        process.kill()
        _, status, usage = os.wait4(process.pid, 0)
        self._reaped(status, usage)
        return self.exit_code

    def _reaped(self, status: int, usage: Any) -> None:
        self.exit_code = os.waitstatus_to_exitcode(status)
        assert self.process is not None
        self.process.returncode = self.exit_code
        self.maxrss_bytes = usage.ru_maxrss * 1024

    def log_events(self, *names: str) -> list[dict[str, Any]]:
        """The JSON log lines of these events (for recovery durations and counts)."""
        found = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("event") in names:
                        found.append(entry)
        return found


def reactor_serve(input_dir: Path, output_dir: Path, log: Path, **settings: object) -> Served:
    """`reactor serve` on a run folder, JSON logs at info (the shipped default level)."""
    port = free_port()
    defaults: dict[str, object] = {
        "report_back_interval": 3600,  # no lease runs out during a trial
        "log_format": "json",
        "log_level": "info",
    }
    args = ["-m", *serve_args(input_dir, output_dir, port, **{**defaults, **settings})]
    return Served(args=args, log=log, port=port)


def bare_handler(log: Path) -> Served:
    """The ceiling: a bare aiohttp handler answering a small JSON object on every path."""
    port = free_port()
    return Served(args=["-m", "tests.bench.bare", str(port)], log=log, port=port)


@dataclass
class Finished:
    """A program that runs to its end: wall seconds from Popen to exit, peak RSS, stdout."""

    wall_s: float
    maxrss_bytes: int
    stdout: str


def run_to_end(args: list[str], timeout_s: float) -> Finished:
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    # communicate() reaped it already: the wall time is good, the peak RSS comes from
    # the program itself (it prints its own ru_maxrss).
    wall = time.perf_counter() - began
    if process.returncode != 0:
        msg = f"{' '.join(args[:2])} failed ({process.returncode}): {err.decode()[-500:]}"
        raise RuntimeError(msg)
    data = json.loads(out)
    return Finished(wall_s=wall, maxrss_bytes=int(data.get("maxrss_bytes", 0)), stdout=out.decode())
