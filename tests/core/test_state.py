"""Unit tests of the pure state machine `RunState`: time is passed in, never read."""

from __future__ import annotations

import copy

import pytest

from reactor.core.retry import HARD_LIMIT_FACTOR, SKIP_LIMIT, FailureHistory
from reactor.core.state import (
    CompletionAction,
    CompletionPlan,
    EngineReport,
    FileState,
    Job,
    JobState,
    RunState,
    UnknownJob,
)

LEASE_S = 60.0
A, B, C, D = "a.pod5", "b.pod5", "c.pod5", "d.pod5"


def ready(state: RunState, *names: str, now: float = 0.0) -> None:
    for name in names:
        state.file_seen(name, complete=True, now=now)


def assign(
    state: RunState, job_id: str, batch_size: int, *, engine_id: str = "gpu-1", now: float = 0.0
) -> Job:
    plan = state.plan_assignment(engine_id, batch_size, now)
    return state.commit_assignment(plan, job_id, now, LEASE_S)


def complete(
    state: RunState, job_id: str, outcome: EngineReport, now: float = 1.0
) -> CompletionPlan:
    plan = state.plan_completion(job_id, outcome, now)
    state.apply_completion(plan, now)
    return plan


def snapshot(state: RunState) -> object:
    """Everything observable about the state, to show that a call changed nothing."""
    return copy.deepcopy(
        (
            state.files,
            state.jobs,
            state.engines,
            list(state.ready_names()),
            state.counts(),
            sorted(job.job_id for job in state.live_jobs()),
            state.last_activity,
        )
    )


def run_snapshot(state: RunState) -> object:
    """Files, jobs and the queue; not when engines were last seen (any report updates that)."""
    return copy.deepcopy(
        (
            state.files,
            state.jobs,
            list(state.ready_names()),
            state.counts(),
            sorted(job.job_id for job in state.live_jobs()),
        )
    )


def states(state: RunState) -> dict[str, FileState]:
    return {name: record.state for name, record in state.files.items()}


# --------------------------------------------------------------------- basics


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_max_attempts_below_one_is_rejected(max_attempts: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RunState(max_attempts)


def test_counts_report_every_state_even_when_empty() -> None:
    assert RunState(3).counts() == dict.fromkeys(FileState, 0)


def test_counts_follow_every_kind_of_transition() -> None:
    state = RunState(max_attempts=1)
    state.file_seen("w.pod5", complete=False, now=0)
    ready(state, A, B, C, D)
    assign(state, "1", 1)  # A
    assign(state, "2", 1)  # B
    assign(state, "3", 1)  # C
    complete(state, "1", EngineReport.DONE)
    complete(state, "2", EngineReport.FAILED)  # max_attempts=1: quarantined
    assert state.counts() == {
        FileState.INCOMPLETE: 1,
        FileState.READY: 1,
        FileState.ASSIGNED: 1,
        FileState.DONE: 1,
        FileState.QUARANTINED: 1,
    }
    assert states(state) == {
        "w.pod5": FileState.INCOMPLETE,
        A: FileState.DONE,
        B: FileState.QUARANTINED,
        C: FileState.ASSIGNED,
        D: FileState.READY,
    }


def test_state_of_unknown_file_is_none() -> None:
    assert RunState(3).state_of(A) is None


def test_job_lookup_of_unknown_id_raises_unknown_job() -> None:
    with pytest.raises(UnknownJob):
        RunState(3).job("42")


# ------------------------------------------------------------------ file_seen


def test_complete_file_joins_the_back_of_the_queue() -> None:
    state = RunState(3)
    ready(state, A, B)
    assert state.file_seen(C, complete=True, now=5) is FileState.READY
    assert list(state.ready_names()) == [A, B, C]
    assert state.files[C].changed_at == 5


def test_incomplete_file_waits_outside_the_queue() -> None:
    state = RunState(3)
    assert state.file_seen(A, complete=False, now=0) is FileState.INCOMPLETE
    assert list(state.ready_names()) == []
    assert state.plan_assignment("gpu-1", 10, now=0).empty


def test_incomplete_file_seen_complete_joins_the_back_of_the_queue() -> None:
    state = RunState(3)
    state.file_seen(A, complete=False, now=0)
    ready(state, B)
    assert state.file_seen(A, complete=True, now=7) is FileState.READY
    assert list(state.ready_names()) == [B, A]
    assert state.files[A].changed_at == 7
    assert state.incomplete_due(now=1000, settle_s=1) == []


def test_incomplete_file_seen_incomplete_again_stays_incomplete() -> None:
    state = RunState(3)
    state.file_seen(A, complete=False, now=0)
    assert state.file_seen(A, complete=False, now=4) is FileState.INCOMPLETE
    assert state.files[A].changed_at == 4
    assert state.counts()[FileState.INCOMPLETE] == 1


def test_ready_file_seen_again_keeps_its_place_in_the_queue() -> None:
    state = RunState(3)
    ready(state, A, B)
    assert state.file_seen(A, complete=True, now=3) is FileState.READY
    assert state.file_seen(A, complete=False, now=4) is FileState.READY
    assert list(state.ready_names()) == [A, B]


def test_done_file_seen_again_stays_done() -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", EngineReport.DONE)
    state.file_gone(A, now=2)
    assert state.file_seen(A, complete=True, now=3) is FileState.DONE
    assert state.files[A].present
    assert list(state.ready_names()) == []


def test_quarantined_file_seen_again_stays_quarantined() -> None:
    state = RunState(max_attempts=1)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", EngineReport.FAILED)
    assert state.file_seen(A, complete=True, now=3) is FileState.QUARANTINED
    assert list(state.ready_names()) == []


def test_assigned_file_seen_again_stays_with_its_job() -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    assert state.file_seen(A, complete=True, now=3) is FileState.ASSIGNED
    assert state.files[A].job_id == "1"
    assert list(state.ready_names()) == []


def test_file_that_failed_before_goes_to_the_front_of_the_queue() -> None:
    state = RunState(3)
    ready(state, A, B)
    assert state.file_seen(C, complete=True, now=1, history=FailureHistory(1)) is FileState.READY
    state.file_seen(D, complete=True, now=2, history=FailureHistory(2))
    assert list(state.ready_names()) == [D, C, A, B]
    assert state.files[D].failures == 2


def test_file_of_a_released_job_goes_to_the_front_with_no_failure() -> None:
    """At restart: a file whose job was released is ready again, in front, failing nothing."""
    state = RunState(3)
    ready(state, A)
    state.file_seen(B, complete=True, now=0, front=True)
    state.file_seen(C, complete=False, now=0, front=True)
    assert list(state.ready_names()) == [B, A]
    assert state.files[B].failures == 0
    assert state.files[C].state is FileState.INCOMPLETE


def test_file_with_an_empty_history_joins_the_back_of_the_queue() -> None:
    state = RunState(3)
    ready(state, A)
    state.file_seen(B, complete=True, now=1, history=FailureHistory())
    assert list(state.ready_names()) == [A, B]


def test_file_seen_keeps_the_whole_failure_history() -> None:
    """A restart must not forget solo failures, their engines, or the batch cap."""
    state = RunState(3)
    history = FailureHistory(
        failures=4, solo_failures=2, failed_on=frozenset({"gpu-1", "gpu-2"}), batch_cap=1
    )
    ready(state, B)
    state.file_seen(A, complete=True, now=0, history=history)
    state.file_seen(C, complete=False, now=0, history=history)
    for name in (A, C):
        record = state.files[name]
        got = (record.failures, record.solo_failures, record.failed_on, record.batch_cap)
        assert got == (4, 2, frozenset({"gpu-1", "gpu-2"}), 1), name
    assert list(state.ready_names()) == [A, B]  # the incomplete one waits outside


def test_attempt_number_counts_earlier_failures() -> None:
    state = RunState(3)
    state.file_seen(A, complete=True, now=0, history=FailureHistory(failures=2))
    ready(state, B)
    assert state.plan_assignment("gpu-1", 2, now=0).files == {A: 3, B: 1}


# ------------------------------------------------------------------ file_gone


def test_file_gone_of_unknown_file_returns_none() -> None:
    state = RunState(3)
    assert state.file_gone(A, now=1) is None
    assert state.files == {}


def test_ready_file_gone_leaves_the_queue_and_is_forgotten() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assert state.file_gone(B, now=1) is FileState.READY
    assert list(state.ready_names()) == [A, C]
    assert state.state_of(B) is None
    assert state.counts()[FileState.READY] == 2


def test_incomplete_file_gone_is_forgotten_and_never_due() -> None:
    state = RunState(3)
    state.file_seen(A, complete=False, now=0)
    assert state.file_gone(A, now=1) is FileState.INCOMPLETE
    assert state.state_of(A) is None
    assert state.incomplete_due(now=1000, settle_s=1) == []
    assert state.counts()[FileState.INCOMPLETE] == 0


def test_assigned_file_gone_stays_with_its_job() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    assert state.file_gone(A, now=5) is FileState.ASSIGNED
    record = state.files[A]
    assert (record.state, record.job_id, record.present) == (FileState.ASSIGNED, "1", False)
    assert record.changed_at == 5
    assert state.counts()[FileState.ASSIGNED] == 2


def test_gone_assigned_file_is_not_requeued_when_its_job_fails() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assign(state, "1", 2)
    state.file_gone(A, now=1)
    plan = complete(state, "1", EngineReport.FAILED, now=2)
    assert plan.action is CompletionAction.FAIL
    assert plan.requeue == (B,)
    assert plan.quarantine == ()
    assert state.state_of(A) is None
    assert list(state.ready_names()) == [B, C]


def test_gone_assigned_file_is_not_requeued_when_its_job_expires() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assign(state, "1", 2)
    state.file_gone(B, now=1)
    state.expire("1", now=100)
    assert state.state_of(B) is None
    assert list(state.ready_names()) == [A, C]


def test_gone_assigned_file_that_comes_back_is_requeued_on_failure() -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    state.file_gone(A, now=1)
    state.file_seen(A, complete=True, now=2)
    assert complete(state, "1", EngineReport.FAILED).requeue == (A,)
    assert list(state.ready_names()) == [A]


@pytest.mark.parametrize("outcome", [EngineReport.DONE, EngineReport.FAILED])
def test_done_and_quarantined_files_gone_keep_their_record(outcome: EngineReport) -> None:
    """A copy that reappears later must not be basecalled twice."""
    state = RunState(max_attempts=1)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", outcome)
    before = state.files[A].state
    assert state.file_gone(A, now=3) is before
    assert state.files[A].present is False
    assert state.file_seen(A, complete=True, now=4) is before


# -------------------------------------------------------- mark_done_by_output


@pytest.mark.parametrize(
    ("setup", "changed", "after"),
    [
        ("unknown", True, FileState.DONE),
        ("incomplete", True, FileState.DONE),
        ("ready", True, FileState.DONE),
        ("assigned", False, FileState.ASSIGNED),
        ("done", False, FileState.DONE),
        ("quarantined", False, FileState.QUARANTINED),
    ],
)
def test_mark_done_by_output_changes_only_waiting_or_unknown_files(
    setup: str, changed: bool, after: FileState
) -> None:
    state = RunState(max_attempts=1)
    if setup == "incomplete":
        state.file_seen(A, complete=False, now=0)
    elif setup != "unknown":
        ready(state, A)
    if setup in ("assigned", "done", "quarantined"):
        assign(state, "1", 1)
    if setup == "done":
        complete(state, "1", EngineReport.DONE)
    elif setup == "quarantined":
        complete(state, "1", EngineReport.FAILED)
    assert state.mark_done_by_output(A, now=9) is changed
    assert state.state_of(A) is after
    assert list(state.ready_names()) == []
    assert sum(state.counts().values()) == 1


def test_mark_done_by_output_takes_a_ready_file_out_of_the_middle_of_the_queue() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assert state.mark_done_by_output(B, now=1)
    assert list(state.ready_names()) == [A, C]
    assert state.plan_assignment("gpu-1", 5, now=0).files == {A: 1, C: 1}


def test_file_marked_done_before_it_is_seen_is_never_queued() -> None:
    state = RunState(3)
    assert state.mark_done_by_output(A, now=0)
    assert state.files[A].present is False
    assert state.file_seen(A, complete=True, now=1) is FileState.DONE
    assert state.files[A].present
    assert list(state.ready_names()) == []


# -------------------------------------------------------------- incomplete_due


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (100.0, []),
        (104.9, []),
        (105.0, [A]),  # quiet for exactly settle_s is due
        (500.0, [A]),
    ],
)
def test_incomplete_due_after_settle_seconds(now: float, due: list[str]) -> None:
    state = RunState(3)
    state.file_seen(A, complete=False, now=100)
    assert state.incomplete_due(now=now, settle_s=5) == due


def test_incomplete_due_restarts_with_activity_and_skips_other_states() -> None:
    state = RunState(3)
    state.file_seen(A, complete=False, now=100)
    state.file_seen(B, complete=False, now=100)
    state.file_seen(B, complete=False, now=103)  # still being written
    state.file_seen(C, complete=False, now=100)
    state.file_seen(C, complete=True, now=101)
    ready(state, D, now=0)
    assert state.incomplete_due(now=105, settle_s=5) == [A]
    assert sorted(state.incomplete_due(now=108, settle_s=5)) == [A, B]


# ---------------------------------------------------------------- assignment


def test_plan_assignment_changes_nothing() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assign(state, "1", 1)
    state.expire("1", now=100)  # A carries an expired job to supersede
    before = snapshot(state)
    plan = state.plan_assignment("gpu-2", 2, now=100)
    assert plan.files == {A: 1, B: 1}
    assert plan.supersede == ("1",)
    assert snapshot(state) == before
    assert state.jobs["1"].superseded is False


def test_assignment_hands_out_the_oldest_files_first() -> None:
    state = RunState(3)
    ready(state, A, B, C, D)
    first = assign(state, "1", 2)
    second = assign(state, "2", 1)
    assert list(first.files) == [A, B]
    assert list(second.files) == [C]
    assert list(state.ready_names()) == [D]


def test_batch_size_larger_than_the_queue_hands_out_everything() -> None:
    state = RunState(3)
    ready(state, A, B)
    plan = state.plan_assignment("gpu-1", 100, now=0)
    assert plan.files == {A: 1, B: 1}
    assign(state, "1", 100)
    assert list(state.ready_names()) == []
    assert state.plan_assignment("gpu-1", 100, now=0).empty


@pytest.mark.parametrize("batch_size", [0, -1, -100])
def test_batch_size_zero_or_less_gives_an_empty_plan(batch_size: int) -> None:
    state = RunState(3)
    ready(state, A)
    plan = state.plan_assignment("gpu-1", batch_size, now=0)
    assert plan.empty
    assert plan.files == {}
    assert plan.supersede == ()


def test_empty_queue_gives_an_empty_plan() -> None:
    assert RunState(3).plan_assignment("gpu-1", 5, now=0).empty


def test_commit_assignment_hands_the_files_to_a_live_job() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    plan = state.plan_assignment("gpu-1", 2, now=0)
    job = state.commit_assignment(plan, "42", now=10, lease_s=LEASE_S)
    assert (job.job_id, job.engine_id, job.state) == ("42", "gpu-1", JobState.ASSIGNED)
    assert job.files == {A: 1, B: 1}
    assert (job.assigned_at, job.last_seen, job.lease_s, job.deadline()) == (10, 10, 60, 70)
    assert state.job("42") is job
    assert list(state.live_jobs()) == [job]
    for name in (A, B):
        assert state.files[name].state is FileState.ASSIGNED
        assert state.files[name].job_id == "42"
    assert state.engines["gpu-1"].live_jobs == {"42"}
    assert state.engines["gpu-1"].last_seen == 10
    assert state.last_activity == 10


@pytest.mark.parametrize("change", ["done_by_output", "gone", "assigned_elsewhere"])
def test_stale_plan_raises_and_changes_nothing(change: str) -> None:
    """Assignment is all-or-nothing: a plan overtaken by events must not strand files."""
    state = RunState(3)
    ready(state, A, B, C)
    plan = state.plan_assignment("gpu-1", 3, now=0)
    if change == "done_by_output":
        state.mark_done_by_output(C, now=1)
    elif change == "gone":
        state.file_gone(C, now=1)
    else:
        state.commit_assignment(
            state.plan_assignment("gpu-2", 3, now=0), "7", now=1, lease_s=LEASE_S
        )
    before = snapshot(state)
    with pytest.raises(ValueError, match="stale"):
        state.commit_assignment(plan, "8", now=2, lease_s=LEASE_S)
    assert snapshot(state) == before
    assert "8" not in state.jobs


def test_stale_plan_does_not_supersede_the_expired_job() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.expire("1", now=100)
    plan = state.plan_assignment("gpu-2", 2, now=100)
    state.file_gone(B, now=101)
    with pytest.raises(ValueError, match="stale"):
        state.commit_assignment(plan, "2", now=102, lease_s=LEASE_S)
    assert state.jobs["1"].superseded is False
    assert state.files[A].expired_job == "1"


def test_duplicate_job_id_raises_and_changes_nothing() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    plan = state.plan_assignment("gpu-2", 1, now=0)
    before = snapshot(state)
    with pytest.raises(ValueError, match="already in use"):
        state.commit_assignment(plan, "1", now=5, lease_s=LEASE_S)
    assert snapshot(state) == before


def test_engine_polled_records_an_idle_engine() -> None:
    state = RunState(3)
    state.engine_polled("gpu-1", now=12)
    assert state.engines["gpu-1"].last_seen == 12
    assert state.engines["gpu-1"].live_jobs == set()
    assert state.last_activity == 12


@pytest.mark.parametrize(
    ("holds_a_job", "benched", "silent_s", "forgotten"),
    [
        (False, False, 3600.5, True),
        (False, False, 3599.5, False),  # not silent long enough
        (True, False, 3600.5, False),  # its job's files are its until they come back
        (False, True, 3600.5, False),  # benched: it would escape its bench
    ],
)
def test_forget_idle_engines_forgets_only_silent_engines_without_work_or_bench(
    holds_a_job: bool, benched: bool, silent_s: float, forgotten: bool
) -> None:
    state = RunState(3)
    ready(state, A)
    if holds_a_job:
        assign(state, "1", 1, engine_id="gpu-1", now=0)
    else:
        state.engine_polled("gpu-1", now=0)
    if benched:
        state.engines["gpu-1"].benched_until = silent_s + 100
    state.engine_polled("gpu-2", now=silent_s)
    assert state.forget_idle_engines(silent_s, idle_s=3600) == (["gpu-1"] if forgotten else [])
    assert sorted(state.engines) == (["gpu-2"] if forgotten else ["gpu-1", "gpu-2"])


# ------------------------------------------------------------------ keepalive


def test_keepalive_extends_the_lease_and_marks_the_job_processing() -> None:
    state = RunState(3)
    ready(state, A)
    job = assign(state, "1", 1, now=0)
    assert state.keepalive("1", "basecalling", now=50) is False
    assert (job.state, job.last_seen, job.engine_state) == (
        JobState.PROCESSING,
        50,
        "basecalling",
    )
    assert job.deadline() == 110
    assert state.expired_jobs(now=100) == []
    assert state.engines["gpu-1"].last_seen == 50
    assert state.last_activity == 50


def test_keepalive_after_expiry_is_late() -> None:
    state = RunState(3)
    ready(state, A)
    job = assign(state, "1", 1)
    state.expire("1", now=61)
    assert state.keepalive("1", "basecalling", now=62) is True
    assert job.state is JobState.EXPIRED
    assert job.last_seen == 0  # a late keepalive does not revive the lease


@pytest.mark.parametrize("outcome", list(EngineReport))
def test_keepalive_after_completion_is_late(outcome: EngineReport) -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", outcome)
    assert state.keepalive("1", "basecalling", now=2) is True


def test_keepalive_for_an_unknown_job_raises_unknown_job() -> None:
    state = RunState(3)
    with pytest.raises(UnknownJob):
        state.keepalive("404", "basecalling", now=1)
    assert state.engines == {}


# ----------------------------------------------------------------- completion


@pytest.mark.parametrize(
    ("job_state", "outcome"),
    [
        ("DONE", EngineReport.DONE),
        ("done", EngineReport.DONE),
        ("Done", EngineReport.DONE),
        ("FAILED", EngineReport.FAILED),
        ("failed", EngineReport.FAILED),
        ("RELEASED", EngineReport.RELEASED),
        ("released", EngineReport.RELEASED),
        ("Released", EngineReport.RELEASED),
        ("", EngineReport.UNKNOWN),
        ("RELEASE", EngineReport.UNKNOWN),
        ("ERROR", EngineReport.UNKNOWN),
        ("DONE ", EngineReport.UNKNOWN),
        ("FAIL", EngineReport.UNKNOWN),
    ],
)
def test_outcome_parse(job_state: str, outcome: EngineReport) -> None:
    assert EngineReport.parse(job_state) is outcome


@pytest.mark.parametrize("outcome", list(EngineReport))
def test_plan_completion_changes_nothing(outcome: EngineReport) -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    before = snapshot(state)
    state.plan_completion("1", outcome, now=0)
    assert snapshot(state) == before


def test_plan_completion_for_an_unknown_job_raises_unknown_job() -> None:
    with pytest.raises(UnknownJob):
        RunState(3).plan_completion("404", EngineReport.DONE, now=0)


def test_done_on_a_live_job_merges_and_marks_its_files_done() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    plan = complete(state, "1", EngineReport.DONE, now=30)
    assert plan.action is CompletionAction.MERGE
    assert job.state is JobState.DONE
    assert job.finished_at == 30
    assert states(state) == {A: FileState.DONE, B: FileState.DONE, C: FileState.READY}
    assert all(state.files[name].job_id is None for name in (A, B))
    assert list(state.live_jobs()) == []
    engine = state.engines["gpu-1"]
    assert (engine.live_jobs, engine.jobs_done, engine.files_done) == (set(), 1, 2)


def test_failed_batch_requeues_to_the_front_in_order_as_halves() -> None:
    state = RunState(3)
    ready(state, A, B, C, D)
    job = assign(state, "1", 2)
    plan = complete(state, "1", EngineReport.FAILED, now=30)
    assert plan.action is CompletionAction.FAIL
    assert (plan.requeue, plan.quarantine) == ((A, B), ())
    assert job.state is JobState.FAILED
    assert list(state.ready_names()) == [A, B, C, D]
    assert state.files[A].failures == 1
    assert state.files[A].job_id is None
    assert state.engines["gpu-1"].jobs_failed == 1
    # Each half of a batch of two is one file: A goes out alone, then B, then the rest.
    assert state.plan_assignment("gpu-1", 3, now=31).files == {A: 2}
    assign(state, "2", 3, now=31)
    assert state.plan_assignment("gpu-1", 3, now=31).files == {B: 2}
    assign(state, "3", 3, now=31)
    assert state.plan_assignment("gpu-1", 3, now=31).files == {C: 1, D: 1}


def test_failed_alone_at_max_attempts_quarantines() -> None:
    """One engine only: max_attempts solo failures are enough."""
    state = RunState(max_attempts=2)
    ready(state, A, B)
    assign(state, "1", 1)
    assert complete(state, "1", EngineReport.FAILED).requeue == (A,)
    assign(state, "2", 1)  # A again, attempt 2
    plan = complete(state, "2", EngineReport.FAILED)
    assert (plan.requeue, plan.quarantine) == ((), (A,))
    assert state.files[A].state is FileState.QUARANTINED
    assert (state.files[A].failures, state.files[A].solo_failures) == (2, 2)
    assert list(state.ready_names()) == [B]


def test_failed_batch_requeues_even_files_past_max_attempts() -> None:
    """A batch's failure is not blamed on its files: none is quarantined by attempt."""
    state = RunState(max_attempts=2)
    state.file_seen(A, complete=True, now=0, history=FailureHistory(failures=3))
    ready(state, B)
    assign(state, "1", 2)
    plan = complete(state, "1", EngineReport.FAILED)
    assert (plan.requeue, plan.quarantine) == ((A, B), ())
    assert states(state) == {A: FileState.READY, B: FileState.READY}
    assert (state.files[A].failures, state.files[A].solo_failures) == (4, 0)


def test_unknown_report_sets_the_job_aside_and_quarantines_its_files() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    plan = complete(state, "1", EngineReport.parse("EXPLODED"))
    assert plan.action is CompletionAction.SET_ASIDE
    assert job.state is JobState.UNKNOWN
    assert states(state) == {A: FileState.QUARANTINED, B: FileState.QUARANTINED, C: FileState.READY}
    assert state.files[A].failures == 0
    assert list(state.live_jobs()) == []


def test_released_job_hands_its_files_back_to_the_front_with_no_attempt_counted() -> None:
    """RELEASED: the files go back to the front in order, with their failures, solo
    failures, engines and batch caps as they were, so the next attempt is this job's
    attempt again; the engine counts a release, and its streak and bench stay."""
    state = RunState(3)
    history = FailureHistory(failures=1, solo_failures=1, failed_on=frozenset({"gpu-9"}))
    for name in (B, A):  # each to the front: A, B
        state.file_seen(name, complete=True, now=0, history=FailureHistory(failures=2, batch_cap=2))
    ready(state, C, D)
    state.file_seen("e.pod5", complete=True, now=0, history=history)  # front: e, A, B, C, D
    assign(state, "0", 1)  # e, alone
    engine = state.engines["gpu-1"]
    engine.failure_streak = 1
    before = {name: copy.deepcopy(state.files[name]) for name in (A, B, C, D)}
    job = assign(state, "1", 4, now=5)
    assert job.files == {A: 3, B: 3}  # the batch cap of A and B keeps C and D out
    plan = complete(state, "1", EngineReport.RELEASED, now=30)
    assert plan.action is CompletionAction.RELEASE
    assert (plan.requeue, plan.quarantine) == ((A, B), ())
    assert job.state is JobState.RELEASED
    assert job.finished_at == 30
    assert list(state.ready_names()) == [A, B, C, D]
    for name in (A, B, C, D):
        record = state.files[name]
        assert record.state is FileState.READY
        assert record.job_id is None
        kept = before[name]
        assert (record.failures, record.solo_failures, record.failed_on, record.batch_cap) == (
            kept.failures, kept.solo_failures, kept.failed_on, kept.batch_cap
        )  # fmt: skip
    assert state.plan_assignment("gpu-2", 4, now=31).files == job.files
    assert list(state.live_jobs()) == [state.jobs["0"]]
    assert (engine.jobs_released, engine.jobs_failed, engine.jobs_done) == (1, 0, 0)
    assert (engine.failure_streak, engine.benched_until) == (1, 0.0)
    assert engine.live_jobs == {"0"}


def test_a_file_released_again_and_again_is_never_quarantined() -> None:
    """max_attempts=1: one FAILED alone would quarantine it; releases never do."""
    state = RunState(max_attempts=1)
    ready(state, A, B)
    for k in range(10):
        job = assign(state, str(k), 1, now=k)
        assert job.files == {A: 1}
        assert complete(state, str(k), EngineReport.RELEASED, now=k).action is (
            CompletionAction.RELEASE
        )
    assert states(state) == {A: FileState.READY, B: FileState.READY}
    assert state.engines["gpu-1"].jobs_released == 10
    assign(state, "last", 1, now=20)
    assert complete(state, "last", EngineReport.FAILED, now=20).quarantine == (A,)


def test_a_release_neither_benches_an_engine_nor_resets_its_streak() -> None:
    state = RunState(10, bench_after=2, bench_s=300)
    ready(state, *names(6))
    state.engine_polled("gpu-2", now=0)
    assign(state, "1", 1, now=1)
    complete(state, "1", EngineReport.FAILED, now=1)
    engine = state.engines["gpu-1"]
    assert engine.failure_streak == 1
    for k in range(2, 6):
        state.engine_polled("gpu-2", now=k)
        assign(state, str(k), 1, now=k)
        complete(state, str(k), EngineReport.RELEASED, now=k)
        assert (engine.failure_streak, engine.benched_until) == (1, 0.0)
    state.engine_polled("gpu-2", now=6)
    assign(state, "6", 1, now=6)  # a fresh file
    complete(state, "6", EngineReport.FAILED, now=6)
    assert engine.benched_until == 6 + 300  # the streak went on from where it was


def test_a_released_file_deleted_while_assigned_is_not_queued_again() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.file_gone(A, now=1)
    plan = complete(state, "1", EngineReport.RELEASED, now=2)
    assert plan.requeue == (B,)
    assert states(state) == {B: FileState.READY}


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (EngineReport.DONE, EngineReport.DONE),
        (EngineReport.FAILED, EngineReport.FAILED),
        (EngineReport.RELEASED, EngineReport.RELEASED),
        (EngineReport.UNKNOWN, EngineReport.UNKNOWN),
        (EngineReport.UNKNOWN, EngineReport.DONE),
        (EngineReport.UNKNOWN, EngineReport.FAILED),
        (EngineReport.UNKNOWN, EngineReport.RELEASED),
    ],
)
def test_repeated_report_is_harmless(first: EngineReport, again: EngineReport) -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    complete(state, "1", first)
    before = run_snapshot(state)
    plan = state.plan_completion("1", again, now=2)
    assert plan.action is CompletionAction.REPEAT
    state.apply_completion(plan, now=2)
    assert run_snapshot(state) == before


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (EngineReport.DONE, EngineReport.FAILED),
        (EngineReport.DONE, EngineReport.UNKNOWN),
        (EngineReport.FAILED, EngineReport.DONE),
        (EngineReport.FAILED, EngineReport.UNKNOWN),
        (EngineReport.DONE, EngineReport.RELEASED),
        (EngineReport.FAILED, EngineReport.RELEASED),
        (EngineReport.RELEASED, EngineReport.DONE),
        (EngineReport.RELEASED, EngineReport.FAILED),
        (EngineReport.RELEASED, EngineReport.UNKNOWN),
    ],
)
def test_contradicting_report_after_completion_is_a_conflict(
    first: EngineReport, then: EngineReport
) -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", first)
    before = run_snapshot(state)
    plan = state.plan_completion("1", then, now=2)
    assert plan.action is CompletionAction.CONFLICT
    assert plan.supersede is False
    assert "already completed" in plan.reason
    state.apply_completion(plan, now=2)
    assert run_snapshot(state) == before


@pytest.mark.parametrize(
    "outcome", [EngineReport.FAILED, EngineReport.RELEASED, EngineReport.UNKNOWN]
)
def test_late_failed_released_or_unknown_after_expiry_is_ignored(outcome: EngineReport) -> None:
    state = RunState(3)
    ready(state, A, B)
    job = assign(state, "1", 2)
    state.expire("1", now=100)
    before = run_snapshot(state)
    plan = state.plan_completion("1", outcome, now=101)
    assert plan.action is CompletionAction.LATE_IGNORED
    state.apply_completion(plan, now=101)
    assert run_snapshot(state) == before
    assert job.state is JobState.EXPIRED
    assert state.files[A].failures == 0


def test_late_done_after_files_were_reassigned_is_not_merged() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.expire("1", now=100)
    reassign = state.plan_assignment("gpu-2", 1, now=101)
    assert reassign.supersede == ("1",)  # the expired job's outputs are set aside first
    state.commit_assignment(reassign, "2", now=101, lease_s=LEASE_S)
    assert state.jobs["1"].superseded is True
    plan = state.plan_completion("1", EngineReport.DONE, now=102)
    assert plan.action is CompletionAction.LATE_NOT_MERGED
    assert plan.supersede is False  # already set aside by the reassignment
    assert "handed out again" in plan.reason
    before = run_snapshot(state)
    state.apply_completion(plan, now=102)
    assert run_snapshot(state) == before
    assert state.jobs["1"].state is JobState.EXPIRED
    assert states(state) == {A: FileState.ASSIGNED, B: FileState.READY}


@pytest.mark.parametrize("taken", ["done_by_output", "gone"])
def test_late_done_after_a_file_was_taken_otherwise_supersedes_the_job(taken: str) -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.expire("1", now=100)
    if taken == "done_by_output":
        state.mark_done_by_output(A, now=101)
    else:
        state.file_gone(A, now=101)
    plan = state.plan_completion("1", EngineReport.DONE, now=102)
    assert plan.action is CompletionAction.LATE_NOT_MERGED
    assert plan.supersede is True
    state.apply_completion(plan, now=102)
    assert state.jobs["1"].superseded is True
    assert state.files[B].expired_job is None
    assert state.files[B].state is FileState.READY
    # Once set aside, the next late DONE has nothing left to supersede.
    again = state.plan_completion("1", EngineReport.DONE, now=103)
    assert (again.action, again.supersede) == (CompletionAction.LATE_NOT_MERGED, False)


def test_late_done_while_its_files_are_reserved_by_an_assignment_in_flight_is_not_merged() -> None:
    """The files are being handed out again (reserved, their step on the disk): a late
    DONE that would merge them now would put their reads out twice."""
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.expire("1", now=100)
    reassign = state.plan_assignment("gpu-2", 2, now=101)
    state.reserve(reassign.files)
    plan = state.plan_completion("1", EngineReport.DONE, now=102)
    assert plan.action is CompletionAction.LATE_NOT_MERGED
    assert plan.supersede is True
    state.apply_completion(plan, now=102)
    state.commit_assignment(reassign, "2", now=103, lease_s=LEASE_S)
    assert states(state) == {A: FileState.ASSIGNED, B: FileState.ASSIGNED}
    assert not state.reserved(A)


def test_a_reserved_file_deleted_meanwhile_is_forgotten_if_its_step_fails() -> None:
    """Deleted while reserved, a file stays (its assignment may still commit it, as a
    file deleted after it was assigned); if the step fails it is forgotten then."""
    state = RunState(3)
    ready(state, A, B)
    plan = state.plan_assignment("gpu-1", 2, now=1)
    state.reserve(plan.files)
    assert state.file_gone(A, now=2) is FileState.READY
    assert not state.mark_done_by_output(B, now=2)  # its assignment's business now
    assert state.plan_assignment("gpu-2", 2, now=3).empty
    state.unreserve(plan.files)
    assert states(state) == {B: FileState.READY}
    assert list(state.ready_names()) == [B]


def test_late_done_when_files_were_not_reassigned_merges() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    state.expire("1", now=100)
    assert list(state.ready_names()) == [A, B, C]
    plan = complete(state, "1", EngineReport.DONE, now=105)
    assert plan.action is CompletionAction.MERGE
    assert job.state is JobState.DONE
    assert states(state) == {A: FileState.DONE, B: FileState.DONE, C: FileState.READY}
    assert list(state.ready_names()) == [C]
    assert state.files[A].expired_job is None
    engine = state.engines["gpu-1"]
    assert (engine.jobs_expired, engine.jobs_done, engine.files_done) == (1, 1, 2)
    assert state.plan_completion("1", EngineReport.DONE, now=106).action is CompletionAction.REPEAT


# ------------------------------------------------ retry policy: poison files, bad engines

WINDOW_S = 90.0  # RunState's default engine_window_s
POISON = "f5.pod5"


def names(count: int, prefix: str = "f") -> list[str]:
    return [f"{prefix}{i}.pod5" for i in range(count)]


def fail_alone(
    state: RunState, job_id: str, name: str, engine_id: str, now: float
) -> CompletionPlan:
    """Hand `name` alone to `engine_id` and report it FAILED, all at `now`."""
    plan = state.plan_assignment(engine_id, 1, now)
    assert list(plan.files) == [name]
    state.commit_assignment(plan, job_id, now, LEASE_S)
    return complete(state, job_id, EngineReport.FAILED, now=now)


def test_failed_batch_of_ten_comes_back_as_halves_handed_out_one_after_the_other() -> None:
    state = RunState(3)
    files = names(12)
    ready(state, *files)
    assign(state, "1", 10)
    plan = complete(state, "1", EngineReport.FAILED)
    assert plan.requeue == tuple(files[:10])
    assert list(state.ready_names()) == files  # at the front, in order
    assert [state.files[n].batch_cap for n in files] == [5] * 10 + [0, 0]
    assert list(assign(state, "2", 10).files) == files[:5]
    assert list(assign(state, "3", 10).files) == files[5:10]
    assert list(assign(state, "4", 10).files) == files[10:]


def test_a_half_goes_out_in_batches_no_larger_than_the_engine_asks_for() -> None:
    state = RunState(3)
    files = names(4)
    ready(state, *files)
    assign(state, "1", 4)
    complete(state, "1", EngineReport.FAILED)  # halves of two
    assert list(assign(state, "2", 1).files) == files[:1]
    # Never more than the cap either. (Which files fill it up is not specified: halves of
    # equal size share a cap, so the rest of one half may go out with the other.)
    second = list(assign(state, "3", 5).files)
    assert second[0] == files[1]
    assert len(second) <= 2


def test_poison_file_isolated_from_a_batch_of_eight_in_three_failures_the_rest_done() -> None:
    """Its batch-mates go out in ever smaller batches and are basecalled meanwhile."""
    state = RunState(3)
    files = names(8)
    ready(state, *files)
    trace: list[tuple[int, EngineReport]] = []
    for job_id in range(1, 100):
        plan = state.plan_assignment("gpu-1", 8, now=job_id)
        if plan.empty:
            break
        state.commit_assignment(plan, str(job_id), job_id, LEASE_S)
        outcome = EngineReport.FAILED if POISON in plan.files else EngineReport.DONE
        complete(state, str(job_id), outcome, now=job_id)
        trace.append((len(plan.files), outcome))
    failed, done = EngineReport.FAILED, EngineReport.DONE
    assert trace == [
        (8, failed),  # f0-f7
        (4, done),  # f0-f3
        (4, failed),  # f4-f7
        (2, failed),  # f4 f5: the third failure leaves the poison file alone
        (1, done),  # f4
        (1, failed),  # f5, failed alone: 1
        (1, failed),  # 2
        (1, failed),  # 3: quarantined (no other engine to try)
        (2, done),  # f6 f7
    ]
    assert {n for n in files if state.state_of(n) is FileState.DONE} == set(files) - {POISON}
    assert state.state_of(POISON) is FileState.QUARANTINED
    assert state.files[POISON].solo_failures == 3


def test_a_file_is_not_quarantined_for_failing_in_a_batch() -> None:
    state = RunState(max_attempts=1)
    files = names(4)
    ready(state, *files)
    assign(state, "1", 4)
    assert complete(state, "1", EngineReport.FAILED).quarantine == ()
    assign(state, "2", 4)  # f0 f1
    assert complete(state, "2", EngineReport.FAILED).quarantine == ()
    record = state.files[files[0]]
    assert (record.state, record.failures, record.solo_failures) == (FileState.READY, 2, 0)
    assert record.failed_on == frozenset()
    assert state.counts()[FileState.QUARANTINED] == 0


def test_quarantined_after_max_attempts_solo_failures_on_two_engines() -> None:
    state = RunState(max_attempts=2)
    ready(state, A, B)
    state.engine_polled("gpu-2", now=0)
    assert fail_alone(state, "1", A, "gpu-1", now=1).requeue == (A,)
    assert state.files[A].failed_on == frozenset({"gpu-1"})
    state.engine_polled("gpu-1", now=2)
    plan = fail_alone(state, "2", A, "gpu-2", now=3)
    assert (plan.requeue, plan.quarantine) == ((), (A,))
    record = state.files[A]
    assert (record.state, record.solo_failures) == (FileState.QUARANTINED, 2)
    assert record.failed_on == frozenset({"gpu-1", "gpu-2"})


@pytest.mark.parametrize("other", ["none", "quiet", "benched"])
def test_with_one_engine_working_quarantined_after_max_attempts_solo_failures(
    other: str,
) -> None:
    """No other engine to try the file on: none, one last seen long ago, or a benched one."""
    state = RunState(max_attempts=3, bench_after=1)
    start = 1.0
    if other == "quiet":
        state.engine_polled("gpu-2", now=0)
        start = WINDOW_S + 1
    elif other == "benched":
        ready(state, D)
        state.engine_polled("gpu-1", now=0)
        assign(state, "x", 1, engine_id="gpu-2", now=0)
        complete(state, "x", EngineReport.FAILED, now=0)  # bench_after=1: gpu-2 is benched
        assign(state, "y", 1, now=0)  # D
        complete(state, "y", EngineReport.DONE, now=0)
    ready(state, A, B)
    for attempt in (1, 2):
        plan = fail_alone(state, str(attempt), A, "gpu-1", now=start + attempt)
        assert (plan.requeue, plan.quarantine) == ((A,), ())
    assert not state.other_engines_working("gpu-1", start + 3)
    plan = fail_alone(state, "3", A, "gpu-1", now=start + 3)
    assert (plan.requeue, plan.quarantine) == ((), (A,))
    assert state.files[A].failed_on == frozenset({"gpu-1"})


ROUND_S = WINDOW_S + 10  # long enough for an engine to go quiet between rounds


def fail_alone_while_gpu2_comes_and_goes(
    state: RunState, job_id: str, name: str, now: float
) -> CompletionPlan:
    """gpu-1 gets `name` while gpu-2 is quiet; gpu-2 polls again before gpu-1 reports FAILED."""
    assert not state.other_engines_working("gpu-1", now)
    plan = state.plan_assignment("gpu-1", 1, now)
    assert list(plan.files) == [name]
    state.commit_assignment(plan, job_id, now, LEASE_S)
    state.engine_polled("gpu-2", now + 1)
    assert state.other_engines_working("gpu-1", now + 2)
    return complete(state, job_id, EngineReport.FAILED, now=now + 2)


def test_max_attempts_on_the_same_engine_while_another_works_does_not_quarantine() -> None:
    """That engine skips the file from then on, and the other engine takes it."""
    state = RunState(max_attempts=2)
    ready(state, A, B)
    for k in (1, 2):
        plan = fail_alone_while_gpu2_comes_and_goes(state, str(k), A, now=k * ROUND_S)
        assert (plan.requeue, plan.quarantine) == ((A,), ())
    record = state.files[A]
    assert (record.state, record.solo_failures) == (FileState.READY, 2)
    assert record.failed_on == frozenset({"gpu-1"})
    now = 2 * ROUND_S + 3
    assert list(state.ready_names()) == [A, B]
    assert state.plan_assignment("gpu-1", 5, now).files == {B: 1}
    to_gpu2 = state.plan_assignment("gpu-2", 5, now)
    assert to_gpu2.files == {A: 3}
    # And on a second engine, the file is quarantined.
    state.commit_assignment(to_gpu2, "3", now, LEASE_S)
    state.engine_polled("gpu-1", now)
    assert complete(state, "3", EngineReport.FAILED, now=now).quarantine == (A,)


def test_a_file_failed_alone_on_both_of_two_engines_still_goes_out_until_quarantined() -> None:
    """Once it failed alone on two engines, neither skips it: else, with max_attempts above
    the number of engines, it would stay READY for ever and the run would never end."""
    state = RunState(max_attempts=3)
    ready(state, A, B)
    state.engine_polled("gpu-1", now=0)
    state.engine_polled("gpu-2", now=0)
    fail_alone(state, "1", A, "gpu-1", now=1)
    assert fail_alone(state, "2", A, "gpu-2", now=2).requeue == (A,)  # 2 solo failures < 3
    assert state.files[A].failed_on == frozenset({"gpu-1", "gpu-2"})
    assert state.other_engines_working("gpu-1", now=3)
    assert state.other_engines_working("gpu-2", now=3)
    plan = fail_alone(state, "3", A, "gpu-1", now=3)
    assert (plan.requeue, plan.quarantine) == ((), (A,))


def test_a_file_failing_alone_on_one_engine_is_quarantined_at_the_hard_limit() -> None:
    """Even while other engines work, a file cannot keep failing on one engine forever."""
    state = RunState(max_attempts=2)
    ready(state, A)
    hard_limit = HARD_LIMIT_FACTOR * 2
    for k in range(1, hard_limit):
        plan = fail_alone_while_gpu2_comes_and_goes(state, str(k), A, now=k * ROUND_S)
        assert (plan.requeue, plan.quarantine) == ((A,), ()), k
    plan = fail_alone_while_gpu2_comes_and_goes(state, "last", A, now=hard_limit * ROUND_S)
    assert (plan.requeue, plan.quarantine) == ((), (A,))
    record = state.files[A]
    assert (record.state, record.solo_failures) == (FileState.QUARANTINED, hard_limit)
    assert record.failed_on == frozenset({"gpu-1"})


def fail_batch(state: RunState, job_id: str, engine_id: str, now: float) -> None:
    """`engine_id` takes a batch of fresh files (at most two) and reports it FAILED, all at
    `now`; the files then leave the queue, so the next batch is fresh again (a batch of
    files that failed before does not count towards benching)."""
    job = assign(state, job_id, 2, engine_id=engine_id, now=now)
    assert all(attempt == 1 for attempt in job.files.values())
    complete(state, job_id, EngineReport.FAILED, now=now)
    for name in job.files:
        state.file_gone(name, now)


def test_engine_benched_after_bench_after_failures_in_a_row_until_the_time_passes() -> None:
    state = RunState(10, bench_after=3, bench_s=300)
    ready(state, *names(8))  # three failed batches of two leave the queue; two remain
    state.engine_polled("gpu-1", now=0)
    engine = state.engines["gpu-1"]
    for k in (1, 2, 3):
        assert not state.plan_assignment("gpu-1", 2, now=k).benched
        state.engine_polled("gpu-2", now=k)
        fail_batch(state, str(k), "gpu-1", now=k)
        assert engine.failure_streak == (k if k < 3 else 0)  # benching starts a new streak
    assert engine.benched_until == 303
    before = snapshot(state)
    plan = state.plan_assignment("gpu-1", 5, now=4)
    assert (plan.empty, plan.benched, plan.supersede) == (True, True, ())
    assert snapshot(state) == before
    assert state.plan_assignment("gpu-1", 5, now=302.9).benched
    # The work flows to the others, which do not count gpu-1 as working meanwhile.
    assert not state.plan_assignment("gpu-2", 5, now=4).empty
    assert not state.other_engines_working("gpu-2", now=4)
    plan = state.plan_assignment("gpu-1", 5, now=303)
    assert not plan.benched
    assert not plan.empty


def test_done_resets_the_failure_streak() -> None:
    state = RunState(10, bench_after=2)
    ready(state, *names(4))
    state.engine_polled("gpu-2", now=0)
    fail_batch(state, "1", "gpu-1", now=1)
    assert state.engines["gpu-1"].failure_streak == 1
    assign(state, "2", 2, now=2)
    complete(state, "2", EngineReport.DONE, now=2)
    assert state.engines["gpu-1"].failure_streak == 0
    fail_batch(state, "3", "gpu-1", now=3)
    assert state.engines["gpu-1"].failure_streak == 1
    assert state.engines["gpu-1"].benched_until == 0
    assert not state.plan_assignment("gpu-1", 2, now=4).benched


@pytest.mark.parametrize("other", ["none", "quiet", "benched"])
def test_a_lone_engine_is_never_benched(other: str) -> None:
    """With nobody to hand its work to, benching an engine would only stop the run."""
    state = RunState(10, bench_after=1)
    ready(state, *names(6))
    start = 1.0
    if other == "quiet":
        state.engine_polled("gpu-2", now=0)
        start = WINDOW_S + 1
    elif other == "benched":
        state.engine_polled("gpu-1", now=0)
        fail_batch(state, "x", "gpu-2", now=0)
        assert state.plan_assignment("gpu-2", 1, now=1).benched
    for k in range(5):
        fail_batch(state, str(k), "gpu-1", now=start + k)
        assert not state.plan_assignment("gpu-1", 2, now=start + k).benched
    assert state.engines["gpu-1"].benched_until == 0
    assert state.engines["gpu-1"].failure_streak == 5


def test_bench_after_zero_never_benches() -> None:
    state = RunState(10, bench_after=0)
    ready(state, *names(6))
    for k in range(5):
        state.engine_polled("gpu-2", now=k)
        fail_batch(state, str(k), "gpu-1", now=k)
    assert state.engines["gpu-1"].benched_until == 0
    assert not state.plan_assignment("gpu-1", 2, now=5).benched


@pytest.mark.parametrize(("failed", "gets_fresh"), [(SKIP_LIMIT, True), (SKIP_LIMIT + 1, False)])
def test_the_skip_limit_bounds_the_scan_past_files_this_engine_failed_alone(
    failed: int, gets_fresh: bool
) -> None:
    """Past SKIP_LIMIT such files, the engine gets nothing; another engine gets them."""
    failed_on_gpu1 = FailureHistory(
        failures=1, solo_failures=1, failed_on=frozenset({"gpu-1"}), batch_cap=1
    )
    state = RunState(3)
    ready(state, "fresh.pod5")
    for name in names(failed, "p"):
        state.file_seen(name, complete=True, now=0, history=failed_on_gpu1)
    state.engine_polled("gpu-2", now=0)
    plan = state.plan_assignment("gpu-1", 5, now=1)
    assert plan.files == ({"fresh.pod5": 1} if gets_fresh else {})
    assert not plan.benched
    front = next(state.ready_names())
    assert state.plan_assignment("gpu-2", 5, now=1).files == {front: 2}


def test_an_engine_takes_a_file_it_failed_alone_when_no_other_engine_works() -> None:
    state = RunState(3)
    ready(state, B)
    state.file_seen(A, complete=True, now=0, history=FailureHistory(1, 1, frozenset({"gpu-1"}), 1))
    state.engine_polled("gpu-2", now=0)
    assert state.plan_assignment("gpu-1", 5, now=WINDOW_S).files == {B: 1}
    assert state.plan_assignment("gpu-1", 5, now=WINDOW_S + 1).files == {A: 2}


def test_other_engines_working() -> None:
    state = RunState(10, bench_after=1, engine_window_s=WINDOW_S)
    assert not state.other_engines_working("gpu-1", now=0)
    state.engine_polled("gpu-1", now=0)
    assert not state.other_engines_working("gpu-1", now=0)  # itself does not count
    assert state.other_engines_working("gpu-2", now=0)
    assert state.other_engines_working("gpu-2", now=WINDOW_S)  # seen exactly a window ago
    assert not state.other_engines_working("gpu-2", now=WINDOW_S + 0.1)
    # A benched engine does not count until its bench ends.
    ready(state, A)
    state.engine_polled("gpu-2", now=10)
    fail_batch(state, "1", "gpu-1", now=10)
    assert state.engines["gpu-1"].benched_until == 310
    assert not state.other_engines_working("gpu-2", now=20)
    state.engine_polled("gpu-1", now=309)  # a benched engine still polls
    assert not state.other_engines_working("gpu-2", now=309)
    assert state.other_engines_working("gpu-2", now=310)


def test_expired_files_at_the_front_do_not_take_a_half_along() -> None:
    """Files of an expired job come back uncapped: a batch of them stops at the halves."""
    state = RunState(3)
    files = names(6)
    ready(state, *files)
    assign(state, "1", 4)  # f0-f3
    assign(state, "2", 2)  # f4 f5
    complete(state, "1", EngineReport.FAILED)  # f0 f1 | f2 f3, capped at 2
    state.expire("2", now=100)  # f4 f5 go to the front, uncapped
    assert list(state.ready_names()) == files[4:] + files[:4]
    assert list(assign(state, "3", 10, now=100).files) == files[4:]
    assert list(assign(state, "4", 10, now=100).files) == files[:2]
    assert list(assign(state, "5", 10, now=100).files) == files[2:4]


def test_halves_of_an_odd_batch_go_out_apart_from_each_other_and_from_fresh_files() -> None:
    state = RunState(3)
    files = names(5)
    ready(state, *files)
    assign(state, "1", 3)
    complete(state, "1", EngineReport.FAILED)  # f0 f1 (cap 2), f2 (cap 1)
    assert list(assign(state, "2", 10).files) == files[:2]
    assert list(assign(state, "3", 10).files) == files[2:3]
    assert list(assign(state, "4", 10).files) == files[3:]


# --------------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    ("keepalive_at", "now", "expired"),
    [
        (None, 59.0, False),
        (None, 60.0, False),  # the deadline itself is still in time
        (None, 60.001, True),
        (50.0, 100.0, False),
        (50.0, 110.0, False),
        (50.0, 110.5, True),
    ],
)
def test_expired_jobs_at_chosen_times(
    keepalive_at: float | None, now: float, expired: bool
) -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1, now=0)
    if keepalive_at is not None:
        state.keepalive("1", "running", now=keepalive_at)
    assert [job.job_id for job in state.expired_jobs(now)] == (["1"] if expired else [])


def test_expired_jobs_changes_nothing_and_skips_ended_jobs() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assign(state, "1", 1, now=0)
    assign(state, "2", 1, now=0)
    assign(state, "3", 1, now=50)
    complete(state, "2", EngineReport.DONE, now=1)
    before = snapshot(state)
    assert [job.job_id for job in state.expired_jobs(now=100)] == ["1"]
    assert snapshot(state) == before


def test_expire_requeues_files_to_the_front_and_remembers_the_job() -> None:
    state = RunState(3)
    ready(state, A, B, C, D)
    job = assign(state, "1", 2)
    state.expire("1", now=100)
    assert job.state is JobState.EXPIRED
    assert job.finished_at == 100
    assert list(state.ready_names()) == [A, B, C, D]
    for name in (A, B):
        record = state.files[name]
        assert (record.job_id, record.expired_job, record.failures) == (None, "1", 0)
    assert list(state.live_jobs()) == []
    engine = state.engines["gpu-1"]
    assert (engine.live_jobs, engine.jobs_expired) == (set(), 1)
    assert state.plan_assignment("gpu-2", 5, now=100).files == {A: 1, B: 1, C: 1, D: 1}


def test_expire_of_an_ended_job_changes_nothing() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    assign(state, "2", 1)
    state.expire("1", now=100)
    complete(state, "2", EngineReport.DONE, now=5)
    before = snapshot(state)
    state.expire("1", now=200)
    state.expire("2", now=200)
    assert snapshot(state) == before


def test_expire_of_an_unknown_job_raises_unknown_job() -> None:
    with pytest.raises(UnknownJob):
        RunState(3).expire("404", now=1)


# -------------------------------------------------------------------- restore


def restored_job(
    job_id: str, files: dict[str, int], state: JobState, *, superseded: bool = False
) -> Job:
    """A job as the journal would rebuild it from disk: assigned at 10 s, last seen at 20 s."""
    return Job(
        job_id=job_id,
        engine_id="gpu-1",
        files=files,
        state=state,
        assigned_at=10.0,
        last_seen=20.0,
        lease_s=LEASE_S,
        superseded=superseded,
    )


def test_restore_done_records_a_done_file_that_is_never_queued() -> None:
    state = RunState(3)
    state.restore_done(A, now=0)
    assert state.files[A].state is FileState.DONE
    assert state.files[A].present is False
    assert state.file_seen(A, complete=True, now=1) is FileState.DONE
    assert list(state.ready_names()) == []


def test_restore_done_leaves_a_known_file_alone() -> None:
    state = RunState(3)
    ready(state, A)
    state.restore_done(A, now=1)
    assert state.files[A].state is FileState.READY


def test_restore_quarantined_keeps_the_failure_count() -> None:
    state = RunState(3)
    state.restore_quarantined(A, failures=3, now=0)
    record = state.files[A]
    assert (record.state, record.failures, record.present) == (FileState.QUARANTINED, 3, False)
    assert state.file_seen(A, complete=True, now=1) is FileState.QUARANTINED
    state.restore_quarantined(A, failures=1, now=2)
    assert state.files[A].failures == 3


def test_restore_live_job_takes_its_files() -> None:
    state = RunState(3)
    ready(state, B, C)  # the input scan already saw B
    job = restored_job("1", {A: 2, B: 1}, JobState.PROCESSING)
    state.restore_job(job)
    assert state.job("1") is job
    assert list(state.live_jobs()) == [job]
    assert states(state) == {A: FileState.ASSIGNED, B: FileState.ASSIGNED, C: FileState.READY}
    assert state.files[A].job_id == state.files[B].job_id == "1"
    assert (state.files[A].failures, state.files[A].present) == (1, False)
    assert list(state.ready_names()) == [C]
    assert state.engines["gpu-1"].live_jobs == {"1"}
    assert state.counts()[FileState.ASSIGNED] == 2
    # The restored lease runs from its last keepalive, and the job can carry on.
    assert state.expired_jobs(now=80) == []
    assert state.expired_jobs(now=81) == [job]
    assert state.keepalive("1", "running", now=70) is False


def test_restored_live_job_completes_like_any_other() -> None:
    state = RunState(max_attempts=2)
    state.restore_job(restored_job("1", {A: 2, B: 1}, JobState.ASSIGNED))
    state.file_seen(A, complete=True, now=30)
    state.file_seen(B, complete=True, now=30)
    plan = complete(state, "1", EngineReport.FAILED, now=31)
    assert (plan.requeue, plan.quarantine) == ((A, B), ())  # a batch: retried in halves
    assert states(state) == {A: FileState.READY, B: FileState.READY}
    assert state.files[A].failures == 2
    assert state.plan_assignment("gpu-1", 5, now=32).files == {A: 3}


def test_restore_expired_job_lets_a_late_done_merge() -> None:
    state = RunState(3)
    ready(state, A, B)  # the input scan ran first
    state.restore_job(restored_job("1", {A: 1, B: 1}, JobState.EXPIRED))
    assert state.files[A].expired_job == "1"
    assert list(state.live_jobs()) == []
    assert complete(state, "1", EngineReport.DONE).action is CompletionAction.MERGE
    assert states(state) == {A: FileState.DONE, B: FileState.DONE}


def test_restore_superseded_expired_job_does_not_merge_a_late_done() -> None:
    state = RunState(3)
    ready(state, A)
    state.restore_job(restored_job("1", {A: 1}, JobState.EXPIRED, superseded=True))
    assert state.files[A].expired_job is None
    plan = state.plan_completion("1", EngineReport.DONE, now=0)
    assert (plan.action, plan.supersede) == (CompletionAction.LATE_NOT_MERGED, False)


@pytest.mark.parametrize(
    "job_state", [JobState.DONE, JobState.FAILED, JobState.RELEASED, JobState.UNKNOWN]
)
def test_restore_finished_job_only_remembers_it(job_state: JobState) -> None:
    state = RunState(3)
    ready(state, A)
    job = restored_job("1", {A: 1}, job_state)
    state.restore_job(job)
    assert state.job("1") is job
    assert list(state.live_jobs()) == []
    assert states(state) == {A: FileState.READY}
    assert state.engines["gpu-1"].live_jobs == set()
    assert state.keepalive("1", "running", now=30) is True


def test_failed_retries_do_not_count_towards_benching() -> None:
    """Failing a batch of files that failed before (a poison file being isolated) does
    not bench a healthy engine; failing fresh batches does."""
    state = RunState(10, bench_after=2, bench_s=300)
    ready(state, *names(8))
    state.engine_polled("gpu-2", now=0)
    first = assign(state, "1", 4, now=1)
    complete(state, "1", EngineReport.FAILED, now=1)
    for k in range(2, 5):  # the halves, and their halves: all retries
        state.engine_polled("gpu-2", now=k)
        job = assign(state, str(k), 4, now=k)
        assert set(job.files) <= set(first.files)
        complete(state, str(k), EngineReport.FAILED, now=k)
    engine = state.engines["gpu-1"]
    assert (engine.failure_streak, engine.benched_until) == (1, 0)
