"""The pure core: files, jobs, engines and the ready queue.

`RunState` is a plain synchronous class with no I/O, no clock and no randomness: every
method takes the time (`now`, seconds) and any new job id from its caller. The adapters
around it (journal, watcher, HTTP handlers, sweeper) do the I/O; see `service.py`.

Changes that must reach the disk first are split in two: `plan_*` looks and decides
without changing anything, the caller writes the decision to disk, then `commit_*` /
`apply_*` changes memory. If the disk write fails, nothing was changed here, so an
assignment is all-or-nothing (the seed lost files by popping them before its I/O).
While the disk write is under way other requests are served, so the files a plan
takes are `reserve`d: no other plan takes them meanwhile.

Every method costs O(1) or O(batch), never O(files) (amortized: the ready queue is
rebuilt once per n/4 removals): files live in a dict, the ready queue
(`reactor.core.ready_queue`) is two plain dicts used as a deque with O(1) removal from
the middle (a deleted `.pod5` leaves the queue at once), and state counts are kept
incrementally.

States:
    file: incomplete -> ready -> assigned -> done | quarantined ;
          assigned -> ready again when its job expired, failed, was released or refused
    job:  assigned -> processing -> done | failed | released | refused | expired | unknown ;
          expired -> done (a late DONE, none of its files out again) | refused
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from reactor.core.model import (
    LIVE_JOB_STATES,
    AssignPlan,
    CompletionAction,
    CompletionPlan,
    EngineRecord,
    EngineReport,
    FileRecord,
    FileState,
    Job,
    JobState,
    UnknownJob,
)
from reactor.core.ready_queue import ReadyQueue
from reactor.core.retry import SKIP_LIMIT, FailureHistory, halves, should_bench, should_quarantine

# The records live in reactor.core.model; they are re-exported here, where callers look.
__all__ = [
    "LIVE_JOB_STATES",
    "AssignPlan",
    "CompletionAction",
    "CompletionPlan",
    "EngineRecord",
    "EngineReport",
    "FileRecord",
    "FileState",
    "Job",
    "JobState",
    "RunState",
    "UnknownJob",
]


class RunState:
    """The whole run in memory. One instance, owned by the event loop."""

    def __init__(
        self,
        max_attempts: int,
        *,
        bench_after: int = 0,
        bench_s: float = 300.0,
        engine_window_s: float = 90.0,
    ) -> None:
        if max_attempts < 1:
            msg = f"max_attempts must be at least 1, not {max_attempts}"
            raise ValueError(msg)
        self.max_attempts = max_attempts
        self.bench_after = bench_after
        self.bench_s = bench_s
        self.engine_window_s = engine_window_s  # an engine seen this recently is working
        self.files: dict[str, FileRecord] = {}
        self.jobs: dict[str, Job] = {}
        self.engines: dict[str, EngineRecord] = {}
        self._ready = ReadyQueue()  # the ready queue, front first
        # Told each time a file becomes ready (engines waiting for work are woken).
        self.ready_listener: Callable[[], None] = _nothing
        self._incomplete: set[str] = set()  # so the settle timer never walks all files
        self._quarantined: dict[str, None] = {}  # so /status lists them without walking all files
        self._live_jobs: dict[str, Job] = {}
        self._held: dict[str, Job] = {}  # jobs kept for a person, with their reason
        self._reserved: set[str] = set()  # ready files a step on disk is about to take
        self._counts: Counter[FileState] = Counter()
        self.last_activity = 0.0

    # ------------------------------------------------------------------ queries

    def counts(self) -> dict[FileState, int]:
        return {state: self._counts[state] for state in FileState}

    def working_engines(self, now: float) -> int:
        """Engines seen within `engine_window_s` of `now`."""
        since = now - self.engine_window_s
        return sum(1 for engine in self.engines.values() if engine.last_seen >= since)

    def backlog(self) -> tuple[int, float]:
        """(files ready and not reserved, when the front one became ready; 0.0 when none)."""
        waiting = len(self._ready) - len(self._reserved)
        if waiting <= 0:
            return 0, 0.0
        return waiting, self.files[self._ready.first()].changed_at

    def ready_names(self) -> Iterator[str]:
        """The ready queue, front first."""
        return iter(self._ready)

    def quarantined_names(self) -> Iterator[str]:
        """Quarantined files, in the order they were quarantined (or restored)."""
        return iter(self._quarantined)

    def live_jobs(self) -> Iterable[Job]:
        return self._live_jobs.values()

    def live_count(self) -> int:
        return len(self._live_jobs)

    def held_jobs(self) -> Iterable[Job]:
        """Jobs held for a person, oldest first: refused outputs, or a step on disk that
        could not be carried out (each says why in `reason`)."""
        return self._held.values()

    def held_count(self) -> int:
        return len(self._held)

    def hold(self, job_id: str, reason: str) -> None:
        """Keep this job for a person: `reason` says what is wrong with it."""
        job = self.job(job_id)
        job.reason = reason
        self._held[job_id] = job

    def unhold(self, job_id: str) -> None:
        """The job's trouble is over (a step that failed was carried out after all)."""
        if (job := self._held.pop(job_id, None)) is not None and job.state is not JobState.REFUSED:
            job.reason = ""

    def reserve(self, names: Iterable[str]) -> None:
        """Ready files that a step on disk is about to take (an assignment, a late
        merge): until `unreserve` or `commit_assignment`, no plan hands them out, no late
        DONE merges them and no output marks them done. They stay ready (and counted so)."""
        self._reserved.update(names)

    def unreserve(self, names: Iterable[str]) -> None:
        """The step is over. A file deleted from INPUTDIR meanwhile, still ready, is
        forgotten now, as `file_gone` would have."""
        for name in names:
            self._reserved.discard(name)
            record = self.files.get(name)
            if record is not None and record.state is FileState.READY and not record.present:
                self._forget(name)

    def reserved(self, name: str) -> bool:
        return name in self._reserved

    def state_of(self, name: str) -> FileState | None:
        record = self.files.get(name)
        return record.state if record else None

    def job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    # ------------------------------------------------------- internal transitions

    def _new_record(self, name: str, state: FileState, now: float, failures: int = 0) -> None:
        self.files[name] = FileRecord(state=state, failures=failures, changed_at=now)
        self._track(name, state)

    def _track(self, name: str, state: FileState) -> None:
        self._counts[state] += 1
        if state is FileState.READY:
            self._ready.append(name)
            self.ready_listener()
        elif state is FileState.INCOMPLETE:
            self._incomplete.add(name)
        elif state is FileState.QUARANTINED:
            self._quarantined[name] = None

    def _untrack(self, name: str, state: FileState) -> None:
        self._counts[state] -= 1
        if state is FileState.READY:
            self._ready.discard(name)
        elif state is FileState.INCOMPLETE:
            self._incomplete.discard(name)
        elif state is FileState.QUARANTINED:
            del self._quarantined[name]

    def _move(self, name: str, record: FileRecord, state: FileState, now: float) -> None:
        self._untrack(name, record.state)
        record.state = state
        record.changed_at = now
        self._track(name, state)

    def _forget(self, name: str) -> None:
        record = self.files.pop(name)
        self._untrack(name, record.state)

    def _requeue_front(self, names: Iterable[str], now: float) -> None:
        """Put files back at the front of the queue, keeping their order."""
        for name in reversed(tuple(names)):
            record = self.files[name]
            record.job_id = None
            if not record.present:
                self._forget(name)
                continue
            self._move(name, record, FileState.READY, now)
            self._ready.push_front(name)

    def redo(self, now: float, *, forget: bool = False) -> list[str]:
        """Every done file is to be basecalled again (a run's parameters changed, its old
        outputs set aside): back in the queue in the order they were done, with fresh
        attempts; or (`forget`) forgotten, to be found again (staging: their copies are
        gone). Returns their names."""
        done = [name for name, record in self.files.items() if record.state is FileState.DONE]
        done.sort(key=lambda name: self.files[name].changed_at)
        for name in done:
            record = self.files[name]
            if forget or not record.present:
                self._forget(name)
                continue
            record.failures = record.solo_failures = record.batch_cap = 0
            record.failed_on = frozenset()
            record.job_id = record.expired_job = None
            self._move(name, record, FileState.READY, now)
        return done

    def _engine(self, engine_id: str, now: float) -> EngineRecord:
        engine = self.engines.get(engine_id)
        if engine is None:
            engine = self.engines[engine_id] = EngineRecord(engine_id, now)
        engine.last_seen = now
        return engine

    # ------------------------------------------------------------ ingestion

    def file_seen(
        self,
        name: str,
        *,
        complete: bool,
        now: float,
        history: FailureHistory | None = None,
        front: bool = False,
    ) -> FileState:
        """A `.pod5` exists in INPUTDIR; `complete` says whether its signature is whole.

        Known files keep their state unless an incomplete one has now become complete.
        Files that failed before (`history`) or whose job was released (`front`), both
        known from disk at restart, go to the front of the queue. Returns the file's
        state afterwards.
        """
        record = self.files.get(name)
        if record is None:
            state = FileState.READY if complete else FileState.INCOMPLETE
            self._new_record(name, state, now)
            failed = history is not None and history.failures > 0
            if history is not None and failed:
                new = self.files[name]
                new.failures = history.failures
                new.solo_failures = history.solo_failures
                new.failed_on = history.failed_on
                new.batch_cap = history.batch_cap
            if state is FileState.READY and (failed or front):
                self._ready.push_front(name)
            return state
        record.present = True
        if record.state is FileState.INCOMPLETE:
            if complete:
                self._move(name, record, FileState.READY, now)
            else:
                record.changed_at = now  # activity: restarts the settle timer
        return record.state

    def file_found(self, name: str, *, complete: bool, now: float) -> None:
        """`file_seen` for a file with no record, no history and nothing sending it to
        the front: the start-up scan's common case, 10^6 times at start."""
        if name in self.files:
            self.file_seen(name, complete=complete, now=now)
            return
        self._new_record(name, FileState.READY if complete else FileState.INCOMPLETE, now)

    def file_gone(self, name: str, now: float) -> FileState | None:
        """The `.pod5` was deleted or moved out of INPUTDIR. Returns its state, if known.

        Waiting files are forgotten. An assigned file stays with its job (the engine may
        already hold it open) but will not be queued again; so does a reserved one until
        its step is over. Done and quarantined files keep their record, so a copy that
        reappears later is not basecalled twice.
        """
        record = self.files.get(name)
        if record is None:
            return None
        state = record.state
        if state in (FileState.INCOMPLETE, FileState.READY) and name not in self._reserved:
            self._forget(name)
        else:
            record.present = False
            record.changed_at = now
        return state

    def mark_done_by_output(self, name: str, now: float) -> bool:
        """The seed's rule: an output in pass/ or fail/ with this file's stem marks it done.

        Only waiting files (or not-yet-seen ones) change: a file held by a job is that
        job's business, and its own merged outputs trigger this rule too.
        """
        record = self.files.get(name)
        if record is None:
            self._new_record(name, FileState.DONE, now)
            self.files[name].present = False
            return True
        if record.state in (FileState.INCOMPLETE, FileState.READY) and name not in self._reserved:
            self._move(name, record, FileState.DONE, now)
            return True
        return False

    def incomplete_due(self, now: float, settle_s: float) -> list[str]:
        """Incomplete files quiet for `settle_s`: the settle timer re-checks these.

        O(incomplete files), which are the few files being written right now.
        """
        return [name for name in self._incomplete if now - self.files[name].changed_at >= settle_s]

    # -------------------------------------------------------------- restore

    def restore_done(self, name: str, now: float) -> None:
        """At start: the journal says this file is done (present or not in INPUTDIR)."""
        if name not in self.files:
            self._new_record(name, FileState.DONE, now)
            self.files[name].present = False

    def restore_done_found(self, names: Iterable[str], now: float) -> None:
        """At start: `restore_done` for files the scan found in INPUTDIR (present), many
        at once: the start-up scan's common case at a run half done, 10^5 times."""
        files, made = self.files, 0
        for name in names:
            if name not in files:
                files[name] = FileRecord(FileState.DONE, 0, now)
                made += 1
        self._counts[FileState.DONE] += made

    def requeue_in_order(self, names: Iterable[str]) -> None:
        """Move these ready files to the back of the queue, in this order (the start-up
        scan's, oldest first, once it has seen them all); the other ready files keep
        their places ahead of them. Names not ready are skipped (the queue holds exactly
        the ready files). O(files): once, at the end of the start-up scan."""
        self._ready.move_to_back(names)

    def restore_quarantined(self, name: str, failures: int, now: float) -> None:
        if name not in self.files:
            self._new_record(name, FileState.QUARANTINED, now, failures)
            self.files[name].present = False

    def release_quarantined(self, names: Iterable[str], now: float) -> list[str]:
        """A person released these quarantined files: back to the front of the queue, with
        fresh attempts (their failure counts keep numbering attempts). Returns the names
        released: quarantined files that are still in INPUTDIR."""
        released = [
            name
            for name in names
            if (record := self.files.get(name)) is not None
            and record.state is FileState.QUARANTINED
            and record.present
        ]
        for name in released:
            record = self.files[name]
            record.solo_failures = 0
            record.failed_on = frozenset()
            record.batch_cap = 0
        self._requeue_front(released, now)
        return released

    def restore_job(self, job: Job) -> None:
        """At start: a job found on disk. Live jobs take their files (present or not)."""
        self.jobs[job.job_id] = job
        engine = self._engine(job.engine_id, job.last_seen)
        if job.live:
            self._live_jobs[job.job_id] = job
            engine.live_jobs.add(job.job_id)
            for name, attempt in job.files.items():
                record = self.files.get(name)
                if record is None:
                    self._new_record(name, FileState.ASSIGNED, job.assigned_at, attempt - 1)
                    record = self.files[name]
                    record.present = False  # until the input scan sees it
                elif record.state is not FileState.ASSIGNED:
                    self._move(name, record, FileState.ASSIGNED, job.assigned_at)
                record.job_id = job.job_id
        elif job.state is JobState.EXPIRED and not job.superseded:
            for name in job.files:
                self._remember_expired(name, job.job_id)
        if job.state is JobState.REFUSED:
            self._held[job.job_id] = job

    def _remember_expired(self, name: str, job_id: str) -> None:
        record = self.files.get(name)
        if record is not None and record.state is not FileState.DONE:
            record.expired_job = job_id

    # ------------------------------------------------------------ assignment

    def plan_assignment(self, engine_id: str, batch_size: int, now: float) -> AssignPlan:
        """Choose up to `batch_size` files from the front of the queue. Changes nothing.

        A batch never mixes files with different batch caps (the halves of a failed
        batch go out on their own), and, while other engines work, an engine skips files
        it already failed alone, until they failed alone on two engines (looking at most
        SKIP_LIMIT files past the front). O(batch + SKIP_LIMIT).
        """
        engine = self.engines.get(engine_id)
        if engine is not None and now < engine.benched_until:
            return AssignPlan(engine_id, {}, (), benched=True)
        others = self.other_engines_working(engine_id, now)
        names: list[str] = []
        cap: int | None = None
        skipped = 0
        limit = max(batch_size, 0)
        for name in self._ready if limit else ():
            if name in self._reserved:
                continue
            record = self.files[name]
            # Skip only until a second engine failed it: that is all quarantine asks of
            # engines, and with two engines both would skip it for ever.
            if others and engine_id in record.failed_on and len(record.failed_on) < 2:
                skipped += 1
                if skipped > SKIP_LIMIT:
                    break
                continue
            if cap is None:
                cap = record.batch_cap
                limit = min(limit, cap) if cap else limit
            elif record.batch_cap != cap:
                break
            names.append(name)
            if len(names) >= limit:
                break
        files = {name: self.files[name].failures + 1 for name in names}
        supersede = {
            record.expired_job
            for name in names
            if (record := self.files[name]).expired_job is not None
        }
        return AssignPlan(engine_id, files, tuple(sorted(supersede)))

    def commit_assignment(self, plan: AssignPlan, job_id: str, now: float, lease_s: float) -> Job:
        """The journal has written the job: hand its files out."""
        if job_id in self.jobs:
            msg = f"job id {job_id} is already in use"
            raise ValueError(msg)
        # Check the whole plan before changing anything: a stale plan must not leave some
        # files ASSIGNED to a job that was never recorded (they would never come back).
        for name in plan.files:
            record = self.files.get(name)
            if record is None or record.state is not FileState.READY:
                state = "gone" if record is None else record.state
                msg = f"{name} is {state}, not ready: the plan is stale"
                raise ValueError(msg)
        for expired_id in plan.supersede:
            self.supersede(self.jobs[expired_id])
        job = Job(
            job_id=job_id,
            engine_id=plan.engine_id,
            files=dict(plan.files),
            state=JobState.ASSIGNED,
            assigned_at=now,
            last_seen=now,
            lease_s=lease_s,
        )
        for name in plan.files:
            record = self.files[name]
            self._move(name, record, FileState.ASSIGNED, now)
            record.job_id = job_id
            record.expired_job = None
        self._reserved.difference_update(plan.files)
        self.jobs[job_id] = job
        self._live_jobs[job_id] = job
        self._engine(plan.engine_id, now).live_jobs.add(job_id)
        self.last_activity = now
        return job

    def other_engines_working(self, engine_id: str, now: float) -> bool:
        """Another engine was seen within `engine_window_s` and is not benched. O(engines)."""
        since = now - self.engine_window_s
        return any(
            e.engine_id != engine_id and e.last_seen >= since and now >= e.benched_until
            for e in self.engines.values()
        )

    def forget_idle_engines(self, now: float, idle_s: float) -> list[str]:
        """Forget engines silent for `idle_s` that hold no live job and are not benched,
        so the engines known stay bounded over months of engine ids that come and go
        (Slurm job ids in engine names). Returns their ids. O(engines)."""
        since = now - idle_s
        gone = [
            engine_id
            for engine_id, engine in self.engines.items()
            if engine.last_seen < since and not engine.live_jobs and now >= engine.benched_until
        ]
        for engine_id in gone:
            del self.engines[engine_id]
        return gone

    def engine_polled(self, engine_id: str, now: float) -> None:
        """An engine asked for work (even if it got none): it is alive."""
        self._engine(engine_id, now)
        self.last_activity = now

    # ------------------------------------------------------------- keepalive

    def keepalive(self, job_id: str, engine_state: str, now: float) -> bool:
        """Extend a live job's lease. Returns True if the job is late (the engine must stop)."""
        job = self.job(job_id)
        self.last_activity = now
        self._engine(job.engine_id, now)
        if not job.live:
            return True  # expired, or already completed: the engine must not go on
        job.last_seen = now
        job.engine_state = engine_state
        job.state = JobState.PROCESSING
        return False

    # ------------------------------------------------------------ completion

    def plan_completion(self, job_id: str, outcome: EngineReport, now: float) -> CompletionPlan:
        """Decide what a /completed report does. Changes nothing."""
        job = self.job(job_id)
        if job.live:
            return self._plan_live_completion(job, outcome, now)
        if job.state is JobState.EXPIRED:
            return self._plan_late_completion(job, outcome)
        if job.state is JobState.REFUSED:
            # Its DONE was refused: another DONE is answered the same way, anything else
            # changes nothing (its files went back when it was refused).
            if outcome is EngineReport.DONE:
                return CompletionPlan(
                    job, outcome, CompletionAction.LATE_NOT_MERGED, reason=job.reason
                )
            return CompletionPlan(job, outcome, CompletionAction.REPEAT)
        finished = {
            JobState.DONE: EngineReport.DONE,
            JobState.FAILED: EngineReport.FAILED,
            JobState.RELEASED: EngineReport.RELEASED,
            JobState.UNKNOWN: EngineReport.UNKNOWN,
        }[job.state]
        if outcome is finished or finished is EngineReport.UNKNOWN:
            return CompletionPlan(job, outcome, CompletionAction.REPEAT)
        return CompletionPlan(
            job,
            outcome,
            CompletionAction.CONFLICT,
            reason=f"job {job_id} was already completed as {finished}",
        )

    def _plan_live_completion(self, job: Job, outcome: EngineReport, now: float) -> CompletionPlan:
        if outcome is EngineReport.DONE:
            return CompletionPlan(job, outcome, CompletionAction.MERGE)
        if outcome is EngineReport.UNKNOWN:
            return CompletionPlan(job, outcome, CompletionAction.SET_ASIDE)
        present = tuple(name for name in job.files if self.files[name].present)
        if outcome is EngineReport.RELEASED:
            # Handed back unfinished: not a failure, so nothing counts and nothing is halved.
            return CompletionPlan(job, outcome, CompletionAction.RELEASE, present, ())
        if len(job.files) == 1 and present:
            # Failed alone: only now does a failure count towards quarantine.
            (name,) = present
            record = self.files[name]
            if should_quarantine(
                record.solo_failures + 1,
                record.failed_on | {job.engine_id},
                self.max_attempts,
                self.other_engines_working(job.engine_id, now),
            ):
                return CompletionPlan(job, outcome, CompletionAction.FAIL, (), present)
        # A batch is not blamed on all its files: they go back, to be retried in halves.
        return CompletionPlan(job, outcome, CompletionAction.FAIL, present, ())

    def _plan_late_completion(self, job: Job, outcome: EngineReport) -> CompletionPlan:
        if outcome is not EngineReport.DONE:
            return CompletionPlan(job, outcome, CompletionAction.LATE_IGNORED)
        taken = [
            name
            for name in job.files
            if (record := self.files.get(name)) is None
            or record.state is not FileState.READY
            or record.expired_job != job.job_id
            or name in self._reserved
        ]
        if job.superseded or taken:
            return CompletionPlan(
                job,
                outcome,
                CompletionAction.LATE_NOT_MERGED,
                supersede=not job.superseded,
                reason=(
                    f"job {job.job_id} expired and its files were handed out again; "
                    "its outputs are kept aside and not merged"
                ),
            )
        return CompletionPlan(job, outcome, CompletionAction.MERGE)

    def plan_refusal(self, plan: CompletionPlan, reason: str) -> CompletionPlan:
        """A MERGE the disk cannot carry out, because the job's outputs break the rules
        (`reason` says how): refuse it instead. A live job's files go back to the front
        of the queue with nothing counted against them; an expired job's are already
        back. Changes nothing."""
        job = plan.job
        present = tuple(n for n in job.files if job.live and self.files[n].present)
        return CompletionPlan(
            job, plan.outcome, CompletionAction.REFUSE, present, (), reason=reason
        )

    def apply_completion(self, plan: CompletionPlan, now: float) -> None:
        """The journal has carried the plan out on disk: update memory to match."""
        job = plan.job
        self.last_activity = now
        engine = self._engine(job.engine_id, now)
        action = plan.action
        if action is CompletionAction.LATE_NOT_MERGED:
            if plan.supersede:
                self.supersede(job)
            return
        if action in (
            CompletionAction.REPEAT,
            CompletionAction.LATE_IGNORED,
            CompletionAction.CONFLICT,
        ):
            return
        if action is CompletionAction.REFUSE:
            self._refuse(job, plan, engine, now)
            return
        self._end_live(job, now)
        if action is CompletionAction.MERGE:
            job.state = JobState.DONE
            engine.failure_streak = 0
            engine.jobs_done += 1
            engine.files_done += len(job.files)
            engine.busy_s += max(now - job.assigned_at, 0.0)
            for name in job.files:
                record = self.files[name]
                record.job_id = None
                record.expired_job = None
                self._move(name, record, FileState.DONE, now)
        elif action is CompletionAction.FAIL:
            job.state = JobState.FAILED
            engine.jobs_failed += 1
            # A batch of files that failed before is most likely failing for them (a
            # poison file being isolated), not for the engine: it does not count.
            if all(attempt == 1 for attempt in job.files.values()):
                self._count_failure(engine, now)
            for name in job.files:
                record = self.files[name]
                record.failures += 1
                if len(job.files) == 1:
                    record.solo_failures += 1
                    record.failed_on = record.failed_on | {job.engine_id}
            for half, cap in halves(plan.requeue):
                for name in half:
                    self.files[name].batch_cap = cap
            for name in plan.quarantine:
                record = self.files[name]
                record.job_id = None
                self._move(name, record, FileState.QUARANTINED, now)
            gone = [n for n in job.files if n not in plan.requeue and n not in plan.quarantine]
            for name in gone:  # assigned, then deleted from INPUTDIR: nothing to retry
                self._forget(name)
            self._requeue_front(plan.requeue, now)
        elif action is CompletionAction.RELEASE:
            # The files go back as they came: their failures, solo failures, engines and
            # batch caps stay, so the next attempt number is this job's again. The
            # engine's failure streak neither grows nor resets: a release says nothing
            # about its health.
            job.state = JobState.RELEASED
            engine.jobs_released += 1
            self._requeue_front(job.files, now)
        elif action is CompletionAction.SET_ASIDE:
            job.state = JobState.UNKNOWN
            engine.jobs_failed += 1
            for name in job.files:
                record = self.files[name]
                record.job_id = None
                self._move(name, record, FileState.QUARANTINED, now)

    def _refuse(self, job: Job, plan: CompletionPlan, engine: EngineRecord, now: float) -> None:
        """The files are not at fault (an engine that writes links or devices would fail
        on any file), so nothing counts against them; the engine is: a refusal counts
        towards its bench like a failed batch of fresh files."""
        was_live = job.live
        self._end_live(job, now)
        job.state = JobState.REFUSED
        engine.jobs_failed += 1
        self._count_failure(engine, now)
        if was_live:
            gone = [n for n in job.files if n not in plan.requeue]
            for name in gone:  # assigned, then deleted from INPUTDIR: nothing to retry
                self._forget(name)
            self._requeue_front(plan.requeue, now)
        self.supersede(job)  # no late DONE may merge it now
        self.hold(job.job_id, plan.reason)

    def _count_failure(self, engine: EngineRecord, now: float) -> None:
        engine.failure_streak += 1
        others = self.other_engines_working(engine.engine_id, now)
        if should_bench(engine.failure_streak, self.bench_after, others):
            engine.benched_until = now + self.bench_s
            engine.failure_streak = 0

    def _end_live(self, job: Job, now: float) -> None:
        job.finished_at = now
        self._live_jobs.pop(job.job_id, None)
        engine = self.engines.get(job.engine_id)
        if engine is not None:
            engine.live_jobs.discard(job.job_id)

    def supersede(self, job: Job) -> None:
        """The journal set an expired job's outputs aside: no late DONE can merge it now."""
        job.superseded = True
        for name in job.files:
            record = self.files.get(name)
            if record is not None and record.expired_job == job.job_id:
                record.expired_job = None

    # ---------------------------------------------------------------- expiry

    def expired_jobs(self, now: float) -> list[Job]:
        """Live jobs whose lease ran out. O(live jobs)."""
        return [job for job in self._live_jobs.values() if now > job.deadline()]

    def expire(self, job_id: str, now: float) -> None:
        """The journal has recorded the expiry: the job's files go back to the front."""
        job = self.job(job_id)
        if not job.live:
            return
        self._end_live(job, now)
        job.state = JobState.EXPIRED
        engine = self.engines.get(job.engine_id)
        if engine is not None:
            engine.jobs_expired += 1
        self._requeue_front(job.files, now)
        for name in job.files:
            self._remember_expired(name, job_id)


def _nothing() -> None:
    """No one listens (the default ready_listener)."""
