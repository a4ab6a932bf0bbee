"""A run judged in reads, bases and quality: the counts kept per run and per barcode.

Each basecalled read adds its length and its mean quality: dorado's `qs` tag, the mean
of the read's error probabilities (skipping its first bases) written as a Phred score,
which is not the mean of the quality string (FIELD: dorado writes `qs:i` before 0.7,
`qs:f` since). A read is in `pass` when its `qs` reaches the run's `min_qscore`.

Everything is kept exact: reads and bases as integers, lengths as a count per exact
length (so N50 is exact, in bases), mean Q as a count per whole Q. Stats of jobs merge
by adding (`merge`), so a job's stats count once, when its outputs merge. Pure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def n50(lengths: Counter[int]) -> int:
    """The length L such that the reads of length L or more hold at least half of all
    bases (0 with no reads). Exact, from a count per length."""
    total = sum(length * count for length, count in lengths.items())
    if total == 0:
        return 0
    running = 0
    for length in sorted(lengths, reverse=True):
        running += length * lengths[length]
        if 2 * running >= total:
            return length
    return 0  # unreachable: the loop reaches the total


@dataclass
class ReadStats:
    """Counts of basecalled reads: all, and those that passed `min_qscore`."""

    reads: int = 0
    bases: int = 0
    pass_reads: int = 0
    pass_bases: int = 0
    lengths: Counter[int] = field(default_factory=Counter)
    mean_q: Counter[int] = field(default_factory=Counter)  # whole Q -> reads

    def add(self, length: int, qs: float, min_qscore: float) -> bool:
        """One read; returns whether it passed."""
        if length < 0:
            msg = f"a read of length {length}"
            raise ValueError(msg)
        self.reads += 1
        self.bases += length
        self.lengths[length] += 1
        self.mean_q[int(qs)] += 1
        passed = qs >= min_qscore
        if passed:
            self.pass_reads += 1
            self.pass_bases += length
        return passed

    def merge(self, other: ReadStats) -> None:
        self.reads += other.reads
        self.bases += other.bases
        self.pass_reads += other.pass_reads
        self.pass_bases += other.pass_bases
        self.lengths.update(other.lengths)
        self.mean_q.update(other.mean_q)

    @property
    def n50(self) -> int:
        return n50(self.lengths)

    def view(self) -> dict[str, Any]:
        """What /status shows: exact integers (rounding is for people)."""
        return {
            "reads": self.reads,
            "bases": self.bases,
            "pass_reads": self.pass_reads,
            "pass_bases": self.pass_bases,
            "n50": self.n50,
            "mean_q": {str(q): n for q, n in sorted(self.mean_q.items())},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in ("reads", "bases", "pass_reads", "pass_bases")},
            "lengths": {str(k): v for k, v in self.lengths.items()},
            "mean_q": {str(k): v for k, v in self.mean_q.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReadStats:
        """Stats written by `to_json`; ValueError for anything else."""
        try:
            stats = cls(
                reads=int(data["reads"]),
                bases=int(data["bases"]),
                pass_reads=int(data["pass_reads"]),
                pass_bases=int(data["pass_bases"]),
                lengths=Counter({int(k): int(v) for k, v in data["lengths"].items()}),
                mean_q=Counter({int(k): int(v) for k, v in data["mean_q"].items()}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            msg = f"not read stats: {exc}"
            raise ValueError(msg) from None
        if sum(stats.lengths.values()) != stats.reads:
            msg = "not read stats: the lengths do not count the reads"
            raise ValueError(msg)
        return stats
