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

A failed fsync is not retried: after one, Linux may have dropped the pages it could not
write and a second fsync would report success for data that is gone. `DurabilityError`
says so; the service stops rather than answer on a state it cannot vouch for.
"""

from __future__ import annotations

import contextlib
import errno
import os

from reactor.disk import fsops

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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
        for fd in files:
            failure = self._fsync_and_close(fd) or failure
        for parent_fd, name in folders:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    failure = failure or exc
                continue
            failure = self._fsync_and_close(fd) or failure
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
        failure = self._fsync_and_close(os.dup(folder_fd))
        if failure is not None:
            msg = (
                f"fsync failed ({failure.strerror or failure}): what reached the disk is "
                "unknown; check the disk and restart reactor, which recovers from what is there"
            )
            raise DurabilityError(failure.errno or errno.EIO, msg)

    def _fsync_and_close(self, fd: int) -> OSError | None:
        """fsync `fd`, close it; the error, if the fsync failed."""
        try:
            fsops.fsync(fd)
        except OSError as exc:
            return exc
        finally:
            os.close(fd)
        self.fsyncs += 1
        return None

    def discard(self) -> None:
        """Drop what was collected (a step that failed before its decision)."""
        for fd in self._files:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files = []
        self._folders = {}


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Make the names in the folder at `path` durable (a folder made in it, at start)."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        fsops.fsync(fd)
    finally:
        os.close(fd)
