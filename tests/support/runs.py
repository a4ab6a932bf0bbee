"""Run folders on tmp_path and a clock moved by hand (the fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.settings.serve import ServeConfig, prepare_output_dirs


@dataclass(frozen=True)
class RunDirs:
    input_dir: Path
    output_dir: Path

    def config(self, **overrides: Any) -> ServeConfig:
        config = ServeConfig(input_dir=self.input_dir, output_dir=self.output_dir, **overrides)
        prepare_output_dirs(config)
        return config


class ManualClock:
    """A clock tests move by hand, so leases expire without waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


ConfigFactory = Callable[..., ServeConfig]
