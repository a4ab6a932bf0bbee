"""The fleet's sizing and plans (`reactor.core.fleet`): cases worked by hand, then
properties over any workload, jobs and time (hypothesis), then a fleet simulated
through random ticks that must never hold more than it may."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.core.fleet import (
    EngineJob,
    JobPhase,
    Sizing,
    Workload,
    backoff_s,
    capacity,
    engines_seen,
    engines_wanted,
    plan,
)
from reactor.core.model import EngineRecord

SIZING = Sizing(min_engines=0, max_engines=8, catch_up_s=600.0, idle_s=300.0)


@pytest.mark.parametrize(
    ("work", "wanted", "why"),
    [
        (Workload(0, 10, 0), 0, "nothing waits: min_engines (0)"),
        (Workload(0, 10, 5), 0, "nothing waits: engines working exit by themselves"),
        (Workload(1, 10, 0), 1, "one file, no speed known: one engine"),
        (Workload(35, 10, 0), 4, "no speed known: one engine per waiting batch (4)"),
        (Workload(500, 10, 0), 8, "no speed known, 50 batches: max_engines"),
        # 0.01 files/s each: 120 files in 600 s need 0.2 files/s, 20 engines; capped at 8
        (Workload(120, 10, 0, files_per_engine_s=0.01), 8, "slow engines: max"),
        # 0.1 files/s each: 120/600 = 0.2 files/s, 2 engines
        (Workload(120, 10, 0, files_per_engine_s=0.1), 2, "measured speed: 2"),
        # plus 0.25 files/s arriving: 0.45 files/s, 5 engines
        (Workload(120, 10, 0, 0, 0.1, 0.25), 5, "arrivals too: 5"),
        # 5 needed, 2 engines by hand (the sequencer's GPU) already there: 3 more
        (Workload(120, 10, 0, 2, 0.1, 0.25), 3, "others count"),
        # 3 files wait, fast engines: 1 engine, whatever the arithmetic says
        (Workload(3, 10, 0, 0, 100.0), 1, "anything waiting: at least one"),
        # 30 files need 3 batches; 2 working: at most 5, though speed wants 20
        (Workload(30, 10, 2, 0, 0.0025), 5, "no more than the batches can occupy"),
    ],
)
def test_engines_wanted_worked_by_hand(work: Workload, wanted: int, why: str) -> None:
    assert engines_wanted(work, SIZING) == wanted, why


def test_min_engines_holds_with_nothing_to_do() -> None:
    sizing = Sizing(min_engines=2, max_engines=8, catch_up_s=600.0, idle_s=300.0)
    assert engines_wanted(Workload(0, 10, 0), sizing) == 2


def test_sizing_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="min_engines"):
        Sizing(3, 2, 600.0, 0.0)
    with pytest.raises(ValueError, match="catch_up_s"):
        Sizing(0, 2, 0.0, 0.0)


def test_backoff_doubles_from_ten_seconds_to_ten_minutes() -> None:
    assert [backoff_s(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 320, 600]
    assert backoff_s(10_000) == 600


def test_engines_seen_merges_one_engine_across_runs() -> None:
    a = {"e1": EngineRecord("e1", last_seen=90.0, live_jobs={"j1"}, files_done=4, busy_s=8.0)}
    b = {
        "e1": EngineRecord("e1", last_seen=95.0, files_done=6, busy_s=12.0),
        "e2": EngineRecord("e2", last_seen=50.0),
    }
    seen = engines_seen([a, b], now=100.0)
    assert seen["e1"].last_seen_s == 5.0 and seen["e1"].live_jobs == 1
    assert seen["e1"].files_done == 10 and seen["e1"].busy_s == 20.0
    assert seen["e2"].last_seen_s == 50.0


# ------------------------------------------------------------------ properties

sizings = st.builds(
    lambda low, extra, catch, idle: Sizing(low, low + extra, catch, idle),
    st.integers(0, 4),
    st.integers(0, 12),
    st.floats(1.0, 7200.0),
    st.floats(0.0, 3600.0),
)
speeds = st.none() | st.floats(1e-4, 100.0)
workloads = st.builds(
    Workload,
    waiting_files=st.integers(0, 100_000),
    batch_size=st.integers(1, 500),
    working_engines=st.integers(0, 50),
    other_engines=st.integers(0, 10),
    files_per_engine_s=speeds,
    arrivals_per_s=st.floats(0.0, 50.0),
)


@given(workloads, sizings)
def test_wanted_stays_within_bounds_and_the_work(work: Workload, sizing: Sizing) -> None:
    wanted = engines_wanted(work, sizing)
    assert sizing.min_engines <= wanted <= sizing.max_engines
    if work.waiting_files == 0:
        assert wanted == sizing.min_engines
    else:
        assert wanted >= min(1, sizing.max_engines)
        batches = math.ceil(work.waiting_files / work.batch_size)
        assert wanted <= max(sizing.min_engines, work.working_engines + batches)


@given(workloads, sizings, st.integers(1, 10_000))
def test_more_waiting_never_wants_fewer(work: Workload, sizing: Sizing, more: int) -> None:
    bigger = Workload(
        work.waiting_files + more,
        work.batch_size,
        work.working_engines,
        work.other_engines,
        work.files_per_engine_s,
        work.arrivals_per_s,
    )
    assert engines_wanted(bigger, sizing) >= engines_wanted(work, sizing)


@given(workloads, sizings, st.floats(1.0, 100.0))
def test_faster_engines_never_want_more(work: Workload, sizing: Sizing, factor: float) -> None:
    if work.files_per_engine_s is None:
        return
    faster = Workload(
        work.waiting_files,
        work.batch_size,
        work.working_engines,
        work.other_engines,
        work.files_per_engine_s * factor,
        work.arrivals_per_s,
    )
    assert engines_wanted(faster, sizing) <= engines_wanted(work, sizing)


phases = st.sampled_from(list(JobPhase))
job_lists = st.lists(
    st.builds(EngineJob, st.uuids().map(str), phases, st.floats(0.0, 1000.0)),
    max_size=20,
    unique_by=lambda job: job.job_id,
)


@given(
    job_lists,
    st.integers(0, 20),
    st.floats(1000.0, 5000.0),
    st.floats(0.0, 600.0),
    st.none() | st.floats(0.0, 5000.0),
    st.booleans(),
)
def test_a_plan_submits_to_wanted_and_cancels_only_queued_surplus_after_idle_s(
    jobs: list[EngineJob],
    wanted: int,
    now: float,
    idle_s: float,
    surplus_since: float | None,
    may_submit: bool,
) -> None:
    if surplus_since is not None and surplus_since > now:
        surplus_since = now
    decided = plan(
        jobs, wanted, now=now, idle_s=idle_s, surplus_since=surplus_since, may_submit=may_submit
    )
    have = sum(1 for job in jobs if job.phase in (JobPhase.PENDING, JobPhase.RUNNING))
    by_id = {job.job_id: job for job in jobs}
    assert not (decided.submit and decided.cancel)
    if may_submit:
        assert decided.submit == max(wanted - have, 0)
    else:
        assert decided.submit == 0
    assert all(by_id[job_id].phase is JobPhase.PENDING for job_id in decided.cancel)
    assert len(set(decided.cancel)) == len(decided.cancel)
    assert have - len(decided.cancel) >= wanted or not decided.cancel
    if decided.cancel:
        began = now if surplus_since is None else surplus_since
        assert now - began >= idle_s
        assert decided.surplus_since is None
        queued = sorted(
            (j for j in jobs if j.phase is JobPhase.PENDING),
            key=lambda j: (j.known_since, j.job_id),
        )
        # the newest queued jobs go: none kept is newer than one cancelled
        kept = [j for j in queued if j.job_id not in decided.cancel]
        gone = [by_id[job_id] for job_id in decided.cancel]
        if kept and gone:
            newest_kept = max((j.known_since, j.job_id) for j in kept)
            oldest_gone = min((j.known_since, j.job_id) for j in gone)
            assert newest_kept < oldest_gone


@settings(max_examples=200)
@given(
    sizings,
    st.lists(
        st.tuples(
            st.integers(0, 400),  # files waiting at this tick
            st.floats(0.0, 120.0),  # seconds since the last tick
            st.lists(st.integers(0, 30), max_size=3),  # jobs the scheduler starts or ends
            st.booleans(),  # submissions fail at this tick
        ),
        max_size=40,
    ),
)
def test_a_simulated_fleet_never_holds_more_than_max_engines(
    sizing: Sizing, ticks: list[tuple[int, float, list[int], bool]]
) -> None:
    """Ticks of a fleet whose scheduler starts queued jobs and ends running ones at
    random: the capacity never passes max_engines, a running job is never cancelled,
    and with work waiting and submissions working, the fleet is never below one."""
    jobs: dict[str, EngineJob] = {}
    now, since, serial = 0.0, None, 0
    for waiting, step, changes, failing in ticks:
        now += step
        for pick in changes:  # the scheduler's doing: start or end a job
            if not jobs:
                break
            job = list(jobs.values())[pick % len(jobs)]
            if job.phase is JobPhase.PENDING:
                jobs[job.job_id] = EngineJob(job.job_id, JobPhase.RUNNING, job.known_since)
            else:
                del jobs[job.job_id]
        work = Workload(waiting, 10, sum(j.phase is JobPhase.RUNNING for j in jobs.values()))
        wanted = engines_wanted(work, sizing)
        decided = plan(
            list(jobs.values()),
            wanted,
            now=now,
            idle_s=sizing.idle_s,
            surplus_since=since,
            may_submit=not failing,
        )
        since = decided.surplus_since
        for job_id in decided.cancel:
            assert jobs[job_id].phase is JobPhase.PENDING
            del jobs[job_id]
        if not failing:
            for _ in range(decided.submit):
                serial += 1
                jobs[str(serial)] = EngineJob(str(serial), JobPhase.PENDING, now)
        assert capacity(jobs.values()) <= sizing.max_engines
        if waiting and not failing and sizing.max_engines:
            assert capacity(jobs.values()) >= 1
