"""The watchdog bridge: filesystem events from the run folders into the event loop.

Owns the watchdog observer (its threads) and its three watches, all top level: INPUTDIR,
OUTPUTDIR/pass and OUTPUTDIR/fail. Each watchdog event is filtered by name, turned into a
small `FsEvent` and handed to the loop with `loop.call_soon_threadsafe`; nothing else runs
on the observer thread, and all state stays with the loop (docs/architecture.md,
"Invariants").

The set of watches is fixed, whatever the number of live jobs: watchdog runs one emitter
thread per watch, and a watch per live job's TMPOUTPUT folder (only ever a progress count
in /status) made thousands of threads under load, which took the interpreter's time from
the event loop and halved /keepalive's rate (docs/operations.md, "Performance"). A job's
keepalives show it lives.

Modify events are cheap on purpose. MinKNOW appends to a `.pod5` for up to an hour and every
write is an inotify IN_MODIFY, so the bridge looks at the name only (no stat, no read) and
posts the event; the owner at most restarts a settle timer. Whether a file is complete is
decided by its signature (`reactor.disk.signature`) on close, move-in and settle, never here.

Caveats (docs/architecture.md, "Facts of the field"):

- inotify queue overflow loses events, and watchdog 7 delivers no event for it: it only logs
  "Inotify queue overflowed; filesystem events were lost" on `watchdog.observers.inotify_c`.
  While it runs, the Watcher listens on that logger and reports `on_lost("inotify_overflow")`;
  the owner answers with a reconcile scan. The record does not say which inotify instance
  overflowed, so every running Watcher in the process reports it: a spare reconcile is
  harmless, a missed one is not.
- A dead observer is found by `check_health()`, which the owner calls periodically: it
  restarts the observer with every current watch and reports `on_lost("observer_restarted")`.
- The polling observer (`polling=True`, for NFS/SMB, where inotify never sees writes made on
  other hosts) emits no close events and sees a change only at its next poll: files there
  become ready by signature and the owner's settle timer.
- The native Linux observer runs with watchdog's "full events", so a file renamed in from an
  unwatched folder is MOVED_IN; other observers (and the polling one) report it as CREATED.
  watchdog holds a rename-out back for 0.5 s while it looks for the matching rename-in.
- A watch sees only what happens after `start()` returns: the owner's reconcile scan must
  run after `start()`, or a file landing in between is never seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Thread
from typing import Final

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver
from watchdog.utils import UnsupportedLibcError

from reactor.core.events import (
    Area,
    Change,
    FsEvent,
    PathFilter,
    input_filter,
    results_filter,
)
from reactor.core.names import RESULT_FOLDERS

LOST_OVERFLOW: Final = "inotify_overflow"
LOST_RESTARTED: Final = "observer_restarted"
OVERFLOW_LOGGER: Final = "watchdog.observers.inotify_c"
_OVERFLOW_MESSAGE: Final = "Inotify queue overflowed"
_JOIN_TIMEOUT_S: Final = 5.0


# --------------------------------------------------------------------------- bridge

_CHANGE_OF: Final[dict[type[FileSystemEvent], Change]] = {
    FileCreatedEvent: Change.CREATED,
    FileModifiedEvent: Change.MODIFIED,
    FileClosedEvent: Change.CLOSED,
    FileDeletedEvent: Change.GONE,
}
# What the kernel is asked for. Without a filter watchdog asks inotify for everything,
# opens and closes-without-writing included: then every read of a `.pod5` in INPUTDIR
# (the start-up scan's signature check, engines reading their batches through the
# links) costs two events on the observer thread, to be dropped by the bridge. At
# 100,000 files that made start-up 4x slower (measured).
_WANTED_EVENTS: Final = [*_CHANGE_OF, FileMovedEvent]


class EventBridge(FileSystemEventHandler):
    """Runs on the observer thread for one watched folder: maps, filters, hands over.

    Directory events, opens, closes without writing and attribute changes are dropped. A
    move becomes GONE for its source and MOVED_IN for its destination, each only if that
    side lies in this folder (not in a subfolder) and passes the filter.
    """

    def __init__(
        self,
        area: Area,
        root: Path,
        *,
        accept: PathFilter,
        post: Callable[[FsEvent], None],
        loop: asyncio.AbstractEventLoop,
        nested: bool = False,
    ) -> None:
        super().__init__()
        self._area = area
        self._root = root
        # nested: the folder's subfolders one level down too (a MinKNOW run's barcode
        # folders), each event saying which folder its file is in
        self._nested = nested
        self._accept = accept
        self._post = post
        self._loop = loop

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            self._hand_over(Change.GONE, event.src_path)
            self._hand_over(Change.MOVED_IN, event.dest_path)
            return
        change = _CHANGE_OF.get(type(event))
        if change is not None:
            self._hand_over(change, event.src_path)

    def _hand_over(self, change: Change, raw_path: bytes | str) -> None:
        if not raw_path:  # the missing side of an unpaired move
            return
        path = Path(os.fsdecode(raw_path))
        parent = path.parent
        if self._nested:
            if parent != self._root and parent.parent != self._root:
                return
        elif parent != self._root:
            return
        if not self._accept(change, path):
            return
        folder = str(parent) if self._nested else ""
        event = FsEvent(self._area, change, path.name, time.monotonic(), folder)
        # A closed loop means we are shutting down: the event has nobody to go to.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._post, event)


class _OverflowHook(logging.Handler):
    """Turns watchdog's overflow warning into a call (the only sign of lost events)."""

    def __init__(self, report: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._report = report

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith(_OVERFLOW_MESSAGE):
            self._report()


# --------------------------------------------------------------------------- watcher


class Watcher:
    """The observer and its watches; events go to `on_event`, losses to `on_lost`.

    `input_accept` filters INPUTDIR's events (`input_filter` unless given; the app adds
    the end-of-run stop file's name to it).

    `start()` and `stop()` are called on the loop thread. In between, the app calls
    `check_health()` from a worker thread, because restarting a dead observer joins its
    threads (up to ~0.5 s each) and must not block the loop; the loop side only reads
    `_running`. `on_event` and `on_lost` are called on the loop thread, never after
    `stop()` returns.
    """

    def __init__(
        self,
        input_dir: Path | Sequence[Path],
        output_dir: Path | None,
        *,
        on_event: Callable[[FsEvent], None],
        on_lost: Callable[[str], None],
        loop: asyncio.AbstractEventLoop,
        polling: bool = False,
        poll_interval_s: float = 2.0,
        input_accept: PathFilter = input_filter,
        nested: bool = False,
    ) -> None:
        self._input_accept = input_accept
        # One INPUTDIR; or, in host mode, a run's POD5 folders (`nested`: with their
        # barcode folders) and no results folders (nothing but reactor writes there).
        folders = [input_dir] if isinstance(input_dir, Path) else list(input_dir)
        self._input_dirs = tuple(folder.absolute() for folder in folders)
        self._nested = nested
        self._result_dirs = (
            ()
            if output_dir is None
            else tuple(output_dir.absolute() / name for name in RESULT_FOLDERS)
        )
        self._on_event = on_event
        self._on_lost = on_lost
        self._loop = loop
        self._polling = polling
        self._poll_interval_s = poll_interval_s
        self._running = False
        self._observer: BaseObserver | None = None
        self._fixed: list[ObservedWatch] = []
        self._overflow_hook = _OverflowHook(self._report_overflow)
        self._saved_logger_state: tuple[int, bool] | None = None

    @property
    def alive(self) -> bool:
        """The observer thread is running."""
        return self._observer is not None and self._observer.is_alive()

    def start(self) -> None:
        """Start watching. Raises FileNotFoundError if a run folder is missing."""
        if self._running:
            msg = "the watcher is already running"
            raise RuntimeError(msg)
        for folder in (*self._input_dirs, *self._result_dirs):
            if not folder.is_dir():
                msg = f"cannot watch {folder}: it is not a folder"
                raise FileNotFoundError(msg)
        self._arm_overflow_hook()
        try:
            self._observer = self._start_observer()
        except BaseException:
            self._disarm_overflow_hook()
            raise
        self._running = True

    def stop(self, timeout_s: float = _JOIN_TIMEOUT_S) -> None:
        """Stop the observer and wait for its thread (at most `timeout_s`). Idempotent."""
        self._running = False
        self._disarm_overflow_hook()
        observer, self._observer = self._observer, None
        self._fixed = []
        if observer is not None:
            _halt(observer, timeout_s)

    def check_health(self) -> None:
        """Restart a dead observer with its watches, then call
        `on_lost("observer_restarted")`. Raises OSError if a run folder cannot be watched;
        the observer then stays down and the next call tries again."""
        if not self._running:
            return
        self._arm_overflow_hook()  # logging may have been reconfigured since start()
        if self._observer is not None and self._healthy(self._observer):
            return
        if self._observer is not None:
            _halt(self._observer, _JOIN_TIMEOUT_S)
            self._observer = None
        self._observer = self._start_observer()
        # This runs on the app's watch worker: the loss is reported on the loop, where
        # its owner reconciles (the state has one owner, the loop's thread).
        with contextlib.suppress(RuntimeError):  # loop closed: shutting down
            self._loop.call_soon_threadsafe(self._deliver_lost, LOST_RESTARTED)

    # ----------------------------------------------------------------- internals

    def _new_observer(self) -> BaseObserver:
        return new_observer(polling=self._polling, poll_interval_s=self._poll_interval_s)

    def _start_observer(self) -> BaseObserver:
        observer = self._new_observer()
        # Started before scheduling: schedule() on a live observer sets the watch up (or
        # raises) before it returns, so nothing that happens after start() is missed.
        observer.start()
        try:
            fixed = [
                self._schedule(observer, Area.INPUT, folder, self._input_accept, self._nested)
                for folder in self._input_dirs
            ]
            fixed += [
                self._schedule(observer, Area.RESULTS, folder, results_filter)
                for folder in self._result_dirs
            ]
        except BaseException:
            _halt(observer, _JOIN_TIMEOUT_S)
            raise
        self._fixed = fixed
        return observer

    def _schedule(
        self,
        observer: BaseObserver,
        area: Area,
        folder: Path,
        accept: PathFilter,
        nested: bool = False,
    ) -> ObservedWatch:
        bridge = EventBridge(
            area, folder, accept=accept, post=self._deliver, loop=self._loop, nested=nested
        )
        # A nested watch is recursive: inotify watches each subfolder, on the one thread.
        return observer.schedule(bridge, str(folder), recursive=nested, event_filter=_WANTED_EVENTS)

    def _healthy(self, observer: BaseObserver) -> bool:
        if not observer.is_alive():
            return False
        # An emitter stops itself when its folder is deleted, or a poll finds it gone.
        live = {emitter.watch for emitter in list(observer.emitters) if emitter.is_alive()}
        if not all(watch in live for watch in self._fixed):
            return False
        # watchdog does not expose the inotify reader thread; if it dies, every emitter
        # waits forever without an error, so look at it directly.
        reader = getattr(observer, "_inotify_fd", None)
        return not isinstance(reader, Thread) or reader.is_alive()

    def _deliver(self, event: FsEvent) -> None:
        """On the loop: pass on what is still wanted (nothing after stop)."""
        if self._running:
            self._on_event(event)

    def _report_overflow(self) -> None:
        """On any thread (the inotify reader's): report the loss on the loop."""
        with contextlib.suppress(RuntimeError):  # loop closed: shutting down
            self._loop.call_soon_threadsafe(self._deliver_lost, LOST_OVERFLOW)

    def _deliver_lost(self, reason: str) -> None:
        if self._running:
            self._on_lost(reason)

    def _arm_overflow_hook(self) -> None:
        """Listen for the overflow warning, even if logging is configured to drop it
        (a level above WARNING, or `disable_existing_loggers` in `dictConfig`)."""
        logger = logging.getLogger(OVERFLOW_LOGGER)
        if self._overflow_hook not in logger.handlers:
            logger.addHandler(self._overflow_hook)
        if logger.disabled or not logger.isEnabledFor(logging.WARNING):
            if self._saved_logger_state is None:
                self._saved_logger_state = (logger.level, logger.disabled)
            logger.disabled = False
            logger.setLevel(logging.WARNING)

    def _disarm_overflow_hook(self) -> None:
        logger = logging.getLogger(OVERFLOW_LOGGER)
        logger.removeHandler(self._overflow_hook)
        if self._saved_logger_state is not None:
            level, disabled = self._saved_logger_state
            logger.setLevel(level)
            logger.disabled = disabled
            self._saved_logger_state = None


def new_observer(*, polling: bool, poll_interval_s: float) -> BaseObserver:
    """The observer for this platform: inotify with full events on Linux (a rename in
    from an unwatched folder is a move, not a create), watchdog's default elsewhere, or
    the polling observer."""
    if polling:
        return PollingObserver(timeout=poll_interval_s)
    if sys.platform.startswith("linux"):
        try:
            from watchdog.observers.inotify import InotifyObserver
        except UnsupportedLibcError:
            pass
        else:
            return InotifyObserver(generate_full_events=True)
    return Observer()


def _halt(observer: BaseObserver, timeout_s: float) -> None:
    observer.stop()
    with contextlib.suppress(RuntimeError):  # never started
        observer.join(timeout_s)
