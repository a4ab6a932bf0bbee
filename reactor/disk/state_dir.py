"""reactor's own records: `OUTPUTDIR/.reactor/`, a folder only reactor writes.

Engines write in the run folders too (their job's `TMPOUTPUT_…`), usually as the same
Unix user, so nothing there can be trusted: an engine that edits a record there could
make reactor count files done whose reads are nowhere. Everything reactor decides on
lives here instead, beside the engine-writable trees and never inside them
(docs/journal.md, "Trust"):

    .reactor/jobs/<jobid>.json                 a job's record: its files, what was decided
    .reactor/requeued/<jobid>_<engineid>.json  a released quarantine, with the attempts
    .reactor/run/                              records about the run: its parameters
    .reactor/split/<jobid>/                    a job's reads in MinKNOW's layout, to merge

The folder is made mode 0700. Under one user id an engine could still write here (no
mode stops the same user); run engines as another user to make that impossible
(docs/operations.md, "Engines as another user"), which `reactor check` verifies.

Every file is opened through a descriptor of its folder, never following a link
(`O_NOFOLLOW`), and replaced atomically: written under a hidden temporary name created
afresh (`O_EXCL`), then renamed over the record. A link planted under the temporary
name is removed, not written through. The data is fsynced before the rename and the
folder after it (`reactor.disk.durable`), so a record survives a power cut whole or
not at all.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reactor.disk import fsops
from reactor.disk.durable import Sync, fsync_folder

STATE_NAME = ".reactor"
JOBS = "jobs"
REQUEUED = "requeued"
RUN = "run"  # records about the run as a whole: its basecall parameters, once pinned
SPLIT = "split"  # a job's reads written again in MinKNOW's layout, before they merge
RECORD_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# A record of 10,000 files is ~0.7 MB; a done job's read counts add ~12 bytes per distinct
# read length per barcode, up to one per read: a batch of 100 MinKNOW files of 50,000
# reads each could take ~60 MB. Reactor alone writes here; the bound only keeps a
# damaged file from being read whole.
MAX_RECORD_BYTES = 1024 * 1024 * 1024


class StateError(OSError):
    """The state folder cannot be used: the run cannot go on until a person fixes it."""


def open_folder(parent_fd: int | None, name: str | os.PathLike[str]) -> int:
    """A descriptor of the folder `name` (relative to `parent_fd`), never through a link:
    a link or a file there raises NotADirectoryError saying which it is."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        # Linux answers ENOTDIR for a link as for a file (O_DIRECTORY is checked first)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and (there := _what_is(parent_fd, name)):
            msg = f"{os.fsdecode(name)} is {there}, not a folder"
            raise NotADirectoryError(errno.ENOTDIR, msg) from None
        raise


def _what_is(parent_fd: int | None, name: str | os.PathLike[str]) -> str | None:
    """What `name` is when it is not a folder ("a symbolic link", "a file", ...), never
    following it; None if that cannot be told (a folder along the way is missing)."""
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return None
    return "a special file (a device, a FIFO or a socket)"


class StateDir:
    """The state folder of one run, with its `jobs/` and `requeued/` folders open."""

    def __init__(self, output_dir: Path, name: str = STATE_NAME) -> None:
        self.path = output_dir / name
        self._fds: dict[str, int] = {}

    @property
    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def open(self) -> bool:
        """Open (making it, mode 0700, if missing) the state folder and its subfolders.
        Returns whether it was made now (a run from before it existed, or a new one).
        Raises StateError saying what is wrong and what to do."""
        made = False
        try:
            try:
                self.path.mkdir(0o700)
                made = True
            except FileExistsError:
                pass
            root = open_folder(None, self.path)
            try:
                for name in (JOBS, REQUEUED, RUN, SPLIT):
                    with contextlib.suppress(FileExistsError):
                        fsops.mkdir(name, 0o700, dir_fd=root)
                    self._fds[name] = open_folder(root, name)
                # A record is only as durable as the folders that hold it: their names
                # too, whether they were made now or by a start that lost its power.
                fsops.fsync(root)
            finally:
                os.close(root)
            fsync_folder(self.path.parent)
        except OSError as exc:
            self.close()
            msg = (
                f"reactor's state folder {self.path} cannot be used ({exc.strerror or exc}): "
                "it must be a folder (not a link) that this user can write; fix or move it"
            )
            raise StateError(exc.errno or errno.EIO, msg) from None
        return made

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        self.close()

    def _fd(self, folder: str) -> int:
        if folder not in self._fds:
            self.open()
        return self._fds[folder]

    def fd(self, folder: str) -> int:
        """The open descriptor of one of the state folder's folders (owned here)."""
        return self._fd(folder)

    # ------------------------------------------------------------- records

    def write(self, folder: str, name: str, data: dict[str, Any], sync: Sync | None = None) -> None:
        """Replace the record `folder/name` atomically with `data` (JSON), durably unless
        `sync` says otherwise (a barrier between the data and the rename, one after)."""
        sync = sync or Sync()
        tmp = self.stage(folder, name, data, sync)
        sync.flush()
        self.commit(folder, tmp, name, sync)
        sync.flush()

    def stage(self, folder: str, name: str, data: dict[str, Any], sync: Sync) -> str:
        """Write `data` under a fresh temporary name and hand the file to `sync` (its
        contents must be durable before the rename is). Returns the temporary name."""
        fd = self._fd(folder)
        tmp = f"{_TMP_PREFIX}{name}"
        with contextlib.suppress(FileNotFoundError):
            fsops.unlink(tmp, dir_fd=fd)  # a leftover, or a link planted there: never followed
        out = fsops.create(tmp, 0o600, dir_fd=fd)
        try:
            fsops.write_all(out, json.dumps(data, indent=1).encode())
        except BaseException:
            os.close(out)
            raise
        sync.take(out)
        return tmp

    def commit(self, folder: str, tmp: str, name: str, sync: Sync) -> None:
        """Rename the staged record over `name`: the commit point. The folder goes to
        `sync`, so the rename is durable at its next barrier."""
        fd = self._fd(folder)
        fsops.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        sync.folder(fd)

    def read(self, folder: str, name: str) -> dict[str, Any] | None:
        """The record `folder/name`, or None if there is none. Raises ValueError if it is
        not a record reactor wrote (a link, not a regular file, too big, not JSON)."""
        fd = self._fd(folder)
        try:
            handle = os.open(name, _READ_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"{folder}/{name} cannot be read ({exc.strerror or exc})"
            raise ValueError(msg) from None
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
                msg = f"{folder}/{name} is not a record reactor wrote"
                raise ValueError(msg)
            chunks = []
            while chunk := os.read(handle, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(handle)
        data = json.loads(b"".join(chunks))
        if not isinstance(data, dict):
            msg = f"{folder}/{name} is not a JSON object"
            raise ValueError(msg)
        return data

    def remove(self, folder: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            fsops.unlink(name, dir_fd=self._fd(folder))

    def names(self, folder: str) -> Iterator[str]:
        """The records of `folder` (temporary names left by a crash are removed)."""
        fd = self._fd(folder)
        for name in os.listdir(fd):
            if name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    fsops.unlink(name, dir_fd=fd)
            elif name.endswith(RECORD_SUFFIX):
                yield name

    def touch(self, folder: str, name: str) -> None:
        """Set the record's mtime to now (a live job's last sign of life)."""
        os.utime(name, dir_fd=self._fd(folder), follow_symlinks=False)

    def mtime(self, folder: str, name: str) -> float | None:
        try:
            return os.stat(name, dir_fd=self._fd(folder), follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return None
