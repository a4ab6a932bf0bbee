"""reactor's records of a run (`OUTPUTDIR/.reactor/`), read the way a person would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE = ".reactor"


def job_record(output_dir: Path, job_id: str) -> dict[str, Any]:
    """The record of one job."""
    data: dict[str, Any] = json.loads((output_dir / STATE / "jobs" / f"{job_id}.json").read_text())
    return data


def job_records(output_dir: Path) -> list[dict[str, Any]]:
    """Every job's record, in no particular order."""
    return [json.loads(path.read_text()) for path in (output_dir / STATE / "jobs").glob("*.json")]
