"""Barriers: what must be on stable storage before the next step may depend on it.

A rename or a create survives a process crash as soon as it returns, but survives a
power cut only once the folder that holds the name is fsynced, and a file's contents
only once the file is. The journal says what each step made that a later step (or an
answer to an engine) depends on: `Sync.take` for a file's data, `Sync.folder` for a
folder's names. `Sync.flush` is the barrier: everything collected is fsynced, each
folder once however many steps changed it, which is how the writer commits a group of
steps with one fsync per folder (`reactor.serve.writer`).

With `durable=False` (the `durable` setting, for throwaway runs) nothing is fsynced:
the steps, their order and recovery are the same, and a power cut may lose the last
seconds of decisions (a process crash still loses nothing).

The fsyncs of one barrier are independent of each other (only the next phase depends on
them), so they are issued side by side from a few threads: ext4's journal (jbd2), like
most journaling filesystems, commits the fsyncs that arrive together in one transaction,
where one after the other each waits for its own. The barrier still returns only once
every one of them has. While an observer records the changes (`reactor.disk.fsops`, the
power-loss tests) they are made one after the other, in the order collected, so that a
recording is the same run after run.

A failed fsync is not retried: after one, Linux may have dropped the pages it could not
write and a second fsync would report success for data that is gone. `DurabilityError`
says so; the service stops rather than answer on a state it cannot vouch for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from reactor.disk import fsops

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FSYNC_THREADS = 8  # fsyncs of one barrier in flight at once

_Call = tuple[Future[OSError | None], Callable[[int], OSError | None], int]


class _FsyncThreads:
    """A fixed set of threads that fsync side by side, started together on first use
    (a set that never grows: tests and /status count the service's threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for number in range(self.size):
                name = f"reactor-fsync-{number}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            future, call, fd = self._calls.get()
            try:
                future.set_result(call(fd))
            except BaseException as exc:  # handed to the barrier's thread, which raises it
                future.set_exception(exc)

    def map(self, call: Callable[[int], OSError | None], fds: list[int]) -> list[OSError | None]:
        """`call(fd)` for every fd, side by side; the results in order, once all are in."""
        if not self._started:
            self._start()
        futures: list[Future[OSError | None]] = []
        for fd in fds:
            future: Future[OSError | None] = Future()
            self._calls.put((future, call, fd))
            futures.append(future)
        return [future.result() for future in futures]


_THREADS = _FsyncThreads(FSYNC_THREADS)


class DurabilityError(OSError):
    """An fsync failed: what reached the disk is unknown. Not safe to retry."""


class Sync:
    """Files and folders to fsync at the next barrier (one owner: the thread writing)."""

    def __init__(self, durable: bool = True) -> None:
        self.durable = durable
        self._files: list[int] = []
        self._folders: dict[tuple[int, str], None] = {}
        self.fsyncs = 0  # counted for tests and the benchmark: what a barrier cost

    def take(self, fd: int) -> None:
        """Fsync this open file or folder at the barrier, then close it (the Sync owns
        `fd` now)."""
        if self.durable:
            self._files.append(fd)
        else:
            os.close(fd)

    def folder(self, parent_fd: int, name: str = ".") -> None:
        """Fsync the folder `name` of `parent_fd` (the folder itself with ".") at the
        barrier: the names made, renamed or removed in it persist."""
        if self.durable:
            self._folders[(parent_fd, name)] = None

    def absorb(self, other: Sync) -> None:
        """Take over what `other` collected (and count its fsyncs made at once): the
        writer gives each step a Sync of its own and fsyncs them all at one barrier."""
        self._files += other._files
        self._folders.update(other._folders)
        self.fsyncs += other.fsyncs
        other._files, other._folders, other.fsyncs = [], {}, 0

    @property
    def pending(self) -> bool:
        return bool(self._files or self._folders)

    def flush(self) -> None:
        """The barrier: fsync everything collected. A folder that is gone by now (a job
        folder an engine removed) has nothing left to persist and is skipped. Raises
        DurabilityError if an fsync fails."""
        files, self._files = self._files, []
        folders, self._folders = list(self._folders), {}
        failure: OSError | None = None
        fds = files
        for parent_fd, name in folders:
            try:
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=parent_fd))
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    failure = failure or exc
        if len(fds) > 1 and not fsops.observed():
            results = _THREADS.map(_fsync_and_close, fds)
        else:
            results = [_fsync_and_close(fd) for fd in fds]
        for result in results:
            if result is None:
                self.fsyncs += 1
            else:
                failure = failure or result
        if failure is not None:
            msg = (
                f"fsync failed ({failure.strerror or failure}): what reached the disk is "
                "unknown; check the disk and restart reactor, which recovers from what is there"
            )
            raise DurabilityError(failure.errno or errno.EIO, msg)

    def now(self, folder_fd: int) -> None:
        """fsync a folder at once, not at the barrier: a folder just made must keep its
        name before anything is renamed into it (otherwise a power cut may keep the
        rename and lose the folder). Raises DurabilityError if the fsync fails."""
        if not self.durable:
            return
        failure = _fsync_and_close(os.dup(folder_fd))
        if failure is None:
            self.fsyncs += 1
        else:
            msg = (
                f"fsync failed ({failure.strerror or failure}): what reached the disk is "
                "unknown; check the disk and restart reactor, which recovers from what is there"
            )
            raise DurabilityError(failure.errno or errno.EIO, msg)

    def discard(self) -> None:
        """Drop what was collected (a step that failed before its decision)."""
        for fd in self._files:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files = []
        self._folders = {}


def _fsync_and_close(fd: int) -> OSError | None:
    """fsync `fd`, close it; the error, if the fsync failed."""
    try:
        fsops.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
    return None


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Make the names in the folder at `path` durable (a folder made in it, at start)."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        fsops.fsync(fd)
    finally:
        os.close(fd)
