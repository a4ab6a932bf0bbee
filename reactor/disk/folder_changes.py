"""The names that changed in a few folders from a moment on: inotify, through ctypes (Linux).

`reactor serve` starts the start-up scan's child (`reactor.disk.input_lister`) before
its own imports, so before its own watch (watchdog's, `reactor.serve.watcher`) is up.
The child watches the folders that watch covers (INPUTDIR, pass/, fail/) with this
from before it lists them until the service says its watch is up, then reports every
name that changed meanwhile: the service looks at those again, and what changes later
its own watch sees. The standard library
only, as the rest of the child (watchdog's own binding is internal to it, and its import
alone takes longer than the child's whole start).
"""

from __future__ import annotations

import ctypes
import os
import struct

# <sys/inotify.h>
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000

# Every change to an entry the service's own watch acts on (created, written, closed,
# renamed in or away, deleted; attributes too), and the folder itself going away.
WATCHED = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip
# After one of these, names may be missing: nothing this watch says can be trusted.
LOSSES = {
    IN_Q_OVERFLOW: "the kernel's queue of events overflowed",
    IN_DELETE_SELF: "a watched folder was deleted",
    IN_MOVE_SELF: "a watched folder was moved",
    IN_UNMOUNT: "a watched folder's filesystem was unmounted",
    IN_IGNORED: "the watch was removed",
}
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
READ_BYTES = 1 << 16  # at least one event of the longest name (16 + NAME_MAX + 1)


class FolderChanges:
    """Watches on a few folders, each from when it was added. `read()` takes in what
    the kernel queued so far: the names that changed in `folders[i]` go to `names[i]`;
    `lost` says why some may be missing, if so. Raises OSError when a folder cannot be
    watched."""

    def __init__(self, folders: list[str]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error(folders[0])
        self.fd = fd
        self.folders: list[str] = []
        self.names: list[set[str]] = []
        self.lost: str | None = None
        self._which: dict[int, int] = {}  # watch descriptor -> index in folders
        try:
            for folder in folders:
                self.add(folder)
        except OSError:
            os.close(fd)
            raise

    def add(self, folder: str) -> None:
        """Watch one more folder, from now on: its names go to `names[len(folders)]`.
        (Adding a watch walks the folder's cached entries: ~90 ms at 10^6 names.)"""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), WATCHED | IN_ONLYDIR)
        if wd < 0:
            raise _os_error(folder)
        self._which[wd] = len(self.folders)
        self.folders.append(folder)
        self.names.append(set())

    def read(self) -> None:
        """Take in every event queued so far (never waits)."""
        while True:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                return
            position = 0
            while position < len(data):
                wd, mask, _cookie, length = EVENT.unpack_from(data, position)
                position += EVENT.size
                for bit, why in LOSSES.items():
                    if mask & bit and self.lost is None:
                        self.lost = why
                index = self._which.get(wd)
                if length and index is not None:
                    name = data[position : position + length].rstrip(b"\0")
                    self.names[index].add(os.fsdecode(name))
                position += length

    def close(self) -> None:
        os.close(self.fd)


def _os_error(folder: str) -> OSError:
    """What the last call failed with, as OSError says it (`[Errno 28] No space left on
    device: 'FOLDER'`: inotify's per-user limits are reached so)."""
    number = ctypes.get_errno()
    return OSError(number, f"cannot watch the folder: {os.strerror(number)}", folder)
