"""The fleet: engine jobs on Slurm that follow the work, run inside `reactor serve`.

Every `check_interval` seconds, and at once when a file becomes ready, it reads its jobs
from the queue, reads the work from the service (`EngineWork`), asks the pure sizing
(`reactor.core.fleet`) what to hold, and submits or cancels. The engines scale
themselves down: each exits after `idle_s` with nothing to do.

Why inside serve rather than a process of its own: the sizing needs the service's own
view (files waiting in every run, which engine holds which batch, how fast engines
have been), which a separate process would have to poll and could read stale; and a
service restart is the one moment both must agree on which jobs exist, which adoption
by job name handles in one place. Slurm's commands run as subprocesses, awaited with a
bound: the event loop never waits on them.

Ownership: the jobs carry the fleet's `name`, unique to this service (by default a hash
of its host and folders), so a restarted service finds its own with squeue and adopts
them instead of doubling them; a job gone from squeue is taken as ended (no accounting
database is assumed). A submission that fails backs off (10 s, doubling, at most
10 min); a queue that cannot be read stops submissions until it can (never ask blind).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from reactor.cluster.slurm import QueuedJob, Slurm, SlurmError, engine_id_of
from reactor.core.fleet import (
    EngineJob,
    EngineWork,
    JobPhase,
    Sizing,
    Workload,
    backoff_s,
    engines_wanted,
    plan,
)
from reactor.settings.fleet import FleetConfig

log = structlog.get_logger("reactor.fleet")

# The arrival rate is read over half of catch_up_s (at most five minutes: a run's pace
# changes), and over at least a fifth of that (a burst of seconds is not a rate).
MAX_ARRIVALS_WINDOW_S = 300.0
ENGINE_SEEN_S = 120.0  # an engine not seen this long is not counted as present
# Slurm's states of a job that stopped working other than by ending: replaced.
TROUBLE_STATES = frozenset(
    {"FAILED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY", "STOPPED",
     "SUSPENDED", "DEADLINE", "TIMEOUT"}
)  # fmt: skip


@dataclass(slots=True)
class TrackedJob:
    job_id: str
    known_since: float
    queued: QueuedJob | None = None  # its last line in squeue
    seen_in_queue: bool = False
    cancelled: bool = False
    held_batch: bool = False  # its engine held a batch at the last look
    expired_before: int | None = None  # its engine's expired leases when first seen
    went_silent: bool = False  # its engine let a lease expire since: dead or hung
    lost: bool = False  # no longer capacity, and not by exiting when idle or drained
    ran: bool = False  # Slurm showed it RUNNING at least once
    engine_seen: bool = False  # its engine reached the service at least once

    def phase(self, drain_s: float) -> JobPhase:
        if self.cancelled or self.lost:
            return JobPhase.ENDING
        if self.queued is None:  # just submitted, not read back yet
            return JobPhase.PENDING
        return self.queued.phase(drain_s)


@dataclass(slots=True)
class FleetCounts:
    submitted: int = 0
    submit_failures: int = 0
    cancelled: int = 0
    adopted: int = 0
    ended: int = 0
    lost: int = 0  # ended while its engine held a batch: died, killed or preempted
    never_connected: int = 0  # ran and ended without its engine reaching the service
    replaced: int = 0
    queue_failures: int = 0


@dataclass(slots=True)
class _Arrivals:
    window_s: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def rate(self, now: float, files_known: int) -> float:
        """Files per second that became known over the last `window_s`."""
        self.samples.append((now, files_known))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()
        began, before = self.samples[0]
        grown = max(files_known - before, 0)
        return grown / max(now - began, self.window_s / 5)


class Fleet:
    """Holds this service's engine jobs; `run()` until cancelled. One per service."""

    def __init__(
        self,
        config: FleetConfig,
        work: Callable[[], EngineWork],
        *,
        clock: Callable[[], float],
        slurm: Slurm | None = None,
    ) -> None:
        self.config = config
        self.work = work
        self.clock = clock
        self.slurm = slurm or Slurm(config)
        self.sizing = Sizing(
            config.min_engines, config.max_engines, config.catch_up_s, config.idle_s
        )
        self.jobs: dict[str, TrackedJob] = {}
        self.counts = FleetCounts()
        self.wanted = 0
        self._submit_streak = 0  # sbatch failures in a row
        self._silent_streak = 0  # jobs in a row whose engine never reached the service
        self.retry_at = 0.0
        self.last_error: str | None = None
        self.queue_error: str | None = None
        self.queue_read_at: float | None = None
        self._surplus_since: float | None = None
        self._replacements_due = 0
        self._ended_engines: dict[str, float] = {}  # engine id -> when its job ended
        self._arrivals = _Arrivals(min(config.catch_up_s / 2, MAX_ARRIVALS_WINDOW_S))
        self._wake = asyncio.Event()

    # --------------------------------------------------------------- the loop

    async def run(self) -> None:
        log.info(
            "fleet_started",
            name=self.config.name,
            min_engines=self.config.min_engines,
            max_engines=self.config.max_engines,
            submit_via=list(self.config.submit_via),
        )
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # a bug must not end the fleet: log it, look again later
                log.exception("fleet_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait_s())

    @property
    def failures_in_a_row(self) -> int:
        """Failed submissions and engines that never connected, in a row: the backoff."""
        return self._submit_streak + self._silent_streak

    def wake(self) -> None:
        """Work may have come: act now rather than at the next check."""
        self._wake.set()

    def _next_wait_s(self) -> float:
        wait = self.config.check_interval
        if self.failures_in_a_row:
            wait = min(wait, max(self.retry_at - self.clock(), 0.5))
        return wait

    async def tick(self) -> None:
        """One look: the queue when due, then the plan carried out."""
        now = self.clock()
        due = self.queue_read_at is None or now - self.queue_read_at >= self.config.check_interval
        work = self.work()
        self._note_batches(work)
        if due or self.queue_error is not None:
            await self._read_queue(now)
        if self.queue_error is not None:
            return  # never submit blind: a job may be queued that we cannot see
        self._check_trouble()
        workload = self._workload(work, self.clock())
        self.wanted = engines_wanted(workload, self.sizing)
        now = self.clock()
        decided = plan(
            self.engine_jobs(),
            self.wanted,
            now=now,
            idle_s=self.config.idle_s,
            surplus_since=self._surplus_since,
            may_submit=now >= self.retry_at,
        )
        self._surplus_since = decided.surplus_since
        if decided.cancel:
            await self._cancel(list(decided.cancel), workload.waiting_files)
        for _ in range(decided.submit):
            if not await self._submit(workload.waiting_files):
                break

    # ---------------------------------------------------------- queue and work

    async def _read_queue(self, now: float) -> None:
        try:
            lines = await self.slurm.queue()
        except SlurmError as exc:
            self.counts.queue_failures += 1
            if self.queue_error != str(exc):
                log.warning("fleet_queue_failed", error=str(exc), hint=_hint(str(exc)))
            self.queue_error = str(exc)
            return
        if self.queue_error is not None:
            log.info("fleet_queue_read_again")
        self.queue_error = None
        first_read = self.queue_read_at is None
        self.queue_read_at = now
        in_queue = {line.job_id: line for line in lines}
        for job_id, line in in_queue.items():
            job = self.jobs.get(job_id)
            if job is None:
                job = self.jobs[job_id] = TrackedJob(job_id, known_since=now)
                self.counts.adopted += 1
                log.info(
                    "fleet_adopt",
                    slurm_job=job_id,
                    state=line.state,
                    node=line.node,
                    engine_id=engine_id_of(job_id),
                    at_start=first_read,
                )
            job.queued = line
            job.seen_in_queue = True
            job.ran = job.ran or line.state == "RUNNING"
        grace_s = 2 * self.config.check_interval
        for job_id, job in list(self.jobs.items()):
            if job_id in in_queue:
                continue
            if not job.seen_in_queue and now - job.known_since < grace_s:
                continue  # submitted a moment ago: squeue may not show it yet
            self._ended(job)

    def _ended(self, job: TrackedJob) -> None:
        del self.jobs[job.job_id]
        self._ended_engines[engine_id_of(job.job_id)] = self.clock()
        self.counts.ended += 1
        if job.held_batch:  # gone mid-batch: killed, preempted, its node lost
            self._lost(job, "gone from the queue while its engine held a batch")
        log.info(
            "fleet_job_ended",
            slurm_job=job.job_id,
            engine_id=engine_id_of(job.job_id),
            last_state=job.queued.state if job.queued is not None else "never seen",
        )
        # Its engine never asked for work, and it ran (or ended before the queue was
        # read again: a command that fails at once). One last seen queued may have been
        # cancelled by a person instead: not counted.
        if not job.engine_seen and not job.cancelled and (job.ran or not job.seen_in_queue):
            self._never_connected(job)

    def _never_connected(self, job: TrackedJob) -> None:
        """A job ran and ended and its engine never asked for work: the engine cannot
        start on the nodes or cannot reach this service. Submitting again at once would
        only repeat it (a job a minute, all day): it counts as a failed submission, so
        the next one waits (backoff), and the log says what to check."""
        self.counts.never_connected += 1
        self._silent_streak += 1
        wait_s = backoff_s(self.failures_in_a_row)
        self.retry_at = self.clock() + wait_s
        self.last_error = (
            f"engine job {job.job_id} ran and ended without its engine reaching this service"
        )
        log.error(
            "fleet_engine_never_connected",
            slurm_job=job.job_id,
            engine_id=engine_id_of(job.job_id),
            node=(job.queued.node or None) if job.queued is not None else None,
            failures_in_a_row=self.failures_in_a_row,
            retry_in_s=wait_s,
            hint="read the job's log (log_dir); check engine_command on a node, that the "
            "node reaches manager_url, the token (env_file) and serve's allow list",
        )

    def _check_trouble(self) -> None:
        """Jobs that stopped being capacity other than by exiting when idle or drained."""
        for job in self.jobs.values():
            state = job.queued.state if job.queued is not None else ""
            if job.went_silent:
                self._lost(job, "its engine let a batch's lease expire: dead or hung")
            elif state in TROUBLE_STATES:
                self._lost(job, f"Slurm says {state}")
            elif job.held_batch and job.phase(self.config.drain_s) is JobPhase.ENDING:
                self._lost(job, f"{state or 'ending'} while its engine held a batch")

    def _lost(self, job: TrackedJob, why: str) -> None:
        if job.lost or job.cancelled:
            return
        job.lost = True
        self.counts.lost += 1
        self._replacements_due += 1
        log.warning(
            "fleet_job_lost",
            slurm_job=job.job_id,
            engine_id=engine_id_of(job.job_id),
            state=job.queued.state if job.queued is not None else None,
            node=(job.queued.node or None) if job.queued is not None else None,
            reason=why,
            detail="its batch, if any, goes to another engine when its lease expires; a "
            "replacement is submitted while work waits",
        )

    def _note_batches(self, work: EngineWork) -> None:
        """Which jobs' engines hold a batch, and which let a lease expire (a node that
        died or hangs: Slurm may take minutes to notice, the lease does not)."""
        for job in self.jobs.values():
            seen = work.engines.get(engine_id_of(job.job_id))
            if seen is None:
                job.held_batch = False
                continue
            if not job.engine_seen:
                job.engine_seen = True
                self._silent_streak = 0  # an engine got through: the way there works
            job.held_batch = seen.live_jobs > 0
            if job.expired_before is None:
                job.expired_before = seen.jobs_expired
            elif seen.jobs_expired > job.expired_before:
                job.went_silent = True

    def _workload(self, work: EngineWork, now: float) -> Workload:
        # The engines of jobs that ended lately are still "seen" for a while: they were
        # ours, not engines someone else started (counted as such, they would hold
        # the fleet at one job when work comes back).
        for engine_id, ended_at in list(self._ended_engines.items()):
            if now - ended_at > ENGINE_SEEN_S:
                del self._ended_engines[engine_id]
        ours = {engine_id_of(job_id) for job_id in self.jobs} | set(self._ended_engines)
        present = {k: e for k, e in work.engines.items() if e.last_seen_s <= ENGINE_SEEN_S}
        busy_s = sum(engine.busy_s for engine in work.engines.values())
        done = sum(engine.files_done for engine in work.engines.values())
        return Workload(
            waiting_files=work.waiting_files,
            batch_size=work.batch_size,
            working_engines=sum(1 for engine in present.values() if engine.live_jobs > 0),
            other_engines=sum(1 for engine_id in present if engine_id not in ours),
            files_per_engine_s=done / busy_s if busy_s > 0 and done > 0 else None,
            arrivals_per_s=self._arrivals.rate(now, work.files_known),
        )

    def engine_jobs(self) -> list[EngineJob]:
        drain_s = self.config.drain_s
        return [EngineJob(j.job_id, j.phase(drain_s), j.known_since) for j in self.jobs.values()]

    # ----------------------------------------------------------------- actions

    async def _submit(self, waiting_files: int) -> bool:
        try:
            job_id = await self.slurm.submit()
        except SlurmError as exc:
            self.counts.submit_failures += 1
            self._submit_streak += 1
            wait_s = backoff_s(self.failures_in_a_row)
            self.retry_at = self.clock() + wait_s
            self.last_error = str(exc)
            log.error(
                "fleet_submit_failed",
                error=str(exc),
                failures_in_a_row=self.failures_in_a_row,
                retry_in_s=wait_s,
                hint=_hint(str(exc)),
            )
            return False
        self._submit_streak = 0
        self.retry_at = 0.0
        self.jobs[job_id] = TrackedJob(job_id, known_since=self.clock())
        self.counts.submitted += 1
        fields: dict[str, Any] = {
            "slurm_job": job_id,
            "engine_id": engine_id_of(job_id),
            "waiting_files": waiting_files,
            "wanted": self.wanted,
        }
        if self._replacements_due:
            self._replacements_due -= 1
            self.counts.replaced += 1
            log.info("fleet_replace", **fields)
        else:
            log.info("fleet_submit", **fields)
        return True

    async def _cancel(self, job_ids: list[str], waiting_files: int) -> None:
        try:
            await self.slurm.cancel_pending(job_ids)
        except SlurmError as exc:  # some may have started or ended: the queue will say
            log.warning("fleet_cancel_failed", slurm_jobs=job_ids, error=str(exc))
            return
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is not None:
                job.cancelled = True
            self.counts.cancelled += 1
            log.info(
                "fleet_cancel",
                slurm_job=job_id,
                waiting_files=waiting_files,
                wanted=self.wanted,
                reason=f"queued and not wanted for {self.config.idle_s:g} s",
            )

    # ------------------------------------------------------------------ views

    def view(self) -> dict[str, Any]:
        """The fleet in /status."""
        now = self.clock()
        work = self.work()
        jobs = []
        by_phase = dict.fromkeys((str(phase) for phase in JobPhase), 0)
        for job in sorted(self.jobs.values(), key=lambda j: (j.known_since, j.job_id)):
            phase = job.phase(self.config.drain_s)
            by_phase[str(phase)] += 1
            queued = job.queued
            engine_id = engine_id_of(job.job_id)
            seen = work.engines.get(engine_id)
            jobs.append(
                {
                    "slurm_job": job.job_id,
                    "phase": str(phase),
                    "state": queued.state if queued else "SUBMITTED",
                    "reason": queued.reason if queued and phase is JobPhase.PENDING else None,
                    "node": (queued.node or None) if queued else None,
                    "time_left_s": queued.time_left_s if queued else None,
                    "engine_id": engine_id,
                    "engine": None
                    if seen is None
                    else {"live_jobs": seen.live_jobs, "last_seen_s": round(seen.last_seen_s, 3)},
                    "age_s": round(now - job.known_since, 3),
                }
            )
        retry_in = max(self.retry_at - now, 0.0) if self.failures_in_a_row else None
        return {
            "name": self.config.name,
            "min_engines": self.config.min_engines,
            "max_engines": self.config.max_engines,
            "wanted": self.wanted,
            **by_phase,
            "jobs": jobs,
            "submitted": self.counts.submitted,
            "submit_failures": self.counts.submit_failures,
            "failures_in_a_row": self.failures_in_a_row,
            "retry_in_s": None if retry_in is None else round(retry_in, 3),
            "last_error": self.last_error,
            "cancelled": self.counts.cancelled,
            "adopted": self.counts.adopted,
            "ended": self.counts.ended,
            "lost": self.counts.lost,
            "never_connected": self.counts.never_connected,
            "replaced": self.counts.replaced,
            "queue_failures": self.counts.queue_failures,
            "queue_error": self.queue_error,
            "queue_read_s_ago": None
            if self.queue_read_at is None
            else round(now - self.queue_read_at, 3),
        }


def _hint(error: str) -> str:
    lowered = error.lower()
    if "partition" in lowered:
        return "check fleet.partition against sinfo's partitions"
    if "account" in lowered or "association" in lowered:
        return "check fleet.account: sacctmgr show assoc user=$USER"
    if "cannot be started" in lowered:
        return "install Slurm's commands here, or set fleet.submit_via (such as ssh login-node)"
    if "munge" in lowered or "slurm_conf" in lowered or "configuration" in lowered:
        return "this host is not a Slurm submit host: set fleet.submit_via (such as ssh login-node)"
    return "see the error; the fleet tries again with backoff"
