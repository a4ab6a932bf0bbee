"""The coordinator: runs each request and filesystem event through core and journal.

`Reactor` owns the one `RunState` and the one `Journal`. Everything here runs on the
event loop thread: HTTP handlers, the watcher bridge and the sweeper all call in, so
no locks are needed. Each mutating operation is: plan in the core (pure), carry the
plan out on disk (journal), then commit it in the core, then log one event. Disk
first: if the journal raises before its decision is committed (`JournalError`), memory
is unchanged and the caller gets an error; if a step after a committed decision fails
(`Unfinished`), the decision stands, memory follows it, and the job is held.

Journal steps are small (a handful of mkdir/symlink/rename calls per job), so they
run inline on the loop; that keeps every operation atomic with respect to the others.
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from reactor.core.endrun import RunEnd, phase_of
from reactor.core.events import Area, Change, FsEvent
from reactor.core.model import Clock
from reactor.core.names import RESULT_FOLDERS, Folder, JobFolder, is_pod5_name, output_stem
from reactor.core.rate import Throughput
from reactor.core.retry import FailureHistory
from reactor.core.state import (
    CompletionAction,
    CompletionPlan,
    EngineReport,
    FileState,
    Job,
    JobState,
    RunState,
)
from reactor.core.status import count_fields, status_line, status_report
from reactor.disk.journal import Journal, JournalError, Merged, Refused, Unfinished
from reactor.disk.recovery import Recovered, recover
from reactor.disk.signature import check_pod5
from reactor.disk.state_dir import StateError
from reactor.serve.metrics import Metrics
from reactor.settings.serve import ServeConfig

log = structlog.get_logger("reactor")

MAX_BATCH_SIZE = 10_000
# An engine silent this long, with no live job and not benched, is forgotten: /status and
# the engine records stay bounded while engine ids come and go over months.
ENGINE_FORGET_S = 3600.0


# Start-up makes one record per file (10^6 in a site archive). While they are built the
# cyclic GC walks the growing heap again and again (a quarter of the build time, measured
# at 10^6 files), and each later full collection walks them all once more (~0.25 s of
# stalled loop per pass at 10^6 files). Records hold no reference cycles, so they are
# built with the collector paused and, for a large run, moved out of its sight.
FREEZE_HEAP_AT_FILES = 10_000


@contextlib.contextmanager
def _gc_paused(freeze: Callable[[], bool]) -> Iterator[None]:
    """Pause the cyclic GC; after the block, `gc.freeze()` what exists if `freeze()`."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze():
            gc.freeze()
        if was_enabled:
            gc.enable()


def new_job_id() -> str:
    """An unguessable job id: 128 random bits in decimal (the seed's shape, uuid4().int).
    A job id is the capability to report on its job (docs/protocol.md)."""
    return str(secrets.randbits(128))


class Conflict(Exception):
    """A request that cannot be carried out in the job's current state (HTTP 409)."""


class StartupError(Exception):
    """The run as a whole cannot be served (its folders or its state folder unusable);
    the message names the real cause and what to do. One job's trouble never is one."""


class StepsLeft(Exception):
    """The report was decided and memory follows it, but a step on disk after the
    decision could not be carried out yet: the job is held until it is. Repeating the
    report tries the steps again; `Reactor.hold_for_good` says so in the log when the
    caller stops trying."""

    def __init__(self, plan: CompletionPlan, reason: str) -> None:
        super().__init__(reason)
        self.plan = plan
        self.reason = reason


class Reactor:
    """The running service: state, journal, and the operations on them."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        clock: Clock = time.monotonic,
        journal: Journal | None = None,
        job_id_factory: Callable[[], str] = new_job_id,
    ) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal or Journal(config.input_dir, config.output_dir)
        self.state = RunState(
            config.max_attempts,
            bench_after=config.bench_after,
            bench_s=config.bench_seconds,
            engine_window_s=config.report_back_interval,
        )
        self._new_job_id = job_id_factory
        self.ready = False
        self.throughput = Throughput(started_at=clock())
        self.reconciles = 0
        self.metrics = Metrics(self.state, clock)
        self._refused: set[str] = set()  # names refused once, so they are logged once
        self.run_end = RunEnd()  # set by reactor.serve.finisher: stop file seen, complete
        # FAILED_/UNKNOWN_ folder name -> (folder, the .pod5 names it quarantines)
        self.quarantine_folders: dict[str, tuple[JobFolder, list[str]]] = {}

    # ------------------------------------------------------------ start

    def start(self) -> Recovered:
        """Rebuild state from disk (finishing half-done transitions), then scan INPUTDIR.
        Raises StartupError when the run folders themselves cannot be used."""
        try:
            with _gc_paused(freeze=lambda: len(self.state.files) >= FREEZE_HEAP_AT_FILES):
                return self._start()
        except StateError as exc:
            raise StartupError(exc.strerror or str(exc)) from exc
        except OSError as exc:
            where = exc.filename or self.config.output_dir
            msg = (
                f"cannot read the run folders ({where}: {exc.strerror or exc}): check that "
                "input_dir and output_dir are folders this user can read and write"
            )
            raise StartupError(msg) from exc

    def _start(self) -> Recovered:
        began = time.perf_counter()
        now = self.clock()
        lease_s = self.config.report_back_interval
        recovered = recover(self.journal, now, lease_s)
        state = self.state
        for name in recovered.done:
            state.restore_done(name, now)
        for name in recovered.quarantined:
            history = recovered.history.get(name)
            state.restore_quarantined(name, history.failures if history else 0, now)
        for job in recovered.live:
            state.restore_job(job)
        stems = self.journal.result_stems()
        self._scan_inputs(now, recovered.history, recovered.handed_back, stems)
        for job in recovered.finished:
            state.restore_job(job)
        self.quarantine_folders = dict(recovered.quarantine_folders)
        for what, folder in recovered.repairs:
            log.warning("recovery_repair", repair=what, folder=folder)
        for job_id, reason in recovered.held.items():
            self._hold(state.jobs[job_id], reason)
        self.state.last_activity = now
        # Leases run from the last keepalive on disk: expire now what ran out while down.
        self.expire_due(now)
        self.ready = True
        log.info(
            "recovered",
            duration_s=round(time.perf_counter() - began, 3),
            live_jobs=len(recovered.live),
            finished_jobs=len(recovered.finished),
            repairs=len(recovered.repairs),
            **self.count_fields(),
        )
        return recovered

    def _scan_inputs(
        self,
        now: float,
        history: dict[str, FailureHistory],
        handed_back: set[str],
        stems: set[str],
    ) -> None:
        """Every `.pod5` not accounted for by the journal: done by the seed's rule,
        else ready or incomplete by its signature. Queued oldest first, files that failed
        before or were handed back (`handed_back`, from released jobs) in front."""
        found: list[tuple[float, str, bool]] = []
        files = self.state.files
        # Once per file at start (10^6 files): no Path objects, `entry.path` as it is.
        for entry in os.scandir(self.config.input_dir):
            name = entry.name
            if not is_pod5_name(name):
                continue
            record = files.get(name)
            if record is not None:
                record.present = True
                continue
            if name[:-5] in stems:  # is_pod5_name: it ends in ".pod5"
                self.state.restore_done(name, now)
                files[name].present = True
                continue
            if entry.is_symlink() and self._refuse(name):
                continue
            check = check_pod5(entry.path)
            if check is None:
                continue
            found.append((check.mtime, name, check.complete))
        found.sort()
        # Files that failed before or were handed back go to the front, oldest first:
        # file_seen puts each at the front, so feed them newest first, after the others.
        front = handed_back.union(history)  # few: the files of failed and released jobs
        fresh = [entry for entry in found if entry[1] not in front]
        again = [entry for entry in reversed(found) if entry[1] in front]
        for _mtime, name, complete in fresh + again:
            self.state.file_seen(
                name,
                complete=complete,
                now=now,
                history=history.get(name),
                front=name in handed_back,
            )

    # ----------------------------------------------------------- requests

    def assign(self, engine_id: str, batch_size: int) -> Job | None:
        """Hand up to `batch_size` ready files to `engine_id`; None when there are none."""
        now = self.clock()
        size = self.config.batch_size if batch_size <= 0 else min(batch_size, MAX_BATCH_SIZE)
        plan = self.state.plan_assignment(engine_id, size, now)
        if plan.empty:
            self.state.engine_polled(engine_id, now)
            return None
        for expired_id in plan.supersede:
            expired = self.state.jobs[expired_id]
            try:
                self.journal.supersede(expired)
            except Unfinished as exc:
                self._hold(expired, exc.reason)
            self.state.supersede(expired)  # on disk already: memory follows at once
            log.info("job_superseded", job_id=expired_id, engine_id=expired.engine_id)
        job_id = self._new_job_id()
        while job_id in self.state.jobs:  # 128 random bits: never, but cheap to be sure
            job_id = self._new_job_id()
        job = Job(
            job_id=job_id,
            engine_id=engine_id,
            files=dict(plan.files),
            state=JobState.ASSIGNED,
            assigned_at=now,
            last_seen=now,
            lease_s=self.config.report_back_interval,
        )
        self.journal.assign(job)
        job = self.state.commit_assignment(plan, job_id, now, self.config.report_back_interval)
        self.metrics.assignments.inc()
        log.info(
            "job_assigned",
            job_id=job_id,
            engine_id=engine_id,
            files=len(job.files),
            attempt=max(job.files.values()),
        )
        return job

    def keepalive(self, job_id: str, engine_state: str) -> bool:
        """Extend the job's lease. True means the job is late and the engine must stop."""
        late = self.state.keepalive(job_id, engine_state, self.clock())
        job = self.state.jobs[job_id]
        if late:
            log.info("keepalive_late", job_id=job_id, engine_id=job.engine_id, state=job.state)
        else:
            self.journal.renew_lease(job)
            log.debug("keepalive", job_id=job_id, engine_id=job.engine_id, state=engine_state)
        return late

    def complete(self, job_id: str, job_state: str) -> CompletionPlan:
        """Carry out an engine's /completed report. Raises Conflict for a 409, and
        StepsLeft when the decision's steps on disk could not all be carried out."""
        outcome = EngineReport.parse(job_state)
        now = self.clock()
        plan = self.state.plan_completion(job_id, outcome, now)
        if plan.action is CompletionAction.REPEAT and self._unfinished(plan.job):
            self._finish_steps(plan)  # the report again: carry on with what is left
            return plan
        if plan.action is CompletionAction.MERGE:
            try:
                outputs = self.journal.inspect(plan.job)
            except Refused as refused:
                plan = self.state.plan_refusal(plan, str(refused))
        job = plan.job
        action = plan.action
        merged = Merged()
        unfinished: str | None = None
        try:
            if action is CompletionAction.MERGE:
                merged = self.journal.merge(job, outputs)
            elif action is CompletionAction.REFUSE:
                self.journal.refuse(job, plan.reason)
            elif action is CompletionAction.FAIL:
                self.journal.fail(job, plan.requeue, plan.quarantine)
            elif action is CompletionAction.RELEASE:
                self.journal.hand_back(job)
            elif action is CompletionAction.SET_ASIDE:
                self.journal.set_aside(job, job_state)
            elif action is CompletionAction.LATE_NOT_MERGED and plan.supersede:
                self.journal.supersede(job)
        except Unfinished as exc:  # decided on disk: memory follows, the job is held
            unfinished = exc.reason
        engine = self.state.engines.get(job.engine_id)
        benched_before = engine.benched_until if engine else 0.0
        self.state.apply_completion(plan, now)
        engine = self.state.engines[job.engine_id]
        if engine.benched_until > benched_before:
            log.warning(
                "engine_benched",
                engine_id=job.engine_id,
                failed_batches=self.config.bench_after,
                duration_s=self.config.bench_seconds,
            )
        self._quarantine_kept(plan, job_state)
        self._log_completion(plan, job_state, merged, now)
        if unfinished is not None:
            self.state.hold(job.job_id, unfinished)
            raise StepsLeft(plan, unfinished)
        if action is CompletionAction.CONFLICT:
            raise Conflict(plan.reason)
        return plan

    def _quarantine_kept(self, plan: CompletionPlan, job_state: str) -> None:
        """Remember the quarantine folder a FAILED or unknown report made, for requeue."""
        job = plan.job
        if plan.action is CompletionAction.FAIL and plan.quarantine:
            folder = JobFolder(Folder.FAILED, job.job_id, job.engine_id)
            self.quarantine_folders[folder.name] = (folder, sorted(plan.quarantine))
        elif plan.action is CompletionAction.SET_ASIDE:
            folder = JobFolder(Folder.UNKNOWN, job.job_id, job.engine_id)
            self.quarantine_folders[folder.name] = (folder, sorted(job.files))

    def _unfinished(self, job: Job) -> bool:
        """Held because steps of its decision are left (not a refused job)."""
        return bool(job.reason) and job.state is not JobState.REFUSED

    def _finish_steps(self, plan: CompletionPlan) -> None:
        """Carry out what is left of a held job's decision; StepsLeft if still stuck."""
        job = plan.job
        try:
            record = self.journal.read_record(job.job_id)
            if record is not None:
                self.journal.finish(job, record)
        except Unfinished as exc:
            job.reason = exc.reason
            raise StepsLeft(plan, exc.reason) from None
        self.state.unhold(job.job_id)
        log.info("job_no_longer_held", job_id=job.job_id, engine_id=job.engine_id)

    def hold_for_good(self, job_id: str) -> None:
        """The caller stops trying the steps left of this job now: say so, once."""
        job = self.state.jobs.get(job_id)
        if job is not None and self._unfinished(job):
            self._hold(job, job.reason)

    def _hold(self, job: Job, reason: str) -> None:
        """Hold a job for a person: a step on disk that could not be carried out (its
        decision stands), or outputs refused. Every other job goes on."""
        self.state.hold(job.job_id, reason)
        log.error(
            "job_held",
            job_id=job.job_id,
            engine_id=job.engine_id,
            state=str(job.state),
            reason=reason,
            action=(
                "look at the job's folders; reactor tries the steps left again at each "
                "reconcile and at the next start"
                if job.state is not JobState.REFUSED
                else "its outputs were kept aside, not merged; its files went to other engines"
            ),
        )

    def finish_held(self) -> None:
        """Try again the steps left of held jobs whose decision could not be carried out
        (refused jobs stay held: there is nothing left to do for them)."""
        for job in [j for j in self.state.held_jobs() if j.state is not JobState.REFUSED]:
            try:
                record = self.journal.read_record(job.job_id)
                if record is None:
                    continue
                self.journal.finish(job, record)
            except (Unfinished, ValueError, KeyError, TypeError, OSError) as exc:
                log.debug("job_still_held", job_id=job.job_id, detail=str(exc))
                continue
            self.state.unhold(job.job_id)
            log.info("job_no_longer_held", job_id=job.job_id, engine_id=job.engine_id)

    def _log_completion(
        self, plan: CompletionPlan, job_state: str, merged: Merged, now: float
    ) -> None:
        job = plan.job
        fields: dict[str, Any] = {
            "job_id": job.job_id,
            "engine_id": job.engine_id,
            "files": len(job.files),
            "duration_s": round(now - job.assigned_at, 3),
        }
        action = plan.action
        if action in (
            CompletionAction.MERGE,
            CompletionAction.FAIL,
            CompletionAction.RELEASE,
            CompletionAction.SET_ASIDE,
        ):
            self.metrics.completions.labels(outcome=str(plan.outcome)).inc()
        if action is CompletionAction.REFUSE:
            self.metrics.completions.labels(outcome="REFUSED").inc()
            log.error(
                "job_refused",
                reason=plan.reason,
                requeued=len(plan.requeue),
                folder=self.journal.output_folder(job, Folder.REFUSEDOUTPUT).name,
                **fields,
            )
        if action is CompletionAction.MERGE:
            self.metrics.job_seconds.observe(now - job.assigned_at)
            self.throughput.record(now, len(job.files))
            log.info("job_done", outputs=merged.moved, **fields)
            if merged.kept:
                folder = self.journal.output_folder(job, Folder.LOGOUTPUT).name
                self.metrics.outputs_not_merged.inc(len(merged.kept))
                log.error(
                    "outputs_not_merged",
                    outputs=merged.kept,
                    folder=folder,
                    action=(
                        f"each is kept in {folder}, with why: a name taken in pass/ or "
                        "fail/ (compare the two), or an entry that changed after the job "
                        "reported DONE; move what belongs by hand"
                    ),
                    **fields,
                )
        elif action is CompletionAction.FAIL:
            self.metrics.retried_files.inc(len(plan.requeue))
            self.metrics.quarantined_files.inc(len(plan.quarantine))
            log.warning(
                "job_failed",
                requeued=len(plan.requeue),
                quarantined=len(plan.quarantine),
                attempt=max(job.files.values()),
                **fields,
            )
            for name in plan.quarantine:
                record = self.state.files[name]
                log.error(
                    "file_quarantined",
                    name=name,
                    job_id=job.job_id,
                    reason="failed_alone",
                    attempt=record.solo_failures,
                    engines=sorted(record.failed_on),
                )
        elif action is CompletionAction.RELEASE:
            self.metrics.released_files.inc(len(plan.requeue))
            log.info("job_released", **fields)
        elif action is CompletionAction.SET_ASIDE:
            self.metrics.quarantined_files.inc(len(job.files))
            log.warning("job_set_aside", state=job_state, **fields)
        elif action is CompletionAction.LATE_NOT_MERGED:
            folder = self.journal.output_folder(job, Folder.EXPIREDOUTPUT).name
            log.warning("late_done_not_merged", reason=plan.reason, folder=folder, **fields)
        elif action is CompletionAction.CONFLICT:
            log.warning("completion_rejected", reason=plan.reason, state=job_state, **fields)
        else:
            log.info("completion_repeated", action=str(action), state=job_state, **fields)

    def requeue(self, folders: list[str] | None) -> dict[str, list[str]]:
        """Release quarantine folders (FAILED_…/UNKNOWN_…; all when `folders` is None):
        their files go back to the front of the queue with fresh attempts. Returns the
        released file names by folder. Raises KeyError naming an unknown folder."""
        found = self.quarantine_folders
        wanted = list(found) if folders is None else folders
        unknown = [name for name in wanted if name not in found]
        if unknown:
            raise KeyError(unknown[0])
        now = self.clock()
        released: dict[str, list[str]] = {}
        for name in wanted:
            folder, names = found[name]
            baseline = {n: self.state.files[n].failures for n in names if n in self.state.files}
            self.journal.requeue(folder, baseline)
            del found[name]
            released[name] = self.state.release_quarantined(names, now)
            log.warning("quarantine_released", folder=name, files=len(released[name]))
        return released

    # ------------------------------------------------------------ sweeper

    def forget_idle_engines(self, now: float) -> None:
        """Forget engines gone for ENGINE_FORGET_S (no live job, not benched)."""
        gone = self.state.forget_idle_engines(now, ENGINE_FORGET_S)
        if gone:
            log.info("engines_forgotten", engines=len(gone), idle_s=ENGINE_FORGET_S)

    def expire_due(self, now: float) -> list[Job]:
        """Expire every live job whose lease ran out before `now`."""
        expired = []
        for job in self.state.expired_jobs(now):
            try:
                self.journal.expire(job)
            except JournalError as exc:  # not decided: this job stays live, the rest go on
                log.error("expiry_failed", job_id=job.job_id, detail=str(exc))
                continue
            except Unfinished as exc:
                self.state.expire(job.job_id, now)
                self._hold(job, exc.reason)
            else:
                self.state.expire(job.job_id, now)
            expired.append(job)
            self.metrics.expiries.inc()
            log.warning(
                "job_expired",
                job_id=job.job_id,
                engine_id=job.engine_id,
                files=len(job.files),
                silent_s=round(now - job.last_seen, 3),
            )
        return expired

    def settle(self, now: float) -> None:
        """Re-check incomplete files that have been quiet for `settle_seconds`."""
        for name in self.state.incomplete_due(now, self.config.settle_seconds):
            self._check_input(name, now)

    def reconcile(self, reason: str) -> None:
        """Full scan of INPUTDIR and pass/fail: after lost events, and as a safety net."""
        began = time.perf_counter()
        now = self.clock()
        on_disk = {n for n in os.listdir(self.config.input_dir) if is_pod5_name(n)}
        files = self.state.files
        added = removed = 0
        for name in on_disk:
            record = files.get(name)
            if record is None or record.state is FileState.INCOMPLETE:
                added += record is None
                self._check_input(name, now)
        for name in [n for n, r in files.items() if r.present and n not in on_disk]:
            self.state.file_gone(name, now)
            removed += 1
        waiting = (FileState.INCOMPLETE, FileState.READY)
        for stem in self.journal.result_stems():
            name = f"{stem}.pod5"
            record = files.get(name)
            # Only a waiting file can be marked done by an output (mark_done_by_output).
            if name in on_disk and (record is None or record.state in waiting):
                self._done_by_output(name, f"{stem}.*", now)
        self.reconciles += 1
        self.metrics.reconciles.labels(reason=reason).inc()
        log.info(
            "reconciled",
            reason=reason,
            added=added,
            removed=removed,
            duration_s=round(time.perf_counter() - began, 3),
        )

    # ---------------------------------------------------------- filesystem

    def on_fs_event(self, event: FsEvent) -> None:
        """One filesystem event from the watcher (called on the loop thread): INPUTDIR's,
        or pass/'s and fail/'s. Job folders are not watched (`reactor.serve.watcher` says why)."""
        now = self.clock()
        self.metrics.fs_events.labels(area=str(event.area)).inc()
        if event.area is Area.INPUT:
            self._on_input_event(event, now)
        elif event.area is Area.RESULTS:
            stem = output_stem(event.name)
            if stem is not None and event.change is not Change.GONE:
                self._done_by_output(f"{stem}.pod5", event.name, now)

    def _done_by_output(self, name: str, output: str, now: float) -> None:
        """The seed's rule, for a `.pod5` that exists: most outputs (dorado's, and the
        job-tagged ones reactor merges) match no input, and must not invent records."""
        if name not in self.state.files and not (self.config.input_dir / name).exists():
            return
        if self.state.mark_done_by_output(name, now):
            log.info("file_done_by_output", name=name, output=output)

    def _on_input_event(self, event: FsEvent, now: float) -> None:
        name = event.name
        change = event.change
        if change is Change.GONE:
            state = self.state.file_gone(name, now)
            if state is not None:
                log.info("file_gone", name=name, state=state)
            return
        record = self.state.files.get(name)
        if change is Change.MODIFIED and record is not None:
            if record.state is FileState.INCOMPLETE:
                record.changed_at = now  # still being written: restart the settle timer
            return
        self._check_input(name, now, seen_at=event.at)

    def _check_input(self, name: str, now: float, seen_at: float | None = None) -> None:
        record = self.state.files.get(name)
        if record is not None and record.state is not FileState.INCOMPLETE:
            record.present = True
            return
        path = self.config.input_dir / name
        if path.is_symlink() and self._refuse(name):
            return
        check = check_pod5(path)
        if check is None:
            if record is not None:
                self.state.file_gone(name, now)
            return
        before = record.state if record is not None else None
        after = self.state.file_seen(name, complete=check.complete, now=now)
        if after is FileState.READY and before is not FileState.READY:
            fields: dict[str, Any] = {"name": name}
            if seen_at is not None:
                latency = time.monotonic() - seen_at
                self.metrics.ingest_seconds.observe(latency)
                fields["latency_s"] = round(latency, 4)
            log.info("file_ready", **fields)
        elif after is FileState.INCOMPLETE and before is None:
            log.info("file_incomplete", name=name)
        if before is None and self.run_end.reconciled:
            # Basecalled like any other, but it was not in the run when it ended.
            log.warning("file_after_run_end", name=name, phase=str(self.phase))

    def _refuse(self, name: str) -> bool:
        """A `.pod5` that is a symlink leading outside INPUTDIR is never handed out: the
        links reactor makes must not lead engines anywhere else. Logged once per name."""
        target = (self.config.input_dir / name).resolve()
        if target.is_relative_to(self.config.input_dir.resolve()):
            return False
        if name not in self._refused:
            self._refused.add(name)
            log.error("file_refused", name=name, reason="symlink_outside_input", target=str(target))
        return True

    def ensure_result_folders(self) -> None:
        """Recreate pass/ or fail/ if a person removed them (merges would recreate them
        too; the watcher needs them to watch)."""
        for kind in RESULT_FOLDERS:
            folder = self.config.output_dir / kind
            if not folder.is_dir():
                try:
                    folder.mkdir()
                except OSError as exc:
                    log.error("results_folder_missing", folder=str(folder), detail=str(exc))
                else:
                    log.warning("results_folder_recreated", folder=str(folder))

    # ------------------------------------------------------------- views

    @property
    def phase(self) -> str:
        """starting, running, finishing or complete (see `reactor.core.endrun.phase_of`)."""
        return str(phase_of(self.ready, self.run_end))

    def count_fields(self) -> dict[str, int]:
        return count_fields(self.state)

    def heartbeat(self) -> dict[str, Any]:
        idle = self.clock() - self.state.last_activity
        status = "true" if idle >= self.config.shutdown_interval else "false"
        return {"status": status, "inactivity_interval": idle}

    def status(self) -> dict[str, Any]:
        """The body of GET /status (see `reactor.core.status`)."""
        return status_report(
            self.state,
            self.throughput,
            now=self.clock(),
            ready=self.ready,
            phase=self.phase,
            reconciles=self.reconciles,
        )

    def status_line(self) -> str:
        """The one line `systemctl status` shows (see `reactor.core.status`)."""
        return status_line(self.state, self.clock())
