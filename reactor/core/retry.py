"""Retry policy: isolating poison files and benching broken engines (pure functions).

A batch that fails is not blamed on all its files: it goes back to the queue split in
two halves, each handed out as a batch of its own (a *cap* on the batch size carried by
its files). Halving again on every failure isolates one corrupt `.pod5` in about
log2(batch) rounds while the rest of its batch is basecalled. Only a file that failed
*alone* counts towards quarantine: after `max_attempts` solo failures and, where more
than one engine is working, on at least two different engines, so one broken GPU node
cannot quarantine a run (a file keeps failing on the same engine only up to
`HARD_LIMIT_FACTOR * max_attempts` solo failures, as a last bound).

An engine that fails `bench_after` batches of fresh files in a row while other engines
are working is benched for `bench_seconds`: it gets empty answers, and the work flows to
the others. Batches holding files that failed before do not count (they are most likely
a poison file being isolated, not a broken engine). A lone engine is never benched
(there is nobody to hand its work to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HARD_LIMIT_FACTOR = 3
# How far past the front of the queue an engine looks for a file it has not already
# failed alone, so a poison file waiting for another engine does not block it.
SKIP_LIMIT = 64


@dataclass(frozen=True, slots=True)
class FailureHistory:
    """What a file's past failures say, as recovery reads it from the job records."""

    failures: int = 0  # FAILED outcomes of any job holding the file
    solo_failures: int = 0  # FAILED outcomes of jobs holding only this file
    failed_on: frozenset[str] = frozenset()  # engines of the solo failures
    batch_cap: int = 0  # largest batch to hand it out in (0: no cap)


def halves(names: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """Split a failed batch in two, each half with its batch cap; one file: cap 1."""
    if len(names) <= 1:
        return [(tuple(names), 1)] if names else []
    middle = (len(names) + 1) // 2
    first, second = tuple(names[:middle]), tuple(names[middle:])
    return [(first, len(first)), (second, len(second))]


def should_quarantine(
    solo_failures: int, failed_on: frozenset[str], max_attempts: int, other_engines: bool
) -> bool:
    """A file that failed alone `solo_failures` times, on `failed_on`, is quarantined when
    it reached `max_attempts` and either failed on two engines, or no other engine is
    working, or it reached the hard limit."""
    if solo_failures < max_attempts:
        return False
    if len(failed_on) >= 2 or not other_engines:
        return True
    return solo_failures >= HARD_LIMIT_FACTOR * max_attempts


def should_bench(failure_streak: int, bench_after: int, other_engines: bool) -> bool:
    """Bench an engine after `bench_after` failed batches in a row (0 turns it off)."""
    return bench_after > 0 and other_engines and failure_streak >= bench_after
