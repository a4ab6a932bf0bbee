"""The fair share of batches across runs: the bound, priority, idle runs, ties."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.core.sharing import Backlog, FairShare, check_weight


@dataclass
class Step:
    """One batch handed out: each run's waiting files before and after, who got it."""

    before: dict[int, int]
    after: dict[int, int]
    served: dict[int, int] = field(default_factory=dict)


def play(weights: list[float], moves: list[tuple[str, int, int]]) -> tuple[list[Step], int]:
    """Drive a FairShare as a service would: files arrive in runs, engines take batches
    of the run the policy puts first. Returns the steps and the largest batch."""
    runs = range(len(weights))
    share: FairShare[int] = FairShare()
    for run, weight in zip(runs, weights, strict=True):
        share.set_weight(run, weight)
    queues = dict.fromkeys(runs, 0)
    arrived = 0.0
    oldest = dict.fromkeys(runs, 0.0)
    steps: list[Step] = []
    largest = 0
    for kind, run, count in moves:
        arrived += 1
        if kind == "files":
            if queues[run % len(weights)] == 0:
                oldest[run % len(weights)] = arrived
            queues[run % len(weights)] += count
            continue
        waiting = {r: Backlog(n, oldest[r]) for r, n in queues.items() if n > 0}
        order = share.order(waiting)
        assert sorted(order) == sorted(waiting), "every run with files waiting is in line"
        if not order:
            continue
        first = order[0]
        taken = min(count, queues[first])
        largest = max(largest, count)
        before = dict(queues)
        queues[first] -= taken
        share.served(first, taken)
        steps.append(Step(before, dict(queues), {first: taken}))
    return steps, largest


weights_st = st.lists(st.sampled_from([1.0, 1.0, 2.0, 3.0, 10.0]), min_size=2, max_size=5)
moves_st = st.lists(
    st.one_of(
        st.tuples(st.just("files"), st.integers(0, 4), st.integers(1, 40)),
        st.tuples(st.just("batch"), st.integers(0, 4), st.integers(1, 8)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(weights_st, moves_st)
def test_no_run_waits_behind_more_than_its_fair_share(
    weights: list[float], moves: list[tuple[str, int, int]]
) -> None:
    steps, largest = play(weights, moves)
    runs = range(len(weights))
    for a in runs:
        for b in runs:
            if a >= b:
                continue
            bound = largest / weights[a] + largest / weights[b]
            # every stretch of steps in which both runs had files waiting throughout
            for i in range(len(steps)):
                got = {a: 0, b: 0}
                for j in range(i, len(steps)):
                    step = steps[j]
                    if not (step.before[a] and step.before[b]):
                        break
                    for run in (a, b):
                        got[run] += step.served.get(run, 0)
                    gap = abs(got[a] / weights[a] - got[b] / weights[b])
                    assert gap <= bound + 1e-9, (a, b, i, j, got)
                    if not (step.after[a] and step.after[b]):
                        break  # one ran dry: it re-enters afresh


@settings(max_examples=200, deadline=None)
@given(weights_st, moves_st)
def test_a_batch_always_goes_to_a_run_with_files_waiting(
    weights: list[float], moves: list[tuple[str, int, int]]
) -> None:
    steps, _ = play(weights, moves)
    for step in steps:
        ((run, taken),) = step.served.items()
        assert step.before[run] > 0
        assert taken == step.before[run] - step.after[run] > 0


def test_a_prioritised_run_takes_its_weight_in_files_while_both_have_work() -> None:
    share: FairShare[str] = FairShare()
    share.set_weight("urgent", 10)
    waiting = {"urgent": Backlog(10_000, 5.0), "normal": Backlog(10_000, 1.0)}
    got = {"urgent": 0, "normal": 0}
    for _ in range(1100):
        run = share.order(waiting)[0]
        got[run] += 10
        share.served(run, 10)
    assert got["urgent"] == 10 * got["normal"]
    # and the first batch went to it although the other's files are older
    fresh: FairShare[str] = FairShare()
    fresh.set_weight("urgent", 10)
    assert fresh.order(waiting)[0] == "urgent"


def test_an_idle_run_banks_no_credit() -> None:
    share: FairShare[str] = FairShare()
    busy = {"a": Backlog(1000, 0.0)}
    for _ in range(100):
        share.served(share.order(busy)[0], 10)
    # b wakes up after a served 1,000 files alone: b is not owed 1,000 files
    both = {"a": Backlog(1000, 0.0), "b": Backlog(1000, 1.0)}
    got = {"a": 0, "b": 0}
    for _ in range(20):
        run = share.order(both)[0]
        got[run] += 10
        share.served(run, 10)
    assert got == {"a": 100, "b": 100}


def test_ties_go_to_the_oldest_waiting_file() -> None:
    share: FairShare[str] = FairShare()
    assert share.order({"late": Backlog(3, 9.0), "early": Backlog(3, 2.0)}) == ["early", "late"]
    assert share.order({"x": Backlog(0, 0.0)}) == []


def test_a_forgotten_run_starts_afresh_and_weights_are_checked() -> None:
    share: FairShare[str] = FairShare()
    share.set_weight("a", 5)
    share.forget("a")
    assert share.weight("a") == 1.0
    for bad in (0.0, -1.0, 1001.0):
        with pytest.raises(ValueError, match="weight must be more than 0"):
            check_weight(bad)
