"""Table tests of the pure retry policy: halving failed batches, quarantine and benching."""

from __future__ import annotations

import pytest

from reactor.core.retry import HARD_LIMIT_FACTOR, halves, should_bench, should_quarantine

ONE = frozenset({"gpu-1"})
TWO = frozenset({"gpu-1", "gpu-2"})


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["a"], [(("a",), 1)]),
        (["a", "b"], [(("a",), 1), (("b",), 1)]),
        (["a", "b", "c"], [(("a", "b"), 2), (("c",), 1)]),  # the larger half first
        (["a", "b", "c", "d"], [(("a", "b"), 2), (("c", "d"), 2)]),
        (list("abcdefghij"), [(tuple("abcde"), 5), (tuple("fghij"), 5)]),
        (list("abcdefghi"), [(tuple("abcde"), 5), (tuple("fghi"), 4)]),
    ],
)
def test_halves_split_in_order_with_each_half_capped_at_its_size(
    names: list[str], expected: list[tuple[tuple[str, ...], int]]
) -> None:
    assert halves(names) == expected


@pytest.mark.parametrize("size", range(1, 40))
def test_halves_keep_every_name_once_and_shrink_the_cap(size: int) -> None:
    """Halving again on every failure isolates a file in about log2(size) rounds."""
    names = [str(i) for i in range(size)]
    split = halves(names)
    assert [name for half, _ in split for name in half] == names
    for half, cap in split:
        assert cap == len(half)
        assert cap <= (size + 1) // 2 or size == 1


def test_halves_isolate_a_file_of_a_batch_of_eight_in_three_rounds() -> None:
    batch: tuple[str, ...] = tuple("abcdefgh")
    rounds = 0
    while len(batch) > 1:
        batch = next(half for half, _ in halves(batch) if "f" in half)
        rounds += 1
    assert (batch, rounds) == (("f",), 3)


@pytest.mark.parametrize(
    ("solo_failures", "failed_on", "max_attempts", "other_engines", "expected"),
    [
        # Below max_attempts: never, whatever else.
        (0, frozenset(), 3, False, False),
        (2, TWO, 3, False, False),
        (2, TWO, 3, True, False),
        # At max_attempts, on two engines: yes, other engines or not.
        (3, TWO, 3, True, True),
        (3, TWO, 3, False, True),
        # At max_attempts on one engine: only if no other engine is working.
        (3, ONE, 3, False, True),
        (3, ONE, 3, True, False),
        (4, ONE, 3, True, False),
        # ...or at the hard limit.
        (3 * HARD_LIMIT_FACTOR - 1, ONE, 3, True, False),
        (3 * HARD_LIMIT_FACTOR, ONE, 3, True, True),
        (3 * HARD_LIMIT_FACTOR + 1, ONE, 3, True, True),
        # max_attempts=1: the first solo failure with nobody else, or on a second engine.
        (1, ONE, 1, False, True),
        (1, ONE, 1, True, False),
        (2, TWO, 1, True, True),
        (HARD_LIMIT_FACTOR, ONE, 1, True, True),
    ],
)
def test_should_quarantine(
    solo_failures: int,
    failed_on: frozenset[str],
    max_attempts: int,
    other_engines: bool,
    expected: bool,
) -> None:
    assert should_quarantine(solo_failures, failed_on, max_attempts, other_engines) is expected


def test_hard_limit_is_three_times_max_attempts() -> None:
    assert HARD_LIMIT_FACTOR == 3


@pytest.mark.parametrize(
    ("failure_streak", "bench_after", "other_engines", "expected"),
    [
        (0, 3, True, False),
        (2, 3, True, False),
        (3, 3, True, True),
        (4, 3, True, True),
        (3, 3, False, False),  # a lone engine is never benched
        (100, 3, False, False),
        (0, 0, True, False),  # bench_after=0 turns benching off
        (100, 0, True, False),
        (1, 1, True, True),
        (1, 1, False, False),
    ],
)
def test_should_bench(
    failure_streak: int, bench_after: int, other_engines: bool, expected: bool
) -> None:
    assert should_bench(failure_streak, bench_after, other_engines) is expected
