"""Host mode's discovery watches: new folders (and files) in the roots, their group and
recent sample folders, and live run folders, handed to the loop as they appear.

One watchdog observer holds every discovery watch, each non-recursive: a root, each of
its group folders, the sample folders that changed recently, and each live run folder
(where `pod5/` and the final summary appear). The archive's other sample folders are
not watched (that would be a watch, and its threads, per sample folder ever made): the
host's discovery pass reads them when their mtime changes. What a watch sees is posted
to the loop as `(folder, name)`; the host decides what it means.

`watch` adds a watch at once (watchdog sets an inotify watch up before `schedule`
returns, a millisecond); `unwatch` joins the watch's threads, up to ~0.5 s, so the host
calls it off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch

# What discovery needs: folders made or renamed in, and files made or renamed in (the
# final summary); nothing about writes, so a busy folder costs nothing here.
_WANTED = [DirCreatedEvent, DirMovedEvent, FileCreatedEvent, FileMovedEvent]


class _Post(FileSystemEventHandler):
    def __init__(self, folder: Path, post: Callable[[Path, str], None]) -> None:
        super().__init__()
        self._folder = folder
        self._post = post

    def dispatch(self, event: FileSystemEvent) -> None:
        raw = event.dest_path if isinstance(event, DirMovedEvent | FileMovedEvent) else None
        path = Path(os.fsdecode(raw or event.src_path))
        if path.parent == self._folder and not path.name.startswith("."):
            self._post(self._folder, path.name)


class FolderWatch:
    """Non-recursive watches on folders, on one observer; events to `on_change` on the loop."""

    def __init__(
        self,
        observer: BaseObserver,
        on_change: Callable[[Path, str], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._observer = observer
        self._on_change = on_change
        self._loop = loop
        self._watches: dict[Path, ObservedWatch] = {}
        self._lock = threading.Lock()  # watch (loop) and unwatch (a worker) may overlap
        self._running = False

    def start(self) -> None:
        self._observer.start()
        self._running = True

    def stop(self) -> None:
        self._running = False
        self._observer.stop()
        with contextlib.suppress(RuntimeError):
            self._observer.join(5.0)

    @property
    def count(self) -> int:
        return len(self._watches)

    def watching(self, folder: Path) -> bool:
        return folder in self._watches

    def watch(self, folder: Path) -> bool:
        """Watch `folder` (no-op if watched). False if it cannot be watched (gone, or
        the kernel's limit of watches reached); the discovery pass still reads it."""
        with self._lock:
            if folder in self._watches or not self._running:
                return folder in self._watches
            handler = _Post(folder, self._post)
            try:
                watch = self._observer.schedule(
                    handler, str(folder), recursive=False, event_filter=_WANTED
                )
            except OSError:
                return False
            self._watches[folder] = watch
            return True

    def unwatch(self, folder: Path) -> None:
        """Stop watching `folder` (joins its threads: call it off the loop)."""
        with self._lock:
            watch = self._watches.pop(folder, None)
        if watch is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    def _post(self, folder: Path, name: str) -> None:
        if not self._running:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
            self._loop.call_soon_threadsafe(self._on_change, folder, name)
