"""Unit tests of the pure state machine `RunState`: time is passed in, never read."""

from __future__ import annotations

import copy

import pytest

from reactor.state import (
    CompletionAction,
    CompletionPlan,
    FileState,
    Job,
    JobState,
    Outcome,
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
    plan = state.plan_assignment(engine_id, batch_size)
    return state.commit_assignment(plan, job_id, now, LEASE_S)


def complete(state: RunState, job_id: str, outcome: Outcome, now: float = 1.0) -> CompletionPlan:
    plan = state.plan_completion(job_id, outcome)
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
    complete(state, "1", Outcome.DONE)
    complete(state, "2", Outcome.FAILED)  # max_attempts=1: quarantined
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
    assert state.plan_assignment("gpu-1", 10).empty


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
    complete(state, "1", Outcome.DONE)
    state.file_gone(A, now=2)
    assert state.file_seen(A, complete=True, now=3) is FileState.DONE
    assert state.files[A].present
    assert list(state.ready_names()) == []


def test_quarantined_file_seen_again_stays_quarantined() -> None:
    state = RunState(max_attempts=1)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", Outcome.FAILED)
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
    assert state.file_seen(C, complete=True, now=1, failures=1) is FileState.READY
    state.file_seen(D, complete=True, now=2, failures=2)
    assert list(state.ready_names()) == [D, C, A, B]
    assert state.files[D].failures == 2


def test_attempt_number_counts_earlier_failures() -> None:
    state = RunState(3)
    state.file_seen(A, complete=True, now=0, failures=2)
    ready(state, B)
    assert state.plan_assignment("gpu-1", 2).files == {A: 3, B: 1}


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
    plan = complete(state, "1", Outcome.FAILED, now=2)
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
    assert complete(state, "1", Outcome.FAILED).requeue == (A,)
    assert list(state.ready_names()) == [A]


@pytest.mark.parametrize("outcome", [Outcome.DONE, Outcome.FAILED])
def test_done_and_quarantined_files_gone_keep_their_record(outcome: Outcome) -> None:
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
        complete(state, "1", Outcome.DONE)
    elif setup == "quarantined":
        complete(state, "1", Outcome.FAILED)
    assert state.mark_done_by_output(A, now=9) is changed
    assert state.state_of(A) is after
    assert list(state.ready_names()) == []
    assert sum(state.counts().values()) == 1


def test_mark_done_by_output_takes_a_ready_file_out_of_the_middle_of_the_queue() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    assert state.mark_done_by_output(B, now=1)
    assert list(state.ready_names()) == [A, C]
    assert state.plan_assignment("gpu-1", 5).files == {A: 1, C: 1}


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
    plan = state.plan_assignment("gpu-2", 2)
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
    plan = state.plan_assignment("gpu-1", 100)
    assert plan.files == {A: 1, B: 1}
    assign(state, "1", 100)
    assert list(state.ready_names()) == []
    assert state.plan_assignment("gpu-1", 100).empty


@pytest.mark.parametrize("batch_size", [0, -1, -100])
def test_batch_size_zero_or_less_gives_an_empty_plan(batch_size: int) -> None:
    state = RunState(3)
    ready(state, A)
    plan = state.plan_assignment("gpu-1", batch_size)
    assert plan.empty
    assert plan.files == {}
    assert plan.supersede == ()


def test_empty_queue_gives_an_empty_plan() -> None:
    assert RunState(3).plan_assignment("gpu-1", 5).empty


def test_commit_assignment_hands_the_files_to_a_live_job() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    plan = state.plan_assignment("gpu-1", 2)
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
    plan = state.plan_assignment("gpu-1", 3)
    if change == "done_by_output":
        state.mark_done_by_output(C, now=1)
    elif change == "gone":
        state.file_gone(C, now=1)
    else:
        state.commit_assignment(state.plan_assignment("gpu-2", 3), "7", now=1, lease_s=LEASE_S)
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
    plan = state.plan_assignment("gpu-2", 2)
    state.file_gone(B, now=101)
    with pytest.raises(ValueError, match="stale"):
        state.commit_assignment(plan, "2", now=102, lease_s=LEASE_S)
    assert state.jobs["1"].superseded is False
    assert state.files[A].expired_job == "1"


def test_duplicate_job_id_raises_and_changes_nothing() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    plan = state.plan_assignment("gpu-2", 1)
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


@pytest.mark.parametrize("outcome", list(Outcome))
def test_keepalive_after_completion_is_late(outcome: Outcome) -> None:
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


def test_output_seen_counts_progress_of_live_jobs_only() -> None:
    state = RunState(3)
    ready(state, A, B)
    live = assign(state, "1", 1)
    ended = assign(state, "2", 1)
    state.expire("2", now=100)
    state.output_seen("1")
    state.output_seen("2")
    state.output_seen("404")
    assert (live.outputs_seen, ended.outputs_seen) == (1, 0)


# ----------------------------------------------------------------- completion


@pytest.mark.parametrize(
    ("job_state", "outcome"),
    [
        ("DONE", Outcome.DONE),
        ("done", Outcome.DONE),
        ("Done", Outcome.DONE),
        ("FAILED", Outcome.FAILED),
        ("failed", Outcome.FAILED),
        ("", Outcome.UNKNOWN),
        ("ERROR", Outcome.UNKNOWN),
        ("DONE ", Outcome.UNKNOWN),
        ("FAIL", Outcome.UNKNOWN),
    ],
)
def test_outcome_parse(job_state: str, outcome: Outcome) -> None:
    assert Outcome.parse(job_state) is outcome


@pytest.mark.parametrize("outcome", list(Outcome))
def test_plan_completion_changes_nothing(outcome: Outcome) -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    before = snapshot(state)
    state.plan_completion("1", outcome)
    assert snapshot(state) == before


def test_plan_completion_for_an_unknown_job_raises_unknown_job() -> None:
    with pytest.raises(UnknownJob):
        RunState(3).plan_completion("404", Outcome.DONE)


def test_done_on_a_live_job_merges_and_marks_its_files_done() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    plan = complete(state, "1", Outcome.DONE, now=30)
    assert plan.action is CompletionAction.MERGE
    assert job.state is JobState.DONE
    assert job.finished_at == 30
    assert states(state) == {A: FileState.DONE, B: FileState.DONE, C: FileState.READY}
    assert all(state.files[name].job_id is None for name in (A, B))
    assert list(state.live_jobs()) == []
    engine = state.engines["gpu-1"]
    assert (engine.live_jobs, engine.jobs_done, engine.files_done) == (set(), 1, 2)


def test_failed_below_max_attempts_requeues_to_the_front_in_order() -> None:
    state = RunState(3)
    ready(state, A, B, C, D)
    job = assign(state, "1", 2)
    plan = complete(state, "1", Outcome.FAILED, now=30)
    assert plan.action is CompletionAction.FAIL
    assert (plan.requeue, plan.quarantine) == ((A, B), ())
    assert job.state is JobState.FAILED
    assert list(state.ready_names()) == [A, B, C, D]
    assert state.files[A].failures == 1
    assert state.files[A].job_id is None
    assert state.engines["gpu-1"].jobs_failed == 1
    assert state.plan_assignment("gpu-1", 3).files == {A: 2, B: 2, C: 1}


def test_failed_at_max_attempts_quarantines() -> None:
    state = RunState(max_attempts=2)
    ready(state, A, B)
    assign(state, "1", 1)
    assert complete(state, "1", Outcome.FAILED).requeue == (A,)
    assign(state, "2", 1)  # A again, attempt 2
    plan = complete(state, "2", Outcome.FAILED)
    assert (plan.requeue, plan.quarantine) == ((), (A,))
    assert state.files[A].state is FileState.QUARANTINED
    assert state.files[A].failures == 2
    assert list(state.ready_names()) == [B]


def test_failed_batch_splits_into_requeue_and_quarantine_by_attempt() -> None:
    state = RunState(max_attempts=2)
    state.file_seen(A, complete=True, now=0, failures=1)
    ready(state, B)
    assign(state, "1", 2)
    plan = complete(state, "1", Outcome.FAILED)
    assert (plan.requeue, plan.quarantine) == ((B,), (A,))
    assert states(state) == {A: FileState.QUARANTINED, B: FileState.READY}


def test_unknown_report_sets_the_job_aside_and_quarantines_its_files() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    plan = complete(state, "1", Outcome.parse("EXPLODED"))
    assert plan.action is CompletionAction.SET_ASIDE
    assert job.state is JobState.UNKNOWN
    assert states(state) == {A: FileState.QUARANTINED, B: FileState.QUARANTINED, C: FileState.READY}
    assert state.files[A].failures == 0
    assert list(state.live_jobs()) == []


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (Outcome.DONE, Outcome.DONE),
        (Outcome.FAILED, Outcome.FAILED),
        (Outcome.UNKNOWN, Outcome.UNKNOWN),
        (Outcome.UNKNOWN, Outcome.DONE),
        (Outcome.UNKNOWN, Outcome.FAILED),
    ],
)
def test_repeated_report_is_harmless(first: Outcome, again: Outcome) -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    complete(state, "1", first)
    before = run_snapshot(state)
    plan = state.plan_completion("1", again)
    assert plan.action is CompletionAction.REPEAT
    state.apply_completion(plan, now=2)
    assert run_snapshot(state) == before


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (Outcome.DONE, Outcome.FAILED),
        (Outcome.DONE, Outcome.UNKNOWN),
        (Outcome.FAILED, Outcome.DONE),
        (Outcome.FAILED, Outcome.UNKNOWN),
    ],
)
def test_contradicting_report_after_completion_is_a_conflict(first: Outcome, then: Outcome) -> None:
    state = RunState(3)
    ready(state, A)
    assign(state, "1", 1)
    complete(state, "1", first)
    before = run_snapshot(state)
    plan = state.plan_completion("1", then)
    assert plan.action is CompletionAction.CONFLICT
    assert plan.supersede is False
    assert "already completed" in plan.reason
    state.apply_completion(plan, now=2)
    assert run_snapshot(state) == before


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.UNKNOWN])
def test_late_failed_or_unknown_after_expiry_is_ignored(outcome: Outcome) -> None:
    state = RunState(3)
    ready(state, A, B)
    job = assign(state, "1", 2)
    state.expire("1", now=100)
    before = run_snapshot(state)
    plan = state.plan_completion("1", outcome)
    assert plan.action is CompletionAction.LATE_IGNORED
    state.apply_completion(plan, now=101)
    assert run_snapshot(state) == before
    assert job.state is JobState.EXPIRED
    assert state.files[A].failures == 0


def test_late_done_after_files_were_reassigned_is_a_conflict() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 2)
    state.expire("1", now=100)
    reassign = state.plan_assignment("gpu-2", 1)
    assert reassign.supersede == ("1",)  # the expired job's outputs are set aside first
    state.commit_assignment(reassign, "2", now=101, lease_s=LEASE_S)
    assert state.jobs["1"].superseded is True
    plan = state.plan_completion("1", Outcome.DONE)
    assert plan.action is CompletionAction.CONFLICT
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
    plan = state.plan_completion("1", Outcome.DONE)
    assert plan.action is CompletionAction.CONFLICT
    assert plan.supersede is True
    state.apply_completion(plan, now=102)
    assert state.jobs["1"].superseded is True
    assert state.files[B].expired_job is None
    assert state.files[B].state is FileState.READY
    # Once set aside, the next late DONE has nothing left to supersede.
    again = state.plan_completion("1", Outcome.DONE)
    assert (again.action, again.supersede) == (CompletionAction.CONFLICT, False)


def test_late_done_when_files_were_not_reassigned_merges() -> None:
    state = RunState(3)
    ready(state, A, B, C)
    job = assign(state, "1", 2)
    state.expire("1", now=100)
    assert list(state.ready_names()) == [A, B, C]
    plan = complete(state, "1", Outcome.DONE, now=105)
    assert plan.action is CompletionAction.MERGE
    assert job.state is JobState.DONE
    assert states(state) == {A: FileState.DONE, B: FileState.DONE, C: FileState.READY}
    assert list(state.ready_names()) == [C]
    assert state.files[A].expired_job is None
    engine = state.engines["gpu-1"]
    assert (engine.jobs_expired, engine.jobs_done, engine.files_done) == (1, 1, 2)
    assert state.plan_completion("1", Outcome.DONE).action is CompletionAction.REPEAT


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
    complete(state, "2", Outcome.DONE, now=1)
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
    assert state.plan_assignment("gpu-2", 5).files == {A: 1, B: 1, C: 1, D: 1}


def test_expire_of_an_ended_job_changes_nothing() -> None:
    state = RunState(3)
    ready(state, A, B)
    assign(state, "1", 1)
    assign(state, "2", 1)
    state.expire("1", now=100)
    complete(state, "2", Outcome.DONE, now=5)
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
    plan = complete(state, "1", Outcome.FAILED, now=31)
    assert (plan.requeue, plan.quarantine) == ((B,), (A,))
    assert states(state) == {A: FileState.QUARANTINED, B: FileState.READY}


def test_restore_expired_job_lets_a_late_done_merge() -> None:
    state = RunState(3)
    ready(state, A, B)  # the input scan ran first
    state.restore_job(restored_job("1", {A: 1, B: 1}, JobState.EXPIRED))
    assert state.files[A].expired_job == "1"
    assert list(state.live_jobs()) == []
    assert complete(state, "1", Outcome.DONE).action is CompletionAction.MERGE
    assert states(state) == {A: FileState.DONE, B: FileState.DONE}


def test_restore_superseded_expired_job_rejects_a_late_done() -> None:
    state = RunState(3)
    ready(state, A)
    state.restore_job(restored_job("1", {A: 1}, JobState.EXPIRED, superseded=True))
    assert state.files[A].expired_job is None
    assert state.plan_completion("1", Outcome.DONE).action is CompletionAction.CONFLICT


@pytest.mark.parametrize("job_state", [JobState.DONE, JobState.FAILED, JobState.UNKNOWN])
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
