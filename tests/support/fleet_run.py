"""A served run whose engines a fleet starts on a real single-node Slurm, for the
fleet's end-to-end tests: the fleet's settings (as REACTOR_FLEET_* variables), the jobs
in the queue, the most ever queued at once."""

from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.engine_run import FAKE, Run
from tests.support.slurm import SlurmCluster


class FleetRun(Run):
    """A served run whose engines the fleet starts on Slurm."""

    settings: ClassVar[dict[str, object]] = {**Run.settings, "batch_size": 2}
    ready_timeout_s: ClassVar[float] = 30.0

    def __init__(self, root: Path, slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(root)
        self.slurm = slurm
        self.name = f"reactor-test-{root.name[-24:].replace('_', '-')}"[:64]
        self.job_logs = root / "job-logs"
        self.job_logs.mkdir()
        self.monkeypatch = monkeypatch
        self.peak_jobs = 0
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        monkeypatch.setenv("SLURM_CONF", str(slurm.conf))

    def configure(self, command: str = FAKE, **fleet: object) -> None:
        engine = [
            sys.executable, "-m", "reactor", "engine",
            "--input-dir", str(self.input_dir), "--output-dir", str(self.output_dir),
            "--command", command, "--poll-interval", "0.05", "--max-poll-interval", "0.5",
            "--grace", "30", "--kill-grace", "2", "--log-format", "json",
        ]  # fmt: skip
        settings: dict[str, object] = {
            "manager_url": self.url,
            "engine_command": shlex.join(engine),
            "name": self.name,
            "max_engines": 3,
            "idle_s": 3,
            "check_interval": 1,
            "time_limit": "10",
            "log_dir": str(self.job_logs),
            **fleet,
        }
        for key, value in settings.items():
            self.monkeypatch.setenv(f"REACTOR_FLEET_{key.upper()}", str(value))

    def fleet(self) -> dict[str, Any]:
        view: dict[str, Any] = self.status()["fleet"]
        return view

    def jobs(self) -> dict[str, str]:
        return self.slurm.jobs(self.name)

    def watch_queue(self) -> None:
        """Note the most jobs ever in the queue at once, until the test ends."""

        def watch() -> None:
            while not self._watching.wait(0.2):
                self.peak_jobs = max(self.peak_jobs, len(self.jobs()))

        self._watcher = threading.Thread(target=watch, daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        super().stop()
        self.slurm.cancel_all(self.name)
