"""The fleet in `reactor status`: its engine jobs on Slurm and what it did, a few lines."""

from __future__ import annotations

from typing import Any, Protocol

JOBS_SHOWN = 8


class _Glyphs(Protocol):
    @property
    def sep(self) -> str: ...

    def clean(self, name: str) -> str: ...


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _job_line(job: dict[str, Any], glyphs: _Glyphs) -> str:
    cells = [f"slurm {glyphs.clean(str(job['slurm_job']))}", job["phase"]]
    if job["phase"] == "pending" and job.get("reason"):
        cells.append(f"({glyphs.clean(job['reason'])})")
    if job.get("node"):
        cells.append(f"on {glyphs.clean(job['node'])}")
    engine = job.get("engine")
    if engine is None:
        if job["phase"] in ("running", "draining"):
            cells.append("engine not connected yet")
    else:
        batches = engine["live_jobs"]
        work = f"{batches} batch{'es' if batches != 1 else ''}" if batches else "idle"
        cells.append(f"engine {work}, seen {_duration(engine['last_seen_s'])} ago")
    if job["phase"] == "draining" and job.get("time_left_s") is not None:
        cells.append(f"{_duration(job['time_left_s'])} left")
    return "  " + "  ".join(cells)


def fleet_lines(fleet: dict[str, Any] | None, glyphs: _Glyphs) -> list[str]:
    """The fleet's lines; none when the service has no fleet."""
    if fleet is None:
        return []
    sep = glyphs.sep
    counts = [f"{fleet[phase]} {phase}" for phase in ("running", "pending", "draining")]
    span = f"wanted {fleet['wanted']} of {fleet['min_engines']}-{fleet['max_engines']}"
    lines = [f"fleet    {glyphs.clean(fleet['name'])}{sep}{sep.join(counts)}{sep}{span}"]
    jobs = fleet["jobs"]
    lines += [_job_line(job, glyphs) for job in jobs[:JOBS_SHOWN]]
    if len(jobs) > JOBS_SHOWN:
        lines.append(f"  +{len(jobs) - JOBS_SHOWN} more (reactor status --json)")
    done = [
        f"submitted {fleet['submitted']}",
        f"failed {fleet['submit_failures']}",
        f"cancelled {fleet['cancelled']}",
        f"lost {fleet['lost']}",
        f"replaced {fleet['replaced']}",
        f"adopted {fleet['adopted']}",
    ]
    lines.append("  " + sep.strip().join(f" {cell} " for cell in done).strip())
    if fleet.get("queue_error"):
        lines.append(f"  cannot read the queue: {glyphs.clean(fleet['queue_error'])}")
    if fleet.get("failures_in_a_row"):
        retry = fleet.get("retry_in_s")
        when = f"; next try in {_duration(retry)}" if retry is not None else ""
        lines.append(f"  last submission failed: {glyphs.clean(fleet['last_error'] or '')}{when}")
    return lines
