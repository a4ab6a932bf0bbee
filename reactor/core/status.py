"""The run at a glance: the body of `GET /status`, and the one line systemd shows.

Built from what the core keeps up to date (counts per state, live jobs, engines, the
quarantined set), so it costs O(live jobs + engines + QUARANTINE_LISTED), never
O(files): a site may track a million files. `reactor status` renders the body; its
schema is `Status` in `reactor/serve/openapi.json`. Pure: the time comes in as `now`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from reactor.core.model import EngineRecord, Job
from reactor.core.rate import Throughput
from reactor.core.readstats import EngineYield
from reactor.core.state import RunState

QUARANTINE_LISTED = 100  # names listed in /status; the total is always given
ENGINES_LISTED = 100  # engines listed in /status, most recently seen first
HELD_LISTED = 100  # held jobs listed in /status, oldest first; the total is always given
LIVE_LISTED = 100  # live jobs listed in /status, oldest first; the total is always given
# A host's finished, left and failed runs listed in /status, newest first; with totals.
# A host keeps finished runs for good: listing them all made every /status (and every
# dashboard frame) grow with the host's history: 2,000 finished runs were 83 % of a
# 393 KB body (docs/dashboard.md, "Cost").
RUNS_LISTED = 100
NO_ENGINE_ALERT_S = 600.0  # work waiting this long with no engine seen: an alert


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
            "live": [_job_view(job, now) for job in islice(state.live_jobs(), LIVE_LISTED)],
            "live_total": state.live_count(),
            "total": len(state.jobs),
        },
        "backlog": backlog_view(state, now),
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


def backlog_view(state: RunState, now: float) -> dict[str, Any]:
    """Files waiting for an engine, and how long the front one has waited."""
    files, since = state.backlog()
    return {"files": files, "waiting_s": round(now - since, 3) if files else 0.0}


def merged_engines(
    engine_maps: Iterable[Mapping[str, EngineRecord]],
    yields: Iterable[Mapping[str, EngineYield]],
    now: float,
) -> tuple[list[dict[str, Any]], int]:
    """Each engine over every run of a host (its records are per run): the status view
    of a single run's engines, summed, with the bases it called and its speed; the
    ENGINES_LISTED seen last, most recent first, and how many there are."""
    merged: dict[str, EngineRecord] = {}
    runs: dict[str, int] = {}
    for engines in engine_maps:
        for engine_id, engine in engines.items():
            runs[engine_id] = runs.get(engine_id, 0) + 1
            into = merged.get(engine_id)
            if into is None:
                merged[engine_id] = into = EngineRecord(engine_id, engine.last_seen)
            into.last_seen = max(into.last_seen, engine.last_seen)
            into.live_jobs |= engine.live_jobs
            into.benched_until = max(into.benched_until, engine.benched_until)
            for name in _ENGINE_SUMS:
                setattr(into, name, getattr(into, name) + getattr(engine, name))
    called: dict[str, EngineYield] = {}
    for run_yields in yields:
        for engine_id, engine_yield in run_yields.items():
            total = called.setdefault(engine_id, EngineYield())
            total.bases += engine_yield.bases
            total.seconds += engine_yield.seconds
    shown = heapq.nlargest(ENGINES_LISTED, merged.values(), key=lambda e: e.last_seen)
    views = []
    for engine in shown:
        done = called.get(engine.engine_id, EngineYield())
        views.append(
            {
                **_engine_view(engine, now),
                "runs": runs[engine.engine_id],
                "bases": done.bases,
                "bases_per_s": round(done.bases_per_s, 1),
            }
        )
    return views, len(merged)


_ENGINE_SUMS = ("files_done", "busy_s", "jobs_done", "jobs_failed", "jobs_expired", "jobs_released")


def alerts(
    *,
    waiting_files: int,
    waiting_s: float,
    engine_seen_s: float | None,
    quarantined: int,
    held: int,
    paused: list[str],
    storage: str | None,
    hash_problems: list[str],
) -> list[dict[str, str]]:
    """What a person should look at now, worst first: each `{"level", "kind", "text"}`
    (`level` is `error` or `warning`). `engine_seen_s`: since the last request of any
    engine (None: none ever came); `paused` and `hash_problems` name the runs concerned."""
    found: list[dict[str, str]] = []

    def say(level: str, kind: str, text: str) -> None:
        found.append({"level": level, "kind": kind, "text": text})

    if storage is not None:
        say("error", "storage", f"the run folders cannot be written: {storage}")
    no_engine = engine_seen_s is None or engine_seen_s >= NO_ENGINE_ALERT_S
    if waiting_files and waiting_s >= NO_ENGINE_ALERT_S and no_engine:
        minutes = round(waiting_s / 60)
        say(
            "error",
            "no_engine",
            f"{waiting_files:,} file{_s(waiting_files)} waiting for {minutes} min and no "
            f"engine has asked for work in {NO_ENGINE_ALERT_S / 60:.0f} min",
        )
    if paused:
        say("error", "disk_low", f"no work handed out, output disk low: {', '.join(paused)}")
    if hash_problems:
        say("error", "output_hash", f"MinKNOW's output hash disagrees: {', '.join(hash_problems)}")
    if held:
        say("warning", "held", f"{held:,} job{_s(held)} held for a person to look at")
    if quarantined:
        say("warning", "quarantined", f"{quarantined:,} file{_s(quarantined)} quarantined")
    return found


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def hash_trouble(check: Mapping[str, Any] | None) -> bool:
    """Does an output hash cross-check (the finisher's) report a problem?"""
    if not check:
        return False
    return bool(
        check.get("unreadable")
        or check.get("missing")
        or check.get("empty")
        or check.get("not_done")
    )
