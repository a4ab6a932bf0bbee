"""Is a `.pod5` fully written? Decided by its signature, never by the event that announced it.

A POD5 file starts and ends with the 8-byte signature `8B 50 4F 44 0D 0A 1A 0A`; the trailing
copy is written last: "placing it at the end allows quickly checking whether the file is
complete" (pod5-file-format, docs/SPECIFICATION.md, "Signature", Rationale). MinKNOW may
append to a file for an hour before closing it, so every close/move/settle event re-checks
it here: the check must be cheap. It reads 16 bytes and makes one `fstat`, whatever the
file size, and imports nothing from the pod5 library.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from reactor.core.names import POD5_SIGNATURE

_SIG_LEN = len(POD5_SIGNATURE)
# O_NONBLOCK: a FIFO (or device) named `*.pod5` must not hang the event loop in open().
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Pod5Check:
    """What one look at a `.pod5` found.

    `complete` is True only for a regular file of at least 16 bytes whose first and last
    8 bytes are both the signature. `size` and `mtime` come from the same `fstat` as the
    bytes read, so they describe the file that was checked (a later append changes them).
    """

    complete: bool
    size: int
    mtime: float


def check_pod5(path: str | os.PathLike[str]) -> Pod5Check | None:
    """Check the signatures of `path`; None if it does not exist (deleted, or moved away).

    Anything else that stops the check (not a regular file, permission denied, an I/O
    error) gives `complete=False`: such a file waits, and is looked at again on its next
    event or settle timer, like a file still being written.
    """
    looked = look_at_pod5(path)
    if looked is None:
        return None
    complete, size, mtime = looked
    return Pod5Check(complete=complete, size=size, mtime=mtime)


def look_at_pod5(
    path: str | os.PathLike[str], dir_fd: int | None = None
) -> tuple[bool, int, float] | None:
    """`check_pod5` as a plain tuple (complete, size, mtime): the start-up scan looks at
    10^6 files, and passes `DirEntry.path` as it is, because building a `Path`, or a
    frozen dataclass, per file costs about as much as the check itself. With `dir_fd`,
    `path` is a name in that folder (the kernel then walks one name, not the path)."""
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError:
        return False, 0, 0.0
    try:
        return _check_fd(fd)
    finally:
        os.close(fd)


def _check_fd(fd: int) -> tuple[bool, int, float]:
    try:
        info = os.fstat(fd)
    except OSError:
        return False, 0, 0.0
    size, mtime = info.st_size, info.st_mtime
    if not stat.S_ISREG(info.st_mode) or size < 2 * _SIG_LEN:
        return False, size, mtime
    try:
        # pread at offsets from the fstat above: the tail read is the tail of the file
        # whose size we report, even if a writer appends in between.
        head = os.pread(fd, _SIG_LEN, 0)
        tail = os.pread(fd, _SIG_LEN, size - _SIG_LEN)
    except OSError:
        return False, size, mtime
    return head == POD5_SIGNATURE and tail == POD5_SIGNATURE, size, mtime
