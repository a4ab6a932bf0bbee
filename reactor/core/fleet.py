"""The fleet's decisions: how many engine jobs a cluster should hold, and which jobs to
submit or cancel to get there (pure functions).

The fleet (`reactor.cluster.fleet`) keeps engine jobs on a batch scheduler such as
Slurm between `min_engines` and `max_engines`. It sizes them by the work:

- With files waiting, and a measured speed `r` (files per second of one working engine:
  files done over the seconds engines spent on them), it wants enough engines to keep up
  with the files arriving (`arrivals_per_s`) *and* clear what waits within `catch_up_s`:
  ``ceil((arrivals + waiting / catch_up_s) / r)``. Before any speed is known it wants one
  engine per waiting batch.
- Never more engines than the work can occupy: those working now plus one per waiting
  batch. At least one while anything waits.
- With nothing waiting, `min_engines`: engines that are working finish their batch, and
  engines with nothing to do exit by themselves (`reactor engine --exit-when-idle`).

Engines the fleet did not start (the sequencer's own GPU, an engine started by hand)
count towards the total: the fleet adds only what they do not cover.

Jobs still queued count as capacity, so a slow queue never makes the fleet ask twice.
The fleet cancels only queued jobs, never a running one (which may have just taken a
batch), and only once they have been more than wanted for `idle_s`, as long as an idle
engine waits before exiting: a gap between two files does not throw away a place in the
queue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reactor.core.model import EngineRecord


class JobPhase(StrEnum):
    """What an engine job is to the fleet, from the scheduler's state and time left."""

    PENDING = "pending"  # queued (or being configured): coming, counts as capacity
    RUNNING = "running"  # an engine works or waits for work: capacity
    DRAINING = "draining"  # near its time limit: told to stop, a replacement is due
    ENDING = "ending"  # finishing, cancelled, failed, held or suspended: not capacity

    @property
    def is_capacity(self) -> bool:
        return self in (JobPhase.PENDING, JobPhase.RUNNING)


@dataclass(frozen=True, slots=True)
class EngineJob:
    """One engine job as the fleet knows it."""

    job_id: str
    phase: JobPhase
    known_since: float  # when this fleet submitted it or first saw it (adopted)


@dataclass(frozen=True, slots=True)
class EngineSeen:
    """What the service knows of one engine."""

    last_seen_s: float  # seconds ago
    live_jobs: int
    files_done: int
    busy_s: float  # seconds spent on the batches it finished
    jobs_expired: int = 0  # batches whose lease it let expire


@dataclass(frozen=True, slots=True)
class EngineWork:
    """The service's work, every run together, as the fleet reads it."""

    waiting_files: int
    files_known: int  # every file the service knows of: its growth is the arrival rate
    batch_size: int
    engines: Mapping[str, EngineSeen]


def engines_seen(
    engine_maps: Iterable[Mapping[str, EngineRecord]], now: float
) -> dict[str, EngineSeen]:
    """Each engine as the fleet sees it, its records in every run (host mode) merged."""
    seen: dict[str, EngineSeen] = {}
    for engines in engine_maps:
        for engine_id, engine in engines.items():
            mine = EngineSeen(
                now - engine.last_seen,
                len(engine.live_jobs),
                engine.files_done,
                engine.busy_s,
                engine.jobs_expired,
            )
            other = seen.get(engine_id)
            if other is not None:
                mine = EngineSeen(
                    min(mine.last_seen_s, other.last_seen_s),
                    mine.live_jobs + other.live_jobs,
                    mine.files_done + other.files_done,
                    mine.busy_s + other.busy_s,
                    mine.jobs_expired + other.jobs_expired,
                )
            seen[engine_id] = mine
    return seen


@dataclass(frozen=True, slots=True)
class Workload:
    """The work the engines share, every run of the service together."""

    waiting_files: int  # ready, not in any engine's hands
    batch_size: int  # files per batch handed out
    working_engines: int  # engines holding a batch now, the fleet's or not
    other_engines: int = 0  # engines seen lately that the fleet did not start
    files_per_engine_s: float | None = None  # one working engine's speed, when known
    arrivals_per_s: float = 0.0  # files becoming known, lately


@dataclass(frozen=True, slots=True)
class Sizing:
    min_engines: int
    max_engines: int
    catch_up_s: float  # clear what waits within this many seconds
    idle_s: float  # an unneeded queued job is cancelled after this long

    def __post_init__(self) -> None:
        if not 0 <= self.min_engines <= self.max_engines:
            msg = (
                f"need 0 <= min_engines <= max_engines, not {self.min_engines}, {self.max_engines}"
            )
            raise ValueError(msg)
        if self.catch_up_s <= 0 or self.idle_s < 0:
            msg = f"catch_up_s must be > 0 and idle_s >= 0, not {self.catch_up_s}, {self.idle_s}"
            raise ValueError(msg)


def engines_wanted(work: Workload, sizing: Sizing) -> int:
    """How many engine jobs the fleet should hold now (between min and max engines)."""
    if work.waiting_files <= 0:
        return sizing.min_engines
    batches = math.ceil(work.waiting_files / max(work.batch_size, 1))
    could_use = work.working_engines + batches  # more would find nothing to take
    speed = work.files_per_engine_s
    if speed is not None and speed > 0:
        files_per_s = max(work.arrivals_per_s, 0.0) + work.waiting_files / sizing.catch_up_s
        total = min(math.ceil(files_per_s / speed), could_use)
    else:
        total = could_use
    fleet = max(total - work.other_engines, 1)
    return min(max(fleet, sizing.min_engines), sizing.max_engines)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now: submit this many jobs, cancel these queued ones."""

    wanted: int
    submit: int
    cancel: tuple[str, ...]
    surplus_since: float | None  # carried to the next plan: queued jobs not wanted since


def capacity(jobs: Iterable[EngineJob]) -> int:
    return sum(1 for job in jobs if job.phase.is_capacity)


def plan(
    jobs: Sequence[EngineJob],
    wanted: int,
    *,
    now: float,
    idle_s: float,
    surplus_since: float | None,
    may_submit: bool,
) -> Plan:
    """Submit up to `wanted` (when submitting is allowed: not backing off, the queue
    read); cancel queued jobs beyond it, newest first, once the surplus has lasted
    `idle_s`. Running jobs are never cancelled."""
    have = capacity(jobs)
    submit = max(wanted - have, 0) if may_submit else 0
    queued = sorted(
        (job for job in jobs if job.phase is JobPhase.PENDING),
        key=lambda job: (job.known_since, job.job_id),
        reverse=True,
    )
    surplus = min(have - wanted, len(queued))
    if surplus <= 0:
        return Plan(wanted, submit, (), None)
    since = now if surplus_since is None else surplus_since
    if now - since < idle_s:
        return Plan(wanted, submit, (), since)
    return Plan(wanted, submit, tuple(job.job_id for job in queued[:surplus]), None)


def backoff_s(failures: int, first_s: float = 10.0, most_s: float = 600.0) -> float:
    """Seconds to wait before submitting again after `failures` failed submissions in a
    row: `first_s`, doubling, at most `most_s`."""
    if failures <= 0:
        return 0.0
    return min(first_s * 2.0 ** min(failures - 1, 30), most_s)
