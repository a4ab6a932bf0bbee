"""RunState driven by hypothesis through arbitrary event sequences, checked against a model.

The model restates the file and job states (docs/architecture.md, "Invariants") in the
simplest terms. After every step: each file is in one state and counts() are exact; the
ready queue is exactly the READY files, once each, in the model's order; every ASSIGNED
file is held by one live job that lists it; DONE and QUARANTINED are final; nothing but a
READY file is handed out; a quarantined file failed alone max_attempts times or was
set aside by an unknown report; and a file handed back by a RELEASED report comes back
with nothing counted: its next assignment carries the released job's attempt again.

The retry policy is modelled too: failed batches come back as halves with a batch cap,
solo failures and their engines, engines' failure streaks and benches. Each plan is
checked twice: against the model's exact choice, and against the plain properties any
choice must have (READY files, at most batch_size, one batch cap, none this engine failed
alone while another engine works unless a second engine failed it too, nothing for a
benched engine). And the run always ends: two engines that keep asking and reporting leave
no file READY.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from reactor.core.retry import HARD_LIMIT_FACTOR, SKIP_LIMIT, FailureHistory
from reactor.core.state import (
    LIVE_JOB_STATES,
    AssignPlan,
    CompletionAction,
    EngineReport,
    FileRecord,
    FileState,
    JobState,
    RunState,
)

MAX_ATTEMPTS = 3
LEASE_S = 10.0
BENCH_AFTER = 2
BENCH_S = 30.0
ENGINE_WINDOW_S = 20.0
ENGINES = ["gpu-node01.cluster", "engine_1", "gpu-3"]
# Mostly DONE and FAILED, as engines report; RELEASED when a cluster stops one; now and
# then a state reactor does not know.
REPORTS = [
    "DONE", "DONE", "done", "FAILED", "FAILED", "failed", "RELEASED", "released", "ERROR",
    "Done ",
]  # fmt: skip
reports = st.sampled_from(REPORTS)
# What a restart may know from disk, as recovery folds it from the job manifests.
histories = st.sampled_from(
    [
        None,
        None,
        None,
        FailureHistory(failures=1, batch_cap=2),
        FailureHistory(failures=1, solo_failures=1, failed_on=frozenset(ENGINES[:1]), batch_cap=1),
    ]
)


def half_caps(count: int) -> list[int]:
    """The batch cap of each of `count` requeued files: the size of its half."""
    if count <= 1:
        return [1] * count
    first = (count + 1) // 2
    return [first] * first + [count - first] * (count - first)


@dataclass
class ModelFile:
    state: FileState
    failures: int = 0
    job_id: str | None = None
    expired_job: str | None = None
    present: bool = True
    solo_failures: int = 0
    failed_on: frozenset[str] = frozenset()
    batch_cap: int = 0


@dataclass
class ModelEngine:
    last_seen: float
    failure_streak: int = 0
    benched_until: float = 0.0
    jobs_released: int = 0


@dataclass
class ModelJob:
    engine_id: str
    files: dict[str, int]
    state: JobState
    deadline: float
    superseded: bool = False

    @property
    def live(self) -> bool:
        return self.state in LIVE_JOB_STATES

    @property
    def kind(self) -> str:
        if self.live:
            return "live"
        return "expired" if self.state is JobState.EXPIRED else "finished"


class RunStateMachine(RuleBasedStateMachine):
    # As in a live run, new files keep arriving; later events hit any file seen so far.
    names = Bundle("names")

    def __init__(self) -> None:
        super().__init__()
        self.state = RunState(
            MAX_ATTEMPTS, bench_after=BENCH_AFTER, bench_s=BENCH_S, engine_window_s=ENGINE_WINDOW_S
        )
        self.now = 0.0
        self.last_job_id = 0
        self.last_file = 0
        self.files: dict[str, ModelFile] = {}
        self.queue: list[str] = []  # the ready queue, front first
        self.model_jobs: dict[str, ModelJob] = {}
        self.engines: dict[str, ModelEngine] = {}
        self.ever_done: set[str] = set()
        self.ever_quarantined: set[str] = set()
        self.set_aside: set[str] = set()  # quarantined by an unknown report, not by failures
        # name -> the attempt of the released job that handed it back, until it goes out
        # again: that next assignment must carry the same attempt (nothing was counted).
        self.handed_back: dict[str, int] = {}
        # Assignments planned and waiting for their step on disk (the service reserves
        # their files meanwhile); other rules run in between, as requests do.
        self.pending: list[AssignPlan] = []
        self.reserved: set[str] = set()

    @initialize(target=names, count=st.integers(0, 4))
    def files_at_start(self, count: int) -> object:
        return multiple(*(self.arrive(True, None, output_first=False) for _ in range(count)))

    # ------------------------------------------------------------ model helpers

    def _fresh_name(self) -> str:
        self.last_file += 1
        return f"PAK00000_pass_abcdef12_0123abcd_{self.last_file}.pod5"

    def _views(self) -> object:
        """What a plan_* call or a refused commit must leave untouched."""
        return (
            {
                n: (
                    r.state,
                    r.job_id,
                    r.expired_job,
                    r.failures,
                    r.solo_failures,
                    r.failed_on,
                    r.batch_cap,
                )
                for n, r in self.state.files.items()
            },
            list(self.state.ready_names()),
            self.state.counts(),
            {job_id: (j.state, j.superseded) for job_id, j in self.state.jobs.items()},
            {
                e: (m.last_seen, m.failure_streak, m.benched_until, set(m.live_jobs))
                for e, m in self.state.engines.items()
            },
        )

    def _seen(self, engine_id: str) -> ModelEngine:
        """The engine reported or polled now."""
        engine = self.engines.setdefault(engine_id, ModelEngine(self.now))
        engine.last_seen = self.now
        return engine

    def _benched(self, engine_id: str) -> bool:
        engine = self.engines.get(engine_id)
        return engine is not None and self.now < engine.benched_until

    def _others_working(self, engine_id: str) -> bool:
        return any(
            other != engine_id
            and self.now - engine.last_seen <= ENGINE_WINDOW_S
            and not self._benched(other)
            for other, engine in self.engines.items()
        )

    def _expected_plan(self, engine_id: str, batch_size: int) -> list[str]:
        """Front of the queue, skipping files this engine failed alone while others work
        and no second engine failed them alone yet (at most SKIP_LIMIT of them), all with
        the first one's batch cap, up to the cap."""
        if self._benched(engine_id) or batch_size <= 0:
            return []
        skip = self._others_working(engine_id)
        chosen: list[str] = []
        skipped = 0
        for name in self.queue:
            if name in self.reserved:  # an assignment in flight holds it
                continue
            record = self.files[name]
            if skip and engine_id in record.failed_on and len(record.failed_on) < 2:
                skipped += 1
                if skipped > SKIP_LIMIT:
                    break
                continue
            cap = self.files[chosen[0]].batch_cap if chosen else record.batch_cap
            if record.batch_cap != cap:
                break
            chosen.append(name)
            if len(chosen) == (min(batch_size, cap) if cap else batch_size):
                break
        return chosen

    def _check_plan_properties(self, engine_id: str, batch_size: int, plan: AssignPlan) -> None:
        """What any plan must be, however the exact choice is made."""
        assert plan.benched is self._benched(engine_id)
        if plan.benched:
            assert plan.empty, "a benched engine got work"
            return
        names = list(plan.files)
        assert len(names) == len(set(names))
        assert len(names) <= max(batch_size, 0)
        caps = {self.state.files[name].batch_cap for name in names}
        assert len(caps) <= 1, "a batch mixes batch caps"
        if caps and (cap := caps.pop()):
            assert len(names) <= cap
        for name in names:
            # Never hand out a file that is incomplete, done or quarantined.
            assert self.state.state_of(name) is FileState.READY
            assert name not in self.ever_done | self.ever_quarantined
            failed_on = self.state.files[name].failed_on
            if self._others_working(engine_id) and len(failed_on) < 2:
                assert engine_id not in failed_on, (
                    f"{engine_id} got {name} back, which it failed alone, while others work"
                )

    def _requeue_front(self, names: Iterable[str]) -> None:
        requeued = []
        for name in names:
            record = self.files[name]
            record.job_id = None
            if record.present:
                record.state = FileState.READY
                requeued.append(name)
            else:
                del self.files[name]  # assigned, then deleted: nothing to retry
        self.queue = requeued + self.queue

    def _supersede(self, job_id: str) -> None:
        job = self.model_jobs[job_id]
        job.superseded = True
        for name in job.files:
            record = self.files.get(name)
            if record is not None and record.expired_job == job_id:
                record.expired_job = None

    def _expected_completion(
        self, job: ModelJob, job_id: str, outcome: EngineReport
    ) -> CompletionAction:
        if job.live:
            return {
                EngineReport.DONE: CompletionAction.MERGE,
                EngineReport.FAILED: CompletionAction.FAIL,
                EngineReport.RELEASED: CompletionAction.RELEASE,
                EngineReport.UNKNOWN: CompletionAction.SET_ASIDE,
            }[outcome]
        if job.state is JobState.EXPIRED:
            if outcome is not EngineReport.DONE:
                return CompletionAction.LATE_IGNORED
            # A late DONE merges only if none of its files went anywhere since the expiry.
            untouched = all(
                (record := self.files.get(name)) is not None
                and record.state is FileState.READY
                and record.expired_job == job_id
                and name not in self.reserved
                for name in job.files
            )
            if untouched and not job.superseded:
                return CompletionAction.MERGE
            return CompletionAction.LATE_NOT_MERGED
        finished = {
            JobState.DONE: EngineReport.DONE,
            JobState.FAILED: EngineReport.FAILED,
            JobState.RELEASED: EngineReport.RELEASED,
            JobState.UNKNOWN: EngineReport.UNKNOWN,
        }[job.state]
        if outcome is finished or job.state is JobState.UNKNOWN:
            return CompletionAction.REPEAT
        return CompletionAction.CONFLICT

    # ------------------------------------------------------------- ingestion

    @rule(
        target=names,
        complete=st.booleans(),
        history=histories,
        output_first=st.sampled_from([False, False, False, True]),
    )
    def arrive(self, complete: bool, history: FailureHistory | None, output_first: bool) -> str:
        """A new `.pod5`; now and then its FASTQ was found first (the seed's done rule)."""
        name = self._fresh_name()
        if output_first:
            self.done_by_output(name)
        self.see(name, complete, history)
        return name

    @rule(name=names, complete=st.booleans(), history=histories)
    def see(self, name: str, complete: bool, history: FailureHistory | None) -> None:
        got = self.state.file_seen(name, complete=complete, now=self.now, history=history)
        record = self.files.get(name)
        if record is None:
            state = FileState.READY if complete else FileState.INCOMPLETE
            self.files[name] = ModelFile(state)
            failed = history is not None and history.failures > 0
            if history is not None and failed:
                self.files[name] = ModelFile(
                    state,
                    failures=history.failures,
                    solo_failures=history.solo_failures,
                    failed_on=history.failed_on,
                    batch_cap=history.batch_cap,
                )
            if state is FileState.READY and failed:
                self.queue.insert(0, name)
            elif state is FileState.READY:
                self.queue.append(name)
        else:
            record.present = True
            if record.state is FileState.INCOMPLETE and complete:
                record.state = FileState.READY
                self.queue.append(name)
        assert got is self.files[name].state

    @rule(data=st.data())
    def scan_reorders(self, data: st.DataObject) -> None:
        """The end of the start-up scan: some files, ready or not, go to the back of the
        queue in the scan's order; the others keep their places ahead of them."""
        known = sorted(self.files)
        chosen = data.draw(st.lists(st.sampled_from(known), unique=True) if known else st.just([]))
        self.state.requeue_in_order(chosen)
        moved = [name for name in chosen if name in self.queue]
        self.queue = [name for name in self.queue if name not in moved] + moved

    @rule(name=names)
    def gone(self, name: str) -> None:
        got = self.state.file_gone(name, now=self.now)
        record = self.files.get(name)
        assert got is (record.state if record else None)
        if record is None:
            return
        if record.state in (FileState.INCOMPLETE, FileState.READY) and name not in self.reserved:
            del self.files[name]
            self.handed_back.pop(name, None)
            if name in self.queue:
                self.queue.remove(name)
        else:
            record.present = False

    @precondition(lambda self: any(f.state is FileState.ASSIGNED for f in self.files.values()))
    @rule(data=st.data())
    def assigned_file_gone(self, data: st.DataObject) -> None:
        """Someone deletes a `.pod5` while an engine works on it."""
        assigned = [n for n, f in self.files.items() if f.state is FileState.ASSIGNED]
        self.gone(data.draw(st.sampled_from(assigned), label="assigned file"))

    @rule(name=names)
    def done_by_output(self, name: str) -> None:
        changed = self.state.mark_done_by_output(name, now=self.now)
        record = self.files.get(name)
        if record is None:
            self.files[name] = ModelFile(FileState.DONE, present=False)
            assert changed
        elif record.state in (FileState.INCOMPLETE, FileState.READY) and name not in self.reserved:
            if record.state is FileState.READY:
                self.queue.remove(name)
            record.state = FileState.DONE
            self.handed_back.pop(name, None)
            assert changed
        else:
            assert not changed

    # ------------------------------------------------------------ assignment

    @rule(engine_id=st.sampled_from(ENGINES), batch_size=st.integers(-1, 4))
    def assign(self, engine_id: str, batch_size: int) -> None:
        self._assign(engine_id, batch_size)

    def _assign(self, engine_id: str, batch_size: int) -> str | None:
        """An engine asks for work, as the service does it. Returns the new job's id."""
        before = self._views()
        plan = self.state.plan_assignment(engine_id, batch_size, self.now)
        assert self._views() == before, "plan_assignment changed the state"
        self._check_plan_properties(engine_id, batch_size, plan)
        expected = self._expected_plan(engine_id, batch_size)
        assert list(plan.files) == expected  # FIFO, retried files first
        assert plan.files == {name: self.files[name].failures + 1 for name in expected}
        for name in expected:
            if name in self.handed_back:  # a release counted no attempt
                assert plan.files[name] == self.handed_back[name], name
        expired = {e for n in expected if (e := self.files[n].expired_job) is not None}
        assert plan.supersede == tuple(sorted(expired))
        if plan.empty:
            self.state.engine_polled(engine_id, self.now)
            self._seen(engine_id)
            return None
        return self._commit(plan)

    def _commit(self, plan: AssignPlan) -> str:
        """The assignment is on disk: commit it, in the core and in the model."""
        engine_id = plan.engine_id
        self.last_job_id += 1
        job_id = str(self.last_job_id)
        job = self.state.commit_assignment(plan, job_id, now=self.now, lease_s=LEASE_S)
        self.reserved.difference_update(plan.files)
        assert job.files == plan.files
        self._seen(engine_id)
        for expired_id in plan.supersede:
            self._supersede(expired_id)
        for name in plan.files:
            record = self.files[name]
            record.state, record.job_id, record.expired_job = FileState.ASSIGNED, job_id, None
            self.queue.remove(name)
            self.handed_back.pop(name, None)
        self.model_jobs[job_id] = ModelJob(
            engine_id, dict(plan.files), JobState.ASSIGNED, self.now + LEASE_S
        )
        return job_id

    @rule(engine_id=st.sampled_from(ENGINES), batch_size=st.integers(1, 4))
    def assignment_begins(self, engine_id: str, batch_size: int) -> None:
        """An assignment planned, its files reserved while its step is on the disk."""
        plan = self.state.plan_assignment(engine_id, batch_size, self.now)
        assert list(plan.files) == self._expected_plan(engine_id, batch_size)
        assert not set(plan.files) & self.reserved, "a plan took a reserved file"
        if plan.empty:
            return
        self.state.reserve(plan.files)
        self.reserved.update(plan.files)
        self.pending.append(plan)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), on_disk=st.booleans())
    def assignment_ends(self, data: st.DataObject, on_disk: bool) -> None:
        """Its step is done: committed (whatever happened to its files meanwhile: they
        were reserved), or failed before its commit point and its files let go."""
        plan = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        if on_disk:
            self._commit(plan)
            return
        self.state.unreserve(plan.files)
        self.reserved.difference_update(plan.files)
        for name in plan.files:
            record = self.files[name]
            if record.state is FileState.READY and not record.present:  # deleted meanwhile
                del self.files[name]
                self.handed_back.pop(name, None)
                self.queue.remove(name)

    @rule(engine_id=st.sampled_from(ENGINES))
    def engine_polls(self, engine_id: str) -> None:
        """An engine with nothing to do asks for work: it is alive, and working."""
        self.state.engine_polled(engine_id, self.now)
        self._seen(engine_id)

    @rule(
        engine_id=st.sampled_from(ENGINES),
        batch_size=st.integers(1, 4),
        times=st.integers(1, 2 * BENCH_AFTER),
    )
    def engine_fails_repeatedly(self, engine_id: str, batch_size: int, times: int) -> None:
        """A broken engine: takes work and reports FAILED, again and again (until benched)."""
        for _ in range(times):
            job_id = self._assign(engine_id, batch_size)
            if job_id is None:
                return
            self._complete(job_id, "FAILED")

    @rule(
        engine_id=st.sampled_from(ENGINES),
        batch_size=st.integers(1, 4),
        times=st.integers(1, 3),
        failed_first=st.booleans(),
    )
    def engine_hands_work_back(
        self, engine_id: str, batch_size: int, times: int, failed_first: bool
    ) -> None:
        """An engine a cluster keeps stopping: takes work and reports RELEASED, again and
        again, maybe after a failed batch. Nothing counts against the files, and the
        engine's failure streak stays where the failure left it."""
        reports = ["FAILED"] * failed_first + ["RELEASED"] * times
        for report in reports:
            job_id = self._assign(engine_id, batch_size)
            if job_id is None:
                return
            self._complete(job_id, report)

    @precondition(lambda self: bool(self.queue))
    @rule(
        engine_id=st.sampled_from(ENGINES),
        batch_size=st.integers(1, 4),
        change=st.sampled_from(["gone", "done_by_output", "reused_job_id"]),
        data=st.data(),
    )
    def stale_assignment(
        self, engine_id: str, batch_size: int, change: str, data: st.DataObject
    ) -> None:
        """A plan overtaken by events, or a job id in use, is refused and changes nothing."""
        plan = self.state.plan_assignment(engine_id, batch_size, self.now)
        if plan.empty:
            return  # benched, or every file skipped: nothing to go stale
        if change == "reused_job_id":
            if not self.model_jobs:
                return
            job_id = data.draw(st.sampled_from(sorted(self.model_jobs)), label="job id in use")
        else:
            job_id = str(self.last_job_id + 1)
            victim = data.draw(st.sampled_from(sorted(plan.files)), label="stale file")
            if change == "gone":
                self.gone(victim)
            else:
                self.done_by_output(victim)
        before = self._views()
        with pytest.raises(ValueError, match=r"stale|already in use"):
            self.state.commit_assignment(plan, job_id, now=self.now, lease_s=LEASE_S)
        assert self._views() == before, "a refused commit changed the state"

    @precondition(lambda self: bool(self.model_jobs))
    @rule(data=st.data())
    def keepalive(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model_jobs)), label="job")
        late = self.state.keepalive(job_id, "basecalling", now=self.now)
        job = self.model_jobs[job_id]
        self._seen(job.engine_id)
        assert late is not job.live
        if job.live:
            job.state = JobState.PROCESSING
            job.deadline = self.now + LEASE_S

    # ------------------------------------------------------------ completion

    def _complete(self, job_id: str, report: str) -> None:
        outcome = EngineReport.parse(report)
        job = self.model_jobs[job_id]
        before = self._views()
        plan = self.state.plan_completion(job_id, outcome, self.now)
        assert self._views() == before, "plan_completion changed the state"
        assert plan.action is self._expected_completion(job, job_id, outcome)
        if plan.action is CompletionAction.FAIL:
            present = tuple(n for n in job.files if self.files[n].present)
            quarantine: tuple[str, ...] = ()
            if len(job.files) == 1 and present:  # failed alone
                record = self.files[present[0]]
                solo = record.solo_failures + 1
                engines = record.failed_on | {job.engine_id}
                if solo >= MAX_ATTEMPTS and (
                    len(engines) >= 2
                    or not self._others_working(job.engine_id)
                    or solo >= HARD_LIMIT_FACTOR * MAX_ATTEMPTS
                ):
                    quarantine = present
            assert plan.quarantine == quarantine
            assert plan.requeue == (() if quarantine else present)
        if plan.action is CompletionAction.LATE_NOT_MERGED:
            assert plan.supersede is not job.superseded
        if plan.action is CompletionAction.CONFLICT:
            assert plan.supersede is False
        if plan.action is CompletionAction.RELEASE:
            assert plan.requeue == tuple(n for n in job.files if self.files[n].present)
            assert plan.quarantine == ()
        self.state.apply_completion(plan, now=self.now)
        engine = self._seen(job.engine_id)
        if plan.action is CompletionAction.MERGE:
            job.state = JobState.DONE
            engine.failure_streak = 0
            for name in job.files:
                record = self.files[name]
                if record.state is FileState.READY:  # the late DONE of an expired job
                    self.queue.remove(name)
                record.state, record.job_id, record.expired_job = FileState.DONE, None, None
        elif plan.action is CompletionAction.FAIL:
            job.state = JobState.FAILED
            fresh = all(attempt == 1 for attempt in job.files.values())
            engine.failure_streak += fresh
            if (
                fresh
                and engine.failure_streak >= BENCH_AFTER
                and self._others_working(job.engine_id)
            ):
                engine.benched_until = self.now + BENCH_S
                engine.failure_streak = 0
            for name in job.files:
                record = self.files[name]
                record.failures += 1
                if len(job.files) == 1:
                    record.solo_failures += 1
                    record.failed_on |= {job.engine_id}
            for name, cap in zip(plan.requeue, half_caps(len(plan.requeue)), strict=True):
                self.files[name].batch_cap = cap
            for name in plan.quarantine:
                self.files[name].state, self.files[name].job_id = FileState.QUARANTINED, None
            for name in job.files:
                if name not in plan.requeue and name not in plan.quarantine:
                    del self.files[name]  # assigned, then deleted: nothing to retry
            self._requeue_front(plan.requeue)
        elif plan.action is CompletionAction.RELEASE:
            # Handed back: no failure, no halving, the engine's streak and bench as they were.
            job.state = JobState.RELEASED
            engine.jobs_released += 1
            for name in plan.requeue:
                self.handed_back[name] = job.files[name]
            self._requeue_front(job.files)
        elif plan.action is CompletionAction.SET_ASIDE:
            job.state = JobState.UNKNOWN
            for name in job.files:
                self.files[name].state, self.files[name].job_id = FileState.QUARANTINED, None
                self.set_aside.add(name)
        elif plan.action is CompletionAction.LATE_NOT_MERGED and plan.supersede:
            self._supersede(job_id)

    @precondition(lambda self: bool(self.model_jobs))
    @rule(
        kind=st.sampled_from(["live", "live", "expired", "finished"]),
        report=reports,
        data=st.data(),
    )
    def completed(self, kind: str, report: str, data: st.DataObject) -> None:
        """A /completed report on a live, an expired or an already finished job."""
        ids = [job_id for job_id, job in self.model_jobs.items() if job.kind == kind]
        job_id = data.draw(st.sampled_from(ids or list(self.model_jobs)), label="job")
        self._complete(job_id, report)

    # ---------------------------------------------------------------- expiry

    @rule(dt=st.sampled_from([0.5, 3.0, 9.0, 10.0, 11.0, 25.0, 31.0]))
    def time_passes(self, dt: float) -> None:
        """Time passes and the sweeper runs, expiring every job whose lease ran out.

        25 s is past ENGINE_WINDOW_S (engines stop counting as working) and 31 s past
        BENCH_S (benched engines get work again)."""
        self.now += dt
        due = self.state.expired_jobs(self.now)
        expected = {
            job_id
            for job_id, job in self.model_jobs.items()
            if job.live and self.now > job.deadline
        }
        assert {job.job_id for job in due} == expected
        for job in due:
            self.state.expire(job.job_id, now=self.now)
            model = self.model_jobs[job.job_id]
            model.state = JobState.EXPIRED
            self._requeue_front(model.files)
            for name in model.files:
                record = self.files.get(name)
                if record is not None and record.state is not FileState.DONE:
                    record.expired_job = job.job_id

    @rule(idle_s=st.sampled_from([0.0, 5.0, 30.0]))
    def idle_engines_are_forgotten(self, idle_s: float) -> None:
        """The sweeper forgets engines silent for `idle_s` with no live job and no bench;
        whatever they did before stays true of the files and jobs."""
        expected = sorted(
            engine_id
            for engine_id, engine in self.engines.items()
            if engine.last_seen < self.now - idle_s
            and self.now >= engine.benched_until
            and not any(j.live and j.engine_id == engine_id for j in self.model_jobs.values())
        )
        assert sorted(self.state.forget_idle_engines(self.now, idle_s)) == expected
        for engine_id in expected:
            del self.engines[engine_id]

    @precondition(lambda self: not self.pending)  # a reserved file waits for its step
    @rule(poison_every=st.sampled_from([2, 3, 5]))
    def two_engines_drain_the_queue(self, poison_every: int) -> None:
        """The run always ends: two engines that keep asking for work and reporting at once
        (FAILED for a batch holding a poison file, DONE otherwise) leave no file READY.

        Time first passes beyond the window, the benches and every lease, so these two
        are the only engines working (MAX_ATTEMPTS > 2 engines is where a file could be
        skipped by both for ever)."""
        self.time_passes(max(ENGINE_WINDOW_S, BENCH_S, LEASE_S) + 1)
        poison = {n for n in self.queue if int(n.split("_")[-1].split(".")[0]) % poison_every == 0}
        drainers = ENGINES[:2]
        for engine_id in drainers:
            self.engine_polls(engine_id)
        for _ in range(20 * len(self.queue) + 10):
            job_ids = [self._assign(engine_id, 4) for engine_id in drainers]
            if not any(job_ids):
                break
            for job_id in filter(None, job_ids):
                files = self.model_jobs[job_id].files
                self._complete(job_id, "FAILED" if poison.intersection(files) else "DONE")
        assert not self.queue, "ready files that neither engine will ever get"
        assert all(self.files[n].state is FileState.QUARANTINED for n in poison)

    @precondition(lambda self: any(not job.live for job in self.model_jobs.values()))
    @rule(data=st.data())
    def expire_ended_job(self, data: st.DataObject) -> None:
        """The sweeper may race a report: expiring a job that already ended changes nothing."""
        ended = [job_id for job_id, job in self.model_jobs.items() if not job.live]
        job_id = data.draw(st.sampled_from(ended), label="ended job")
        before = self._views()
        self.state.expire(job_id, now=self.now)
        assert self._views() == before

    # ------------------------------------------------------------ invariants

    @invariant()
    def files_match_the_model_and_counts_are_exact(self) -> None:
        records = self.state.files
        assert {n: r.state for n, r in records.items()} == {
            n: m.state for n, m in self.files.items()
        }
        true_counts = Counter(record.state for record in records.values())
        assert self.state.counts() == {state: true_counts[state] for state in FileState}
        for name, model in self.files.items():
            record = records[name]
            got = (record.failures, record.present, record.job_id, record.expired_job)
            assert got == (model.failures, model.present, model.job_id, model.expired_job), name
            retry = (record.solo_failures, record.failed_on, record.batch_cap)
            assert retry == (model.solo_failures, model.failed_on, model.batch_cap), name

    @invariant()
    def reserved_files_are_ready_and_held_by_one_assignment_in_flight(self) -> None:
        held = [name for plan in self.pending for name in plan.files]
        assert len(held) == len(set(held)), "two assignments in flight hold the same file"
        assert set(held) == self.reserved
        for name in held:
            assert self.state.reserved(name)
            assert self.state.state_of(name) is FileState.READY, name

    @invariant()
    def ready_queue_is_exactly_the_ready_files(self) -> None:
        queue = list(self.state.ready_names())
        assert len(queue) == len(set(queue)), "a file is queued twice"
        ready = {n for n, r in self.state.files.items() if r.state is FileState.READY}
        assert set(queue) == ready
        assert queue == self.queue  # FIFO, with retried and expired files in front

    @invariant()
    def quarantine_list_is_exactly_the_quarantined_files(self) -> None:
        """What /status lists, kept as the run goes so that /status never walks the files."""
        listed = list(self.state.quarantined_names())
        assert len(listed) == len(set(listed))
        quarantined = {n for n, r in self.state.files.items() if r.state is FileState.QUARANTINED}
        assert set(listed) == quarantined

    @invariant()
    def assigned_files_belong_to_exactly_one_live_job(self) -> None:
        live = {job.job_id: job for job in self.state.live_jobs()}
        assert set(live) == {j for j, job in self.state.jobs.items() if job.live}
        for name, record in self.state.files.items():
            if record.state is FileState.ASSIGNED:
                assert record.job_id in live, name
                assert name in live[record.job_id].files, name
            else:
                assert record.job_id is None, name
        held: set[str] = set()
        for job in live.values():
            for name in job.files:
                record = self.state.files[name]
                assert record.state is FileState.ASSIGNED, name
                assert record.job_id == job.job_id, name
                assert name not in held, f"{name} is held by two live jobs"
                held.add(name)

    @invariant()
    def jobs_and_engines_match_the_model(self) -> None:
        jobs = self.state.jobs
        assert set(jobs) == set(self.model_jobs)
        for job_id, model in self.model_jobs.items():
            job = jobs[job_id]
            got = (job.state, job.superseded, job.files)
            assert got == (model.state, model.superseded, model.files), job_id
            if job.live:
                assert job.deadline() == model.deadline, job_id
        assert set(self.state.engines) == set(self.engines)
        for engine_id, engine in self.state.engines.items():
            assert engine.live_jobs == {
                j for j, m in self.model_jobs.items() if m.live and m.engine_id == engine_id
            }
            model_engine = self.engines[engine_id]
            seen = (
                engine.last_seen,
                engine.failure_streak,
                engine.benched_until,
                engine.jobs_released,
            )
            expected = (
                model_engine.last_seen,
                model_engine.failure_streak,
                model_engine.benched_until,
                model_engine.jobs_released,
            )
            assert seen == expected, engine_id
            assert self.state.other_engines_working(engine_id, self.now) is (
                self._others_working(engine_id)
            )

    @invariant()
    def done_and_quarantined_are_final(self) -> None:
        states = {n: r.state for n, r in self.state.files.items()}
        for name in self.ever_done:
            assert states.get(name) is FileState.DONE, f"{name} left DONE"
        for name in self.ever_quarantined:
            assert states.get(name) is FileState.QUARANTINED, f"{name} left QUARANTINED"
        self.ever_done |= {n for n, s in states.items() if s is FileState.DONE}
        self.ever_quarantined |= {n for n, s in states.items() if s is FileState.QUARANTINED}

    @invariant()
    def quarantined_files_failed_alone_max_attempts_times_or_were_set_aside(self) -> None:
        for name, record in self.state.files.items():
            if record.state is FileState.QUARANTINED:
                assert record.solo_failures >= MAX_ATTEMPTS or name in self.set_aside, name


RunStateMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRunStateMachine = RunStateMachine.TestCase


@given(
    failures=st.integers(0, 5),
    job_id=st.none() | st.text(min_size=1, max_size=4),
    batch_cap=st.integers(0, 3),
    failed_on=st.frozensets(st.sampled_from(ENGINES)),
)
def test_a_file_record_keeps_its_rare_fields_apart_only_when_set(
    failures: int, job_id: str | None, batch_cap: int, failed_on: frozenset[str]
) -> None:
    """A compact record reads back what was set; one left at the defaults holds no rare
    part, and setting a field back to its default keeps the value right."""
    record = FileRecord(FileState.READY, changed_at=1.0)
    assert record._rare is None
    record.failures = failures
    record.job_id = job_id
    record.batch_cap = batch_cap
    record.failed_on = failed_on
    assert (record.failures, record.job_id, record.batch_cap, record.failed_on) == (
        failures,
        job_id,
        batch_cap,
        failed_on,
    )
    assert (record.solo_failures, record.expired_job) == (0, None)
    defaults = (failures, job_id, batch_cap, failed_on) == (0, None, 0, frozenset())
    assert (record._rare is None) == defaults
    record.failures = record.batch_cap = 0
    record.job_id = None
    record.failed_on = frozenset()
    assert record == FileRecord(FileState.READY, changed_at=1.0)
