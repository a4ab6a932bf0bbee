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

import operator
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Any


def human_bases(count: float) -> str:
    """Bases for people: 812 b, 14.3 kb, 1.2 Mb, 3.4 Gb (the API keeps exact integers)."""
    for unit, size in (("Gb", 1e9), ("Mb", 1e6), ("kb", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} b"


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
        lengths, mean_q, q = self.lengths, self.mean_q, int(qs)
        lengths[length] = lengths.get(length, 0) + 1  # dict.get: no Counter.__missing__
        mean_q[q] = mean_q.get(q, 0) + 1
        passed = qs >= min_qscore
        if passed:
            self.pass_reads += 1
            self.pass_bases += length
        return passed

    def add_many(self, lengths: list[int], qs: list[float], min_qscore: float) -> None:
        """Many reads at once (`lengths[i]`, `qs[i]` one read's): the counting done by
        the standard library's C loops rather than once per read in Python."""
        if len(lengths) != len(qs):
            msg = f"{len(lengths)} lengths for {len(qs)} qualities"
            raise ValueError(msg)
        if lengths and min(lengths) < 0:
            msg = f"a read of length {min(lengths)}"
            raise ValueError(msg)
        self.reads += len(lengths)
        self.bases += sum(lengths)
        self.lengths.update(lengths)
        self.mean_q.update(map(int, qs))
        passed = list(compress(lengths, map(operator.le, repeat(min_qscore), qs)))  # q >= min
        self.pass_reads += len(passed)
        self.pass_bases += sum(passed)

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

    def view(self, n50: int | None = None) -> dict[str, Any]:
        """What /status shows: exact integers (rounding is for people); `n50` when the
        caller has it already."""
        return {
            "reads": self.reads,
            "bases": self.bases,
            "pass_reads": self.pass_reads,
            "pass_bases": self.pass_bases,
            "n50": self.n50 if n50 is None else n50,
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


YIELD_SLOT_S = 600  # yield over time is kept in ten-minute slots (epoch seconds // 600)


@dataclass
class JobReads:
    """What one job's outputs hold, read by read, and how they answer for its `.pod5` reads.

    `barcodes` maps a barcode's alias (or "" in a run without barcodes) to its counts.
    The accounting is the read-level exactly-once proof of one job: every `.pod5` read of
    the job's files is in its outputs once (counted by its own id, or by the `pi` parent
    of the subreads dorado split it into) or was dropped by the basecaller; a record
    whose read is in none of the job's files is `unknown`, a read id written twice is a
    `duplicate`. Jobs take disjoint files, so the sums over a run's jobs are the run's
    proof. Pure; merged by adding.
    """

    barcodes: dict[str, ReadStats] = field(default_factory=dict)
    pod5_reads: int = 0  # reads in the job's .pod5 files
    records: int = 0  # records in its outputs (subreads each count)
    counted: int = 0  # distinct .pod5 reads found in its outputs
    subreads: int = 0  # records split from a parent read (`pi`)
    dropped: int = 0  # .pod5 reads with no record: the basecaller dropped them
    unknown: int = 0  # records whose read is in none of the job's files
    duplicates: int = 0  # records whose read id was written before
    by_start: Counter[int] = field(default_factory=Counter)  # slot of the reads' start -> bases

    def stats(self, alias: str) -> ReadStats:
        found = self.barcodes.get(alias)
        if found is None:
            found = self.barcodes[alias] = ReadStats()
        return found

    @property
    def total(self) -> ReadStats:
        total = ReadStats()
        for stats in self.barcodes.values():
            total.merge(stats)
        return total

    def merge(self, other: JobReads) -> None:
        for alias, stats in other.barcodes.items():
            self.stats(alias).merge(stats)
        for name in _ACCOUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_start.update(other.by_start)

    @property
    def exactly_once(self) -> bool:
        """No read written twice, none from elsewhere (dropped reads are the basecaller's)."""
        return self.unknown == 0 and self.duplicates == 0

    def accounting(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _ACCOUNTS}

    def to_json(self) -> dict[str, Any]:
        return {
            "barcodes": {alias: stats.to_json() for alias, stats in self.barcodes.items()},
            **self.accounting(),
            "by_start": {str(slot): bases for slot, bases in self.by_start.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobReads:
        """Reads written by `to_json`; ValueError for anything else."""
        try:
            reads = cls(
                barcodes={
                    str(alias): ReadStats.from_json(stats)
                    for alias, stats in data["barcodes"].items()
                },
                by_start=Counter({int(k): int(v) for k, v in data["by_start"].items()}),
                **{name: int(data[name]) for name in _ACCOUNTS},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            msg = f"not a job's reads: {exc}"
            raise ValueError(msg) from None
        return reads


_ACCOUNTS = ("pod5_reads", "records", "counted", "subreads", "dropped", "unknown", "duplicates")


TIMELINE_POINTS = 120  # slots of a yield timeline, at most
TIMELINE_FIRST_SLOT_S = 5  # its slot's width while the run is young (then doubling)


@dataclass
class Timeline:
    """Bases by the time they arrived, in at most TIMELINE_POINTS slots: a slot is 5 s
    wide while the run is young and doubles as the run grows longer (10 min of a run in
    5 s slots, 3 days in 1.2 h ones), so a chart has detail from the first minutes on.
    The ten-minute series (`YIELD_SLOT_S`) are too coarse for the first hour of a run.

    Exact and independent of the order jobs are added in (recovery adds them in the
    order of their records): slots are aligned to the epoch and each width divides the
    next, so a wider slot is the sum of narrower ones; and the width is the narrowest
    whose slots span the first to the last time, which depends only on those two."""

    slot_s: int = TIMELINE_FIRST_SLOT_S
    slots: Counter[int] = field(default_factory=Counter)  # epoch // slot_s -> bases
    first: int | None = None  # epoch seconds of the earliest and latest arrival
    last: int | None = None

    def add(self, at: float, bases: int) -> None:
        moment = int(at)
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)
        width = self.slot_s
        while self.last // width - self.first // width >= TIMELINE_POINTS:
            width *= 2
        if width != self.slot_s:
            wider: Counter[int] = Counter()
            for slot, count in self.slots.items():
                wider[slot * self.slot_s // width] += count
            self.slots, self.slot_s = wider, width
        self.slots[moment // width] += bases

    def view(self) -> dict[str, Any]:
        """`{"slot_s": width, "bases": [[slot start in epoch seconds, bases], …]}`, in time
        order, only slots with bases."""
        return {
            "slot_s": self.slot_s,
            "bases": [[slot * self.slot_s, n] for slot, n in sorted(self.slots.items())],
        }


def coarsen(series: list[list[int]], slot_s: int, points: int) -> list[list[int]]:
    """A timeline's `[[start, bases], …]` in slots doubled until at most `points` remain
    (a sparkline's worth); the sums stay exact."""
    width = slot_s
    while series and (series[-1][0] // width - series[0][0] // width) >= points:
        width *= 2
    merged: Counter[int] = Counter()
    for start, bases in series:
        merged[start // width] += bases
    return [[slot * width, n] for slot, n in sorted(merged.items())]


@dataclass
class EngineYield:
    """Bases an engine basecalled, and the time its jobs took (assigned to reported)."""

    bases: int = 0
    seconds: float = 0.0

    @property
    def bases_per_s(self) -> float:
        return self.bases / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunReads:
    """A run's reads: the sum of its merged jobs' `JobReads`, the bases by the time they
    arrived, and each engine's yield. Exact: a job adds once, when its merge is decided."""

    reads: JobReads = field(default_factory=JobReads)
    jobs: int = 0
    by_arrival: Counter[int] = field(default_factory=Counter)  # slot merged -> bases
    arrivals: Timeline = field(default_factory=Timeline)  # the same, finer while young
    engines: dict[str, EngineYield] = field(default_factory=dict)
    # The totals over barcodes and their N50, made again only after a job adds: a view
    # of a run of millions of reads sorts tens of thousands of lengths.
    _summed: tuple[int, ReadStats, int] | None = field(default=None, repr=False, compare=False)
    _viewed: tuple[tuple[int, float | None], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def total(self) -> ReadStats:
        return self._sum()[0]

    @property
    def n50(self) -> int:
        return self._sum()[1]

    def _sum(self) -> tuple[ReadStats, int]:
        if self._summed is None or self._summed[0] != self.jobs:
            total = self.reads.total
            self._summed = (self.jobs, total, total.n50)
        return self._summed[1], self._summed[2]

    def add(self, job: JobReads, *, engine_id: str, busy_s: float, merged_at: float) -> None:
        """One merged job's reads (`merged_at`: wall-clock seconds of the decision)."""
        self.reads.merge(job)
        self.jobs += 1
        bases = sum(stats.bases for stats in job.barcodes.values())
        self.by_arrival[int(merged_at) // YIELD_SLOT_S] += bases
        self.arrivals.add(merged_at, bases)
        engine = self.engines.get(engine_id)
        if engine is None:
            engine = self.engines[engine_id] = EngineYield()
        engine.bases += bases
        engine.seconds += max(0.0, busy_s)

    def view(self, min_qscore: float | None = None) -> dict[str, Any]:
        """What /status shows: exact integers (reads, bases, N50 in bases). Made again
        only after a job adds (each barcode's N50 sorts its lengths): a caller must not
        change what it is given."""
        cached = self._viewed
        if cached is not None and cached[0] == (self.jobs, min_qscore):
            return cached[1]
        view = self._view(min_qscore)
        self._viewed = ((self.jobs, min_qscore), view)
        return view

    def _view(self, min_qscore: float | None) -> dict[str, Any]:
        total = self.total
        return {
            **total.view(n50=self.n50),
            "min_qscore": min_qscore,
            "jobs": self.jobs,
            "length_histogram": length_histogram(total.lengths),
            "barcodes": {
                alias: {k: v for k, v in stats.view().items() if k != "mean_q"}
                for alias, stats in sorted(self.reads.barcodes.items())
                if alias
            },
            "accounting": {**self.reads.accounting(), "exactly_once": self.reads.exactly_once},
            "yield": {
                "slot_s": YIELD_SLOT_S,
                "by_start": _series(self.reads.by_start),
                "by_arrival": _series(self.by_arrival),
                "arrivals": self.arrivals.view(),
            },
            "engines": {
                engine_id: {
                    "bases": engine.bases,
                    "seconds": round(engine.seconds, 3),
                    "bases_per_s": round(engine.bases_per_s, 1),
                }
                for engine_id, engine in sorted(self.engines.items())
            },
        }


def _series(slots: Counter[int]) -> list[list[int]]:
    """[[slot start in epoch seconds, bases], …] in time order."""
    return [[slot * YIELD_SLOT_S, bases] for slot, bases in sorted(slots.items())]


def length_histogram(lengths: Counter[int]) -> list[list[int]]:
    """Reads per length bin, bins doubling from 1 base: [[bin's first length, reads], …]
    (a bin [2^k, 2^(k+1)) holds the reads of those lengths); only bins with reads."""
    bins: Counter[int] = Counter()
    for length, count in lengths.items():
        bins[1 << (length.bit_length() - 1) if length > 0 else 0] += count
    return [[start, count] for start, count in sorted(bins.items())]
