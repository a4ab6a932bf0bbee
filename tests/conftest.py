"""Shared fixtures: run folders on tmp_path and configs pointing at them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reactor.settings.serve import ServeConfig, prepare_output_dirs


@dataclass(frozen=True)
class RunDirs:
    input_dir: Path
    output_dir: Path

    def config(self, **overrides: Any) -> ServeConfig:
        config = ServeConfig(input_dir=self.input_dir, output_dir=self.output_dir, **overrides)
        prepare_output_dirs(config)
        return config


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to a real systemd, even when pytest runs under one: apps built
    without a notifier read NOTIFY_SOCKET from the environment."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_dirs(tmp_path: Path) -> RunDirs:
    """An empty run: INPUTDIR and OUTPUTDIR (pass/ and fail/ are made by `config()`)."""
    input_dir = tmp_path / "input"
    output_dir = tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    return RunDirs(input_dir, output_dir)


class ManualClock:
    """A clock tests move by hand, so leases expire without waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


ConfigFactory = Callable[..., ServeConfig]
