"""Which run's files the next batch takes, when one service serves many runs.

Start-time fair queuing (Goyal, Vin and Cheng, 1996) over runs, counted in files:
each run has a weight (1 unless a person prioritised it) and a virtual time, the files
it was handed divided by its weight. The next batch goes to the run with waiting files
whose virtual time is lowest; a tie goes to the heavier run, then to the run whose
oldest waiting file is oldest. A run that had nothing waiting re-enters at the virtual
time of the run served last, never below: an idle run banks no credit, so a run that
wakes up cannot starve the others, and the others cannot starve it.

The bound this gives (tested as a property in `tests/core/test_sharing.py`): over any
stretch in which two runs both had files waiting, the files handed to each, divided by
its weight, differ by at most one largest batch divided by each weight,
`|S_a/w_a - S_b/w_b| <= B/w_a + B/w_b`. So no run waits behind more than its share,
and a prioritised run (weight 10, say) takes ten files for each one of a normal run's
while both have work. Within a run, files go oldest first (the run's own queue).

Pure: the caller says which runs have files waiting and what it handed out.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_WEIGHT = 1.0
MAX_WEIGHT = 1000.0


@dataclass(frozen=True)
class Backlog:
    """What a run has waiting: how many files, and when the oldest of them was seen."""

    files: int
    oldest: float


@dataclass
class _Share:
    weight: float = DEFAULT_WEIGHT
    virtual: float = 0.0
    waiting: bool = False


def check_weight(weight: float) -> float:
    """A weight a person may set: more than 0, at most MAX_WEIGHT."""
    if not 0 < weight <= MAX_WEIGHT:
        msg = f"a run's weight must be more than 0 and at most {MAX_WEIGHT:g}, not {weight:g}"
        raise ValueError(msg)
    return weight


class FairShare(Generic[K]):
    """The runs' shares of the engines' batches. One per service; runs come and go."""

    def __init__(self) -> None:
        self._shares: dict[K, _Share] = {}
        self._floor = 0.0  # the virtual time of the run served last

    def weight(self, run: K) -> float:
        share = self._shares.get(run)
        return DEFAULT_WEIGHT if share is None else share.weight

    def set_weight(self, run: K, weight: float) -> None:
        """From the next choice on, `run` takes `weight` files for each of a weight-1 run's."""
        self._shares.setdefault(run, _Share()).weight = check_weight(weight)

    def forget(self, run: K) -> None:
        """A run that ended: its share goes (a run that comes back starts afresh)."""
        self._shares.pop(run, None)

    def order(self, waiting: Mapping[K, Backlog]) -> list[K]:
        """The runs with files waiting, the one whose turn it is first (then the next in
        line, for when the first cannot hand out a batch after all)."""
        for run, share in self._shares.items():
            if share.waiting and run not in waiting:
                share.waiting = False
        for run, backlog in waiting.items():
            if backlog.files <= 0:
                continue
            share = self._shares.setdefault(run, _Share())
            if not share.waiting:  # (re)entering: no credit from the time it was idle
                share.virtual = max(share.virtual, self._floor)
                share.waiting = True
        shares = self._shares
        candidates = [run for run, backlog in waiting.items() if backlog.files > 0]
        return sorted(
            candidates,
            key=lambda run: (shares[run].virtual, -shares[run].weight, waiting[run].oldest),
        )

    def served(self, run: K, files: int) -> None:
        """`files` of `run`'s files were handed out in one batch."""
        share = self._shares.setdefault(run, _Share())
        self._floor = max(self._floor, share.virtual)
        share.virtual += files / share.weight
