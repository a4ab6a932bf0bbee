"""The run at a glance: the body of `GET /status`, and the one line systemd shows.

Built from what the core keeps up to date (counts per state, live jobs, engines, the
quarantined set), so it costs O(live jobs + engines + QUARANTINE_LISTED), never
O(files): a site may track a million files. `reactor status` renders the body; its
schema is `Status` in `reactor/serve/openapi.json`. Pure: the time comes in as `now`.
"""

from __future__ import annotations

import heapq
from itertools import islice
from typing import Any

from reactor.core.model import EngineRecord, Job
from reactor.core.rate import Throughput
from reactor.core.state import RunState

QUARANTINE_LISTED = 100  # names listed in /status; the total is always given
ENGINES_LISTED = 100  # engines listed in /status, most recently seen first
HELD_LISTED = 100  # held jobs listed in /status, oldest first; the total is always given


def count_fields(state: RunState) -> dict[str, int]:
    """Files per state, keyed by the state's name (as /status and the logs show them)."""
    return {str(file_state): count for file_state, count in state.counts().items()}


def status_report(
    state: RunState,
    throughput: Throughput,
    *,
    now: float,
    ready: bool,
    phase: str,
    reconciles: int,
) -> dict[str, Any]:
    """The body of `GET /status` at time `now`."""
    counts = count_fields(state)
    recent = throughput.recent_per_s(now)
    remaining = counts["incomplete"] + counts["ready"] + counts["assigned"]
    return {
        "ready": ready,
        "phase": phase,
        "files": counts,
        "files_total": sum(counts.values()),
        "jobs": {
            "live": [_job_view(job, now) for job in state.live_jobs()],
            "total": len(state.jobs),
        },
        "engines": [
            _engine_view(engine, now)
            for engine in heapq.nlargest(
                ENGINES_LISTED, state.engines.values(), key=lambda engine: engine.last_seen
            )
        ],
        "engines_total": len(state.engines),
        "throughput": {
            "files_done_since_start": throughput.files_done,
            "files_per_s": round(recent, 3),
            "files_per_s_since_start": round(throughput.since_start_per_s(now), 3),
            "window_s": throughput.window_s,
            "eta_s": round(remaining / recent, 1) if recent > 0 else None,
        },
        "quarantined": {
            "total": counts["quarantined"],
            "files": [
                {"name": name, "failures": state.files[name].failures}
                for name in islice(state.quarantined_names(), QUARANTINE_LISTED)
            ],
        },
        "held": {
            "total": state.held_count(),
            "jobs": [_held_view(job) for job in islice(state.held_jobs(), HELD_LISTED)],
        },
        "reconciles": reconciles,
    }


def _held_view(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "engine_id": job.engine_id,
        "state": str(job.state),
        "files": len(job.files),
        "reason": job.reason,
    }


def status_line(state: RunState, now: float) -> str:
    """The one line `systemctl status` shows: the queue at a glance."""
    counts = count_fields(state)
    engines = state.working_engines(now)
    return (
        f"ready {counts['ready']} · assigned {counts['assigned']} · done {counts['done']}"
        f" · quarantined {counts['quarantined']} · engines {engines}"
    )


def _engine_view(engine: EngineRecord, now: float) -> dict[str, Any]:
    return {
        "engine_id": engine.engine_id,
        "last_seen_s": round(now - engine.last_seen, 3),
        "live_jobs": len(engine.live_jobs),
        "files_done": engine.files_done,
        "jobs_done": engine.jobs_done,
        "jobs_failed": engine.jobs_failed,
        "jobs_expired": engine.jobs_expired,
        "jobs_released": engine.jobs_released,
        "benched_s": round(max(engine.benched_until - now, 0.0), 3),
    }


def _job_view(job: Job, now: float) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "engine_id": job.engine_id,
        "state": str(job.state),
        "files": len(job.files),
        "age_s": round(now - job.assigned_at, 3),
        "expires_in_s": round(job.deadline() - now, 3),
    }
