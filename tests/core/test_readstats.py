"""Read stats: exact counts, N50 in bases, the pass split at min_qscore, merging."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.core.readstats import (
    TIMELINE_POINTS,
    JobReads,
    ReadStats,
    RunReads,
    Timeline,
    coarsen,
    n50,
)

reads_st = st.lists(
    st.tuples(st.integers(0, 100_000), st.floats(0, 50, allow_nan=False)), max_size=200
)


def brute_n50(lengths: list[int]) -> int:
    """N50 as a person computes it: sort descending, walk until half the bases."""
    total = sum(lengths)
    running = 0
    for length in sorted(lengths, reverse=True):
        running += length
        if total and 2 * running >= total:
            return length
    return 0


@given(reads_st)
def test_counts_and_n50_match_a_plain_recount(reads: list[tuple[int, float]]) -> None:
    stats = ReadStats()
    passed = [stats.add(length, qs, 10.0) for length, qs in reads]
    assert stats.reads == len(reads)
    assert stats.bases == sum(length for length, _ in reads)
    assert stats.pass_reads == sum(passed) == sum(1 for _, qs in reads if qs >= 10.0)
    assert stats.pass_bases == sum(length for length, qs in reads if qs >= 10.0)
    assert stats.n50 == brute_n50([length for length, _ in reads])
    assert sum(stats.mean_q.values()) == len(reads)


@given(reads_st, reads_st)
def test_merging_two_jobs_is_counting_them_together(
    first: list[tuple[int, float]], second: list[tuple[int, float]]
) -> None:
    a, b, both = ReadStats(), ReadStats(), ReadStats()
    for length, qs in first:
        a.add(length, qs, 9.0)
        both.add(length, qs, 9.0)
    for length, qs in second:
        b.add(length, qs, 9.0)
        both.add(length, qs, 9.0)
    a.merge(b)
    assert a.to_json() == both.to_json()
    assert ReadStats.from_json(a.to_json()).to_json() == both.to_json()


def test_n50_by_hand_and_the_view_is_exact() -> None:
    assert n50(Counter()) == 0
    # 10 + 8 + 2 = 20 bases; 10 alone is half: N50 = 10
    assert n50(Counter({10: 1, 8: 1, 2: 1})) == 10
    # 5+5+5+5 = 20; 4 x 3 = 12; half of 32 is 16: 5s hold 20 >= 16
    assert n50(Counter({5: 4, 3: 4})) == 5
    stats = ReadStats()
    stats.add(1000, 12.7, 10)
    stats.add(500, 7.2, 10)
    assert stats.view() == {
        "reads": 2, "bases": 1500, "pass_reads": 1, "pass_bases": 1000, "n50": 1000,
        "mean_q": {"7": 1, "12": 1},
    }  # fmt: skip


def test_what_is_not_read_stats_is_refused() -> None:
    with pytest.raises(ValueError, match="not read stats"):
        ReadStats.from_json({"reads": 1})
    bad = ReadStats()
    bad.add(10, 10, 10)
    data = bad.to_json()
    data["reads"] = 5
    with pytest.raises(ValueError, match="do not count the reads"):
        ReadStats.from_json(data)
    with pytest.raises(ValueError, match="a read of length -1"):
        ReadStats().add(-1, 10, 10)


jobs_st = st.lists(
    st.tuples(
        st.sampled_from(["", "barcode01", "patient_a"]),  # alias
        reads_st,
        st.sampled_from(["gpu1", "gpu2"]),
    ),
    max_size=8,
)


@given(jobs_st)
def test_a_runs_reads_are_its_jobs_summed_whatever_the_order_and_the_cache(
    jobs: list[tuple[str, list[tuple[int, float]], str]],
) -> None:
    """RunReads adds merged jobs; its view (N50 cached between adds) equals a recount
    of every read, and adding the same jobs in reverse gives the same figures."""
    built = []
    for alias, reads, _engine in jobs:
        job = JobReads(pod5_reads=len(reads), records=len(reads), counted=len(reads))
        for length, qs in reads:
            job.stats(alias).add(length, qs, 10.0)
        built.append(job)
    forward, backward = RunReads(), RunReads()
    for job, (_, _, engine) in zip(built, jobs, strict=True):
        forward.add(job, engine_id=engine, busy_s=2.0, merged_at=1_800_000_000.0)
        forward.view(10.0)  # a view between adds must not freeze the figures
    for job, (_, _, engine) in reversed(list(zip(built, jobs, strict=True))):
        backward.add(JobReads.from_json(job.to_json()), engine_id=engine, busy_s=2.0,
                     merged_at=1_800_000_000.0)  # fmt: skip
    lengths = [length for _, reads, _ in jobs for length, _ in reads]
    passed = [length for _, reads, _ in jobs for length, qs in reads if qs >= 10.0]
    for run in (forward, backward):
        view = run.view(10.0)
        assert (view["reads"], view["bases"]) == (len(lengths), sum(lengths))
        assert (view["pass_reads"], view["pass_bases"]) == (len(passed), sum(passed))
        assert view["n50"] == brute_n50(lengths)
        assert sum(count for _, count in view["length_histogram"]) == len(lengths)
        assert view["accounting"]["records"] == len(lengths)
        assert sum(e["bases"] for e in view["engines"].values()) == sum(lengths)
        assert view["yield"]["by_arrival"] == ([[1_800_000_000 // 600 * 600, sum(lengths)]]
                                               if jobs else [])  # fmt: skip
    assert forward.view(10.0) == backward.view(10.0)


@given(reads_st, st.floats(0, 50, allow_nan=False))
def test_many_reads_at_once_count_as_one_by_one(
    reads: list[tuple[int, float]], min_qscore: float
) -> None:
    one_by_one, at_once = ReadStats(), ReadStats()
    for length, qs in reads:
        one_by_one.add(length, qs, min_qscore)
    at_once.add_many([length for length, _ in reads], [qs for _, qs in reads], min_qscore)
    assert at_once == one_by_one
    with pytest.raises(ValueError, match="lengths for"):
        at_once.add_many([1], [], min_qscore)
    with pytest.raises(ValueError, match="a read of length -1"):
        at_once.add_many([-1], [5.0], min_qscore)


@given(
    st.lists(
        st.tuples(st.integers(1_700_000_000, 1_700_400_000), st.integers(0, 10**6)), max_size=80
    ),
    st.randoms(use_true_random=False),
)
def test_a_timeline_is_exact_bounded_and_the_same_in_any_order(
    arrivals: list[tuple[int, int]], order: random.Random
) -> None:
    """Every base is in the slot of its time, there are at most TIMELINE_POINTS slots,
    and jobs added in another order (as recovery adds them) give the same timeline."""
    timeline = Timeline()
    for at, bases in arrivals:
        timeline.add(at, bases)
    shuffled = Timeline()
    for at, bases in order.sample(arrivals, len(arrivals)):
        shuffled.add(at, bases)
    assert shuffled.view() == timeline.view()
    view = timeline.view()
    assert len(view["bases"]) <= TIMELINE_POINTS
    assert sum(n for _, n in view["bases"]) == sum(n for _, n in arrivals)
    width = view["slot_s"]
    expected: Counter[int] = Counter()
    for at, bases in arrivals:
        expected[at - at % width] += bases
    assert dict(view["bases"]) == dict(expected)


def test_a_timeline_starts_in_five_second_slots_and_widens_as_the_run_grows() -> None:
    timeline = Timeline()
    timeline.add(1_000_000, 10)
    timeline.add(1_000_004, 5)
    timeline.add(1_000_007, 1)
    assert timeline.view() == {"slot_s": 5, "bases": [[1_000_000, 15], [1_000_005, 1]]}
    timeline.add(1_000_000 + 3 * 3600, 7)  # three hours later: 5 s slots would be 2,160
    assert timeline.view()["slot_s"] == 160
    assert sum(n for _, n in timeline.view()["bases"]) == 23


def test_coarsen_keeps_the_sums_in_fewer_slots() -> None:
    series = [[1_000_000 + 5 * i, i] for i in range(100)]
    short = coarsen(series, 5, 24)
    assert len(short) <= 24
    assert sum(n for _, n in short) == sum(range(100))
    assert coarsen([], 5, 24) == []
