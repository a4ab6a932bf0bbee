"""The journal's changes on disk, each through one function here.

Every name made, moved or removed and every byte written by the journal (its records,
its folders and links, the merges) goes through this thin layer, and so does every
fsync: the whole set of ways reactor changes the run folders, in one place. Each
function is the `os` call it names, then a word to the observer if one is set.

The observer exists for the power-loss tests (tests/support/crash_states.py): they
record a real run's changes and fsyncs here, then build the states a power cut could
leave at any point (what was fsynced, plus any part of what was not) and recover from
each. In production there is no observer and each call costs one test of a global.

Reads (stat, listdir, opening to read) change nothing and do not come through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from typing import Any

# (operation, arguments): see each function for what it reports.
Observer = Callable[[str, tuple[Any, ...]], None]
_observer: Observer | None = None

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def observe(observer: Observer | None) -> Observer | None:
    """Set the observer (None: none); returns the one it replaces."""
    global _observer
    previous, _observer = _observer, observer
    return previous


def observed() -> bool:
    """Whether an observer records the changes (the power-loss tests)."""
    return _observer is not None


def mkdir(name: str, mode: int = 0o777, *, dir_fd: int) -> None:
    os.mkdir(name, mode, dir_fd=dir_fd)
    if _observer is not None:
        _observer("mkdir", (dir_fd, name))


def symlink(target: str, name: str, *, dir_fd: int) -> None:
    os.symlink(target, name, dir_fd=dir_fd)
    if _observer is not None:
        _observer("symlink", (dir_fd, name, target))


def rename(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    if _observer is not None:
        _observer("rename", (src_dir_fd, src, dst_dir_fd, dst))


def unlink(name: str, *, dir_fd: int) -> None:
    os.unlink(name, dir_fd=dir_fd)
    if _observer is not None:
        _observer("unlink", (dir_fd, name))


def rmdir(name: str, *, dir_fd: int) -> None:
    os.rmdir(name, dir_fd=dir_fd)
    if _observer is not None:
        _observer("rmdir", (dir_fd, name))


def create(name: str, mode: int, *, dir_fd: int) -> int:
    """A new file (never through a link, never over an existing name), open to write."""
    fd = os.open(name, CREATE_FLAGS, mode, dir_fd=dir_fd)
    if _observer is not None:
        _observer("create", (dir_fd, name, fd))
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if _observer is not None:
        _observer("write", (fd, data))


def fsync(fd: int) -> None:
    """fsync of a file (its data) or a folder (the names in it)."""
    os.fsync(fd)
    if _observer is not None:
        _observer("fsync", (fd,))


def remove_tree(name: str, *, dir_fd: int) -> None:
    """Remove the folder `name` and everything in it, entry by entry through this layer,
    never following a link; what is gone already is fine."""
    try:
        fd = os.open(name, _FOLDER_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        with contextlib.suppress(FileNotFoundError):  # a link or a file in its place
            unlink(name, dir_fd=dir_fd)
        return
    try:
        for entry in os.listdir(fd):
            try:
                info = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(info.st_mode):
                    remove_tree(entry, dir_fd=fd)
                else:
                    unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        rmdir(name, dir_fd=dir_fd)
