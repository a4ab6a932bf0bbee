"""The start-up scan of INPUTDIR, a slice at a time, while the service already serves.

A single run's service recovers its journal, lists the outputs' stems, and from then on
hands out the files it knows to be ready while this scan goes on between requests
(docs/journal.md, "Serving during the start-up scan", says why that is safe). The scan
owns nothing but its cursor: each `.pod5` it finds goes into the core (`RunState`) as the
whole-folder scan of `Reactor.start` would put it, and at the end the files it queued are
put in the order that scan gives them, oldest first, behind the files sent to the front.

Memory: per file found, one reference in a list and one double in an array, no objects
of its own, so nothing it drops at the end is scattered among the records it made.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from reactor.core.retry import FailureHistory
from reactor.core.state import RunState
from reactor.disk.inputs import InputFolders
from reactor.disk.signature import look_at_pod5

# Entries looked at between two looks at the clock (`Reactor.scan` turns the event loop
# once SCAN_TURN_S has passed): ~2 ms of signature checks on a local disk.
SLICE_FILES = 256


@dataclass(slots=True)
class StartScan:
    """One start-up scan: `front()` the few files the journal names, then `slices()`,
    then `finish()`. `refuse(name)`: whether a symlinked `.pod5` is refused."""

    state: RunState
    inputs: InputFolders
    stems: set[str]  # the stems of pass/ and fail/: those files are done (the seed's rule)
    history: dict[str, FailureHistory]
    handed_back: set[str]
    refuse: Callable[[str], bool]
    now: float
    # Every entry of INPUTDIR that is not a `.pod5` (recovery leaves its strays to the scan)
    others: Callable[[os.DirEntry[str]], None]
    _names: list[str] = field(default_factory=list)  # queued by the scan, in its order
    _mtimes: array[float] = field(default_factory=lambda: array("d"))

    def front(self, names: Iterable[str]) -> None:
        """Before serving: the files the journal knows something about (failed before,
        handed back, in a finished job), looked up by name, so that their history is in
        place and they are at the front before the first engine asks."""
        found: list[tuple[float, str, bool]] = []
        for name in names:
            if name in self.state.files:
                continue
            path = self.inputs.path(name)
            if (checked := self._check(name, str(path), path.is_symlink())) is not None:
                found.append((checked[0], name, checked[1]))
        found.sort()
        front = self.handed_back.union(self.history)
        for mtime, name, complete in found:
            if name not in front:  # in a finished job: queued as the scan queues files
                self._queue(name, complete=complete)
                self._names.append(name)
                self._mtimes.append(mtime)
        # file_seen puts each front file at the very front: feed them newest first.
        for _mtime, name, complete in reversed(found):
            if name in front:
                self._queue(name, complete=complete)

    def mark_present(self, names: Iterable[str]) -> None:
        """Before serving: records restored from the journal (live jobs' files, the
        quarantined) learn whether their `.pod5` is there, as the scan would tell them.
        A failed or expired job requeues only files that are there."""
        files = self.state.files
        for name in names:
            record = files.get(name)
            if record is not None and os.path.lexists(self.inputs.path(name)):
                record.present = True

    def slices(self, size: int = SLICE_FILES) -> Iterator[int]:
        """Scan INPUTDIR, yielding after every `size` entries (the files seen so far)."""
        # `_check` and `_queue` inlined: this loop runs once per file (10^6 at start).
        state, now, stems, refuse = self.state, self.now, self.stems, self.refuse
        files, front, history = state.files, self.handed_back, self.history
        names, mtimes = self._names, self._mtimes
        for count, entry in enumerate(self.inputs.scan(self.others), 1):
            name = entry.name
            record = files.get(name)
            if record is not None:
                record.present = True
            elif stems and name[:-5] in stems:  # is_pod5_name: it ends in ".pod5"
                state.restore_done(name, now)
                files[name].present = True
            elif (
                not (entry.is_symlink() and refuse(name))
                and (looked := look_at_pod5(entry.path)) is not None
            ):
                complete, _size, mtime = looked
                if name in front or name in history:
                    self._queue(name, complete=complete)
                else:
                    state.file_found(name, complete=complete, now=now)
                    names.append(name)
                    mtimes.append(mtime)
            if count % size == 0:
                yield count

    def finish(self) -> None:
        """The scan is over: the files it queued go behind the others, oldest first (the
        order `Reactor.start` gives them); files handed out meanwhile are not touched."""
        mtimes = self._mtimes
        order = sorted(range(len(self._names)), key=mtimes.__getitem__)
        names = self._names
        self.state.requeue_in_order(map(names.__getitem__, order))
        self._names = []
        self._mtimes = array("d")

    def _check(self, name: str, path: str, is_symlink: bool) -> tuple[float, bool] | None:
        """(mtime, complete) of a `.pod5` unknown so far; None when it is done by an
        output (recorded so), refused, or gone."""
        if name[:-5] in self.stems:  # is_pod5_name: it ends in ".pod5"
            self.state.restore_done(name, self.now)
            self.state.files[name].present = True
            return None
        if is_symlink and self.refuse(name):
            return None
        looked = look_at_pod5(path)
        if looked is None:
            return None
        complete, _size, mtime = looked
        return mtime, complete

    def _queue(self, name: str, *, complete: bool) -> None:
        self.state.file_seen(
            name,
            complete=complete,
            now=self.now,
            history=self.history.get(name),
            front=name in self.handed_back,
        )
