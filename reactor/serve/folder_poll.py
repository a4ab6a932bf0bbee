"""Polling for host mode on network filesystems: only folders whose mtime changed are read.

On NFS or SMB, inotify never hears of files written by other hosts, so folders must be
polled. watchdog's polling observer takes a snapshot of every watched tree at every
poll: a `stat` per file, and a snapshot object per file kept between polls (measured:
~45 % of a core and ~2 KB per file at 100,000 idle files). A folder's mtime changes
whenever an entry is added, removed or renamed in it, so this poller `stat`s each
folder it was given (and each barcode folder one level down), and lists a folder only
when its mtime differs from the last poll, or equals it but is less than two seconds
old (filesystems with one-second timestamps could hide a second change within the same
second). A listing is compared with the last one: names that appeared are CREATED,
names that went are GONE. What it keeps per file is its name, once.

A file written in place (in pieces) does not change its folder's mtime after it
appears: the coordinator's settle timer checks incomplete files again, as with
watchdog's polling observer (which also has no close events).

One thread polls every folder of every run, every `interval_s`; events go to the
loop with `call_soon_threadsafe`. For the NFS client's attribute cache, which decides
how soon a folder's new mtime is seen at all, see docs/host.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reactor.core.events import Area, Change, FsEvent
from reactor.core.minknow import is_barcode_folder

FRESH_NS = 2_000_000_000  # an mtime this young may hide a second change (1 s timestamps)


@dataclass
class _Folder:
    path: Path
    mtime_ns: int = -1
    names: frozenset[str] = frozenset()
    subfolders: dict[str, _Folder] = field(default_factory=dict)


@dataclass
class _Registration:
    folders: list[_Folder]
    nested: bool
    accept: Callable[[str], bool]
    post: Callable[[FsEvent], None]


class FolderPoller:
    """Polls registered folders on one thread (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self.interval_s = interval_s
        self._registered: dict[int, _Registration] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.listings = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reactor-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))

    def register(
        self,
        folders: list[Path],
        *,
        nested: bool,
        accept: Callable[[str], bool],
        post: Callable[[FsEvent], None],
    ) -> int:
        """Poll `folders` (and their barcode folders when `nested`); what is in them now
        is the baseline, not news. Returns a handle for `unregister`."""
        registration = _Registration([_Folder(f.absolute()) for f in folders], nested, accept, post)
        for folder in registration.folders:
            self._read(folder, registration, nested=nested, report=False)
        with self._lock:
            handle = self._next_id
            self._next_id += 1
            self._registered[handle] = registration
        return handle

    def unregister(self, handle: int) -> None:
        with self._lock:
            self._registered.pop(handle, None)

    @property
    def names_kept(self) -> int:
        """Names held in memory for all folders (for the benchmark)."""
        with self._lock:
            registrations = list(self._registered.values())
        total = 0
        for registration in registrations:
            for folder in registration.folders:
                total += len(folder.names) + sum(len(s.names) for s in folder.subfolders.values())
        return total

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                registrations = list(self._registered.values())
            for registration in registrations:
                for folder in registration.folders:
                    self._read(folder, registration, nested=registration.nested, report=True)
            self.polls += 1

    def _read(
        self, folder: _Folder, registration: _Registration, *, nested: bool, report: bool
    ) -> None:
        """Look at one folder (and, nested, its barcode folders); post what changed."""
        try:
            mtime = folder.path.stat().st_mtime_ns
        except OSError:
            mtime = -1  # gone (or not made yet): its names are gone too
        fresh = time.time_ns() - mtime < FRESH_NS
        if mtime != folder.mtime_ns or fresh:
            names, subfolders = self._list(folder.path, registration.accept, nested=nested)
            before, folder.names = folder.names, frozenset(names)
            folder.mtime_ns = mtime
            if report:  # after the state is kept: what the loop hears, the poller knows
                self._post_changes(folder, before, registration)
            if nested:
                for gone in set(folder.subfolders) - subfolders:
                    old = folder.subfolders.pop(gone)
                    before, old.names = old.names, frozenset()
                    if report:
                        self._post_changes(old, before, registration)
                for name in subfolders - set(folder.subfolders):
                    folder.subfolders[name] = _Folder(folder.path / name)
        for subfolder in folder.subfolders.values():
            self._read(subfolder, registration, nested=False, report=report)

    def _list(
        self, path: Path, accept: Callable[[str], bool], *, nested: bool
    ) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        subfolders: set[str] = set()
        self.listings += 1
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                name = entry.name
                if accept(name):
                    names.add(name)
                elif nested and is_barcode_folder(name):
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            subfolders.add(name)
        return names, subfolders

    def _post_changes(
        self, folder: _Folder, before: frozenset[str], registration: _Registration
    ) -> None:
        """Post what changed in `folder` since it held `before` (its names now)."""
        now = time.monotonic()
        where = str(folder.path)
        names = folder.names
        events = [
            FsEvent(Area.INPUT, Change.CREATED, name, now, where) for name in sorted(names - before)
        ] + [FsEvent(Area.INPUT, Change.GONE, name, now, where) for name in sorted(before - names)]
        for event in events:
            with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                self._loop.call_soon_threadsafe(registration.post, event)
