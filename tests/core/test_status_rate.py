"""`reactor.core.rate.Throughput`: the recent rate follows the present, the since-start figure
stays, and memory is bounded whatever the run's length. Time is given, never read."""

from __future__ import annotations

import pytest

from reactor.core.rate import BUCKETS, MIN_SPAN_S, Throughput

START = 1000.0


def test_nothing_done_is_zero_both_ways() -> None:
    throughput = Throughput(START, window_s=300)
    assert throughput.recent_per_s(START + 500) == 0.0
    assert throughput.since_start_per_s(START + 500) == 0.0


def test_recent_rate_counts_only_the_window() -> None:
    """After a busy first hour and a quiet second one, the recent rate is what the last
    5 minutes did, while the since-start figure still averages the whole run."""
    throughput = Throughput(START, window_s=300)
    for minute in range(60):  # 60 files a minute for an hour
        throughput.record(START + 60 * minute + 30, 60)
    busy = START + 3600
    assert throughput.recent_per_s(busy) == pytest.approx(1.0, rel=0.05)
    quiet = busy + 3600
    assert throughput.recent_per_s(quiet) == 0.0
    assert throughput.since_start_per_s(quiet) == pytest.approx(3600 / 7200)
    assert throughput.files_done == 3600


def test_rate_soon_after_start_is_over_the_time_since_start() -> None:
    """Two minutes into the run, 120 files done is 1 file/s, not 120 over a 5-minute window."""
    throughput = Throughput(START, window_s=300)
    for second in range(0, 120, 10):
        throughput.record(START + second, 10)
    assert throughput.recent_per_s(START + 120) == pytest.approx(1.0)
    assert throughput.since_start_per_s(START + 120) == pytest.approx(1.0)


def test_a_job_done_right_after_start_is_not_a_burst() -> None:
    """10 files done 0.5 s after a restart count over MIN_SPAN_S, not over 0.5 s."""
    throughput = Throughput(START, window_s=300)
    throughput.record(START + 0.5, 10)
    assert throughput.recent_per_s(START + 0.5) == pytest.approx(10 / MIN_SPAN_S)
    assert throughput.since_start_per_s(START + 0.5) == pytest.approx(10 / MIN_SPAN_S)


@pytest.mark.parametrize(
    ("done_at", "asked_at", "counted"),
    [
        (START + 600, START + 600, True),  # just now
        (START + 600, START + 890, True),  # well inside the window
        (START + 600, START + 899, True),  # at the edge: its 5 s bucket still overlaps
        (START + 600, START + 906, False),  # its bucket lies wholly before the window
        (START + 600, START + 5000, False),
    ],
)
def test_window_edge(done_at: float, asked_at: float, counted: bool) -> None:
    throughput = Throughput(START, window_s=300)
    throughput.record(done_at, 30)
    assert (throughput.recent_per_s(asked_at) > 0) is counted


def test_memory_is_bounded_by_the_bucket_count() -> None:
    """A three-day run with a job done every second keeps at most BUCKETS + 1 buckets."""
    throughput = Throughput(START, window_s=300)
    for second in range(0, 3 * 24 * 3600, 1):
        throughput.record(START + second, 1)
    assert len(throughput._buckets) <= BUCKETS + 1
    assert throughput.recent_per_s(START + 3 * 24 * 3600) == pytest.approx(1.0, rel=0.05)


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s"):
        Throughput(START, window_s=0)
