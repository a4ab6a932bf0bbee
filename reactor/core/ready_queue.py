"""The ready queue: the names of READY files, front first.

A run may queue 10^6 files, so the queue is made of plain dicts (insertion-ordered, about
42 bytes an entry at that size) rather than an `OrderedDict` (about 90: a linked node and
a second index per entry). The back of the queue is a list of segments of at most
SEGMENT names each, appended to at the end; the files sent to the front are one more
dict, `_front`, read backwards. A dict keeps the slot of a removed entry until it grows
again, and a walk from the front passes over those slots: so a segment that empties is
dropped and one that falls to a quarter is rebuilt (at most SEGMENT names, once), and a
walk passes over at most about one segment's worth of such slots at the front. Adding at
either end is O(1); removing a name looks in the front segment first (where assigned
files are), then the others: O(n / SEGMENT) at worst.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, filterfalse, islice

SEGMENT = 1 << 15  # names per segment: 31 segments at 10^6 files


class ReadyQueue:
    """Names front first. `append` takes a name not in the queue; `push_front` one in it
    or not (moved); `discard` removes one if it is there."""

    __slots__ = ("_front", "_segments")

    def __init__(self) -> None:
        self._front: dict[str, None] = {}  # read backwards: the front of the queue first
        self._segments: list[dict[str, None]] = [{}]  # never empty; the last takes appends

    def __len__(self) -> int:
        return len(self._front) + sum(map(len, self._segments))

    def __contains__(self, name: object) -> bool:
        return name in self._front or any(name in segment for segment in self._segments)

    def __iter__(self) -> Iterator[str]:
        return chain(reversed(self._front), *self._segments)

    def first(self) -> str:
        """The name at the front (StopIteration when empty)."""
        return next(iter(self))

    def append(self, name: str) -> None:
        """At the back (a name not in the queue)."""
        last = self._segments[-1]
        if len(last) >= SEGMENT:
            last = {}
            self._segments.append(last)
        last[name] = None

    def push_front(self, name: str) -> None:
        """At the front."""
        self.discard(name)
        self._front[name] = None

    def discard(self, name: str) -> None:
        front = self._front
        if name in front:
            if next(reversed(front)) == name:
                front.popitem()  # the front of the queue: no slot left behind
            else:
                del front[name]
            if not front:
                self._front = {}
            return
        # The last segment first (a name just appended, to be pushed to the front), then
        # from the front (where assignments take names).
        segments = self._segments
        last = len(segments) - 1
        for index in chain((last,), range(last)):
            segment = segments[index]
            if name in segment:
                del segment[name]
                self._shrunk(index, segment)
                return

    def move_to_back(self, names: Iterable[str]) -> None:
        """Those of these names that are in the queue go to its back, in this order; the
        others keep their order ahead of them. O(queue + names): the queue is built anew,
        a segment at a time (once, at the end of the start-up scan: 10^6 names)."""
        # Every step in C (no bytecode per name): 10^6 names in a fraction of a second.
        queued = dict.fromkeys(self)
        moved = dict.fromkeys(names)
        for name in moved.keys() - queued.keys():
            del moved[name]
        order = chain(filterfalse(moved.__contains__, queued), moved)
        segments = []
        while segment := dict.fromkeys(islice(order, SEGMENT)):
            segments.append(segment)
        self._front = {}
        self._segments = segments or [{}]

    def _shrunk(self, index: int, segment: dict[str, None]) -> None:
        segments = self._segments
        if index == len(segments) - 1:
            return  # the last segment still takes appends: its slots are reused as it grows
        if not segment:
            del segments[index]
        elif len(segment) == SEGMENT // 4:
            segments[index] = dict.fromkeys(segment)
