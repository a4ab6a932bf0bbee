"""A FUSE filesystem that loses, on command, everything not made durable: a power cut.

Run as its own process (tests/support/powercut.py starts it, mounts it and talks to it):

    python powercut_fs.py --backing DIR --state DIR --control-fd N MOUNTPOINT

Every operation is passed through to the backing folder, so the mount behaves like a
plain local filesystem. Beside it, the process keeps what a disk would still hold after
losing power: for each inode its durable content, and for each directory its durable
listing. A `cut` on the control channel throws the backing folder's contents away and
rebuilds them from that durable state alone; from then on the mount shows only what
survived. The model is Linux/ext4-like, read as strictly as POSIX allows.

The model, exactly
==================

Inodes and names are kept apart, as on disk. An inode (a file, a directory, a symlink,
a special file) has an id that survives renames and hard links; a directory's listing
maps names to inode ids.

File data (regular files):
  - Bytes written to a file become durable only at an fsync() or fdatasync() of that
    file (any fd of that inode, through any of its names). The fsync makes durable the
    whole content and the size as they are at that moment; truncations too.
  - After a cut a file's content is its content at its last fsync. A file never
    fsynced since it was created is empty (length 0), if its name survived at all.
  - close(), sync(), syncfs() make nothing durable here (strict reading: sync() need
    not wait, and the kernel sends it to no FUSE filesystem anyway). A write through an
    fd opened with O_SYNC or O_DSYNC is durable when it returns, because the kernel
    follows each such write with an fsync of the file, which this filesystem sees.
  - fdatasync() counts as fsync().

Names (directory entries):
  - create, mkdir, mknod, symlink, link, unlink, rmdir and rename each change one
    directory's listing (a rename between two directories changes two). None of these
    changes is durable until an fsync of the directory holding the entry: the directory
    opened (O_RDONLY or O_DIRECTORY) and fsynced. fsync of a file never makes its name
    durable (ext4 does for a new file's name; strict POSIX does not promise it).
  - Each directory's changes become durable in the order they were made: a directory's
    durable listing is always its real listing as it was at some earlier moment (after
    a prefix of its changes), never a mix.
  - A rename within one directory is one change of that directory: after an fsync of
    the directory the new name is durable and the old one gone; before it, after a cut,
    the old name is back (and whatever the new name held before the rename).
  - A rename between two directories is one atomic change of both: it becomes durable
    only once BOTH the source and the destination directory have been fsynced after it
    (in either order). Until then a cut brings the entry back under its old name in the
    source, and leaves the destination as it was: the file is never lost and never
    appears twice. Because a directory's changes commit in order, an fsync of the
    destination alone also holds back every later change to the destination (and an
    fsync of the source alone every later change to the source) until the other
    directory is fsynced. This is harsher than ext4 in data=ordered mode, where one
    fsync of either directory commits the journal transaction holding both halves and
    everything else before it; it never shows a state ext4 could not reach for the
    entry itself (old name or new name, one of the two).
  - A name that survives a cut points at its inode, whose content is the inode's
    durable content; a directory whose name survives has its own durable listing, and
    only entries reachable from the root through durable listings exist after a cut.
  - So a file moved into a directory whose own name is not durable yet is lost with that
    directory at a cut, even once both directories were fsynced after the move: fsync
    a new directory's parent before relying on anything inside it.
  - unlink of a name that is still durable leaves its inode's durable content alive:
    if the unlink is lost, the file comes back with its content at its last fsync.

Metadata:
  - Mode, owner and atime/mtime are captured with the inode when it is created and at
    every fsync of it (fsync of a directory captures the directory's own); a cut
    restores them. A chmod, chown or utime not followed by an fsync of that inode is
    lost. ctime and inode numbers are whatever the rebuild gives (new inode numbers).
  - Extended attributes are not supported (ENOTSUP); nor is fallocate() with a mode
    other than 0.

Open files at a cut: the processes that held them died with the power. Every fd opened
on the mount before a cut answers EIO to read, write, fsync, ftruncate and readdir
afterwards; closing it is fine. (fstat, fchmod, fchown and futimens still act: the
kernel sends them by the inode's name, not by the fd.) Open the files again after the
cut. For the same reason, fchmod, fchown and futimens of an open file whose last name
was removed fail with ESTALE here (read, write, ftruncate and fsync of it work).

The random mode (`cut` with a seed) explores crash states beyond the strict one. Each
change not yet durable survives independently with probability `survive`, seeded:
  - names: the pending changes are visited in the order they were made; each commits
    with probability `survive`, unless an earlier pending change to one of its
    directories was dropped (then it is dropped too, keeping each directory's listing
    a prefix of its history, and a rename between directories stays atomic);
  - data: each dirty 4 KiB page of a file (written or truncated since its last fsync)
    gets its new bytes with probability `survive`; independently the file's size is its
    new size with probability `survive`, else its durable size. A file can thus come
    back with zeros where data was appended, or with part of an overwrite: as ext4 can
    in data=writeback mode, and harsher than data=ordered.
With no seed the cut is strict: nothing that was not made durable survives.

Pre-existing contents of the backing folder at start are taken as durable.

Control channel: the fd given by --control-fd is one end of a Unix socketpair. Each
request is one JSON line, each answer one JSON line ({"ok": true, ...} or
{"ok": false, "error": "..."}):
  {"op": "ping"}
  {"op": "cut"}                                  strict cut
  {"op": "cut", "seed": 7, "survive": 0.5}       random-subset cut
  {"op": "sync"}                                 make everything durable now
  {"op": "state"}                                counts of what a cut would lose
When the other end closes, the filesystem unmounts itself and the process exits, so a
test runner that dies does not leave the mount behind.

Kernel caching is turned off where it could show stale state after a cut: entry,
negative and attribute timeouts are 0, there is no writeback cache, and each open
drops the file's cached pages.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import logging
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # never libfuse 2, when both are there

import mfusepy  # reads the variable above when imported

FILE, DIR, LINK, OTHER = "file", "dir", "symlink", "other"
EVERYTHING = 1 << 62  # end of a dirty range that runs to the end of the file
PAGE = 4096
CHUNK = 1 << 20
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2

Effect = tuple[int, str, int | None]  # (directory id, name, inode id or None for gone)


@dataclass
class Attrs:
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    rdev: int = 0

    @classmethod
    def of(cls, st: os.stat_result) -> Attrs:
        return cls(st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, st.st_rdev)


@dataclass
class Node:
    """An inode: its durable attributes, and for a directory its durable listing, for a
    symlink its target, for a file the ranges written since its last fsync."""

    id: int
    kind: str
    attrs: Attrs
    listing: dict[str, int] = field(default_factory=dict)
    target: str = ""
    dirty: list[tuple[int, int]] = field(default_factory=list)

    def touch(self, start: int, end: int) -> None:
        self.dirty.append((start, end))
        if len(self.dirty) > 256:
            self.dirty = [(min(a for a, _ in self.dirty), max(b for _, b in self.dirty))]


@dataclass
class Change:
    """One change of the names: applied to the durable listings once every directory it
    touches was fsynced after it, and every earlier change to those directories was."""

    seq: int
    dirs: tuple[int, ...]
    effects: list[Effect]


@dataclass
class Handle:
    fd: int
    node: int
    readable: bool
    is_dir: bool = False


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return LINK
    return OTHER


def merged(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The ranges sorted, joined where they touch, and clipped to `size`."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        end = min(end, size)
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def copy_range(src: int, dst: int, start: int, end: int) -> None:
    while start < end:
        chunk = os.pread(src, min(CHUNK, end - start), start)
        if not chunk:
            return
        os.pwrite(dst, chunk, start)
        start += len(chunk)


def fail(code: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(code)


class PowercutFS(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: str, state: str) -> None:
        self.root = os.path.realpath(backing)
        self.state_dir = os.path.realpath(state)
        self.durable_dir = os.path.join(self.state_dir, "durable")
        os.makedirs(self.durable_dir, exist_ok=True)
        self._mutex = threading.RLock()
        self.nodes: dict[int, Node] = {}
        self.by_ino: dict[int, int] = {}  # backing inode number -> node id, live files only
        self.queues: dict[int, deque[Change]] = {}  # directory id -> its pending changes
        self.marks: dict[int, int] = {}  # directory id -> seq of the last change at its fsync
        self.seq = 0
        self.handles: dict[int, Handle] = {}
        self.next_fh = 1
        self.next_id = 1
        self.cuts = 0
        self.root_id = self._adopt()

    # -- the durable state ---------------------------------------------------------

    def _new_node(self, kind: str, st: os.stat_result, target: str = "") -> Node:
        node = Node(self.next_id, kind, Attrs.of(st), target=target)
        self.next_id += 1
        self.nodes[node.id] = node
        self.by_ino[st.st_ino] = node.id
        return node

    def _durable_path(self, node_id: int) -> str:
        return os.path.join(self.durable_dir, str(node_id))

    def _adopt(self) -> int:
        """Take what the backing folder holds now as durable; the root's node id."""
        root = self._new_node(DIR, os.lstat(self.root))
        stack = [(self.root, root)]
        while stack:
            path, parent = stack.pop()
            with os.scandir(path) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    known = self.by_ino.get(st.st_ino)
                    if known is not None and st.st_nlink > 1:  # another name of a file
                        parent.listing[entry.name] = known
                        continue
                    kind = kind_of(st.st_mode)
                    target = os.readlink(entry.path) if kind == LINK else ""
                    node = self._new_node(kind, st, target)
                    parent.listing[entry.name] = node.id
                    if kind == FILE:
                        shutil.copyfile(entry.path, self._durable_path(node.id))
                    elif kind == DIR:
                        stack.append((entry.path, node))
        return root.id

    def _record(self, effects: list[Effect]) -> None:
        self.seq += 1
        dirs = tuple(dict.fromkeys(d for d, _, _ in effects))
        change = Change(self.seq, dirs, effects)
        for d in dirs:
            self.queues.setdefault(d, deque()).append(change)

    def _apply(self, change: Change) -> None:
        for d, name, node_id in change.effects:
            listing = self.nodes[d].listing
            if node_id is None:
                listing.pop(name, None)
            else:
                listing[name] = node_id

    def _commit(self, start: int) -> None:
        """Apply every change that the fsyncs so far make durable, from directory `start`."""
        work = [start]
        while work:
            d = work.pop()
            queue = self.queues.get(d)
            while queue:
                change = queue[0]
                if any(self.marks.get(x, 0) < change.seq for x in change.dirs):
                    break
                if any(self.queues[x][0] is not change for x in change.dirs):
                    break
                for x in change.dirs:
                    self.queues[x].popleft()
                    if x != d:
                        work.append(x)
                self._apply(change)

    def _pending(self) -> list[Change]:
        seen: dict[int, Change] = {}
        for queue in self.queues.values():
            for change in queue:
                seen[change.seq] = change
        return [seen[seq] for seq in sorted(seen)]

    def _save_data(self, node: Node, fd: int) -> None:
        st = os.fstat(fd)
        node.attrs = Attrs.of(st)
        ranges = merged(node.dirty, st.st_size)
        node.dirty = []
        out = os.open(self._durable_path(node.id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for start, end in ranges:
                copy_range(fd, out, start, end)
            os.ftruncate(out, st.st_size)
        finally:
            os.close(out)

    # -- paths, nodes, handles -------------------------------------------------------

    def _live(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def _node_of(self, st: os.stat_result) -> Node:
        node_id = self.by_ino.get(st.st_ino)
        if node_id is None or node_id not in self.nodes:
            return self._new_node(kind_of(st.st_mode), st)  # not made through the mount
        return self.nodes[node_id]

    def _node_at(self, live: str) -> Node:
        return self._node_of(os.lstat(live))

    def _parent(self, path: str) -> tuple[Node, str]:
        head, name = os.path.split(path)
        return self._node_at(self._live(head)), name

    def _handle(self, fh: int | None) -> Handle:
        handle = self.handles.get(fh) if fh is not None else None
        if handle is None:  # opened before a cut: its process died with the power
            raise fail(errno.EIO)
        return handle

    def _add_handle(self, fd: int, node: Node, readable: bool, is_dir: bool = False) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(fd, node.id, readable, is_dir)
        return fh

    def _own(self, live: str) -> None:
        """Give a new entry to the caller, when the filesystem runs as root for another."""
        uid, gid, _ = mfusepy.fuse_get_context()
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.lchown(live, uid, gid)

    # -- FUSE operations ---------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
            config.attr_timeout = 0.0
            config.use_ino = 1
            config.hard_remove = 1  # no .fuse_hidden renames: they would be name changes
            config.kernel_cache = 0
            config.auto_cache = 0
        if conn is not None:
            conn.want = (
                conn.want & ~(1 << 16) & 0xFFFFFFFF
            )  # FUSE_CAP_WRITEBACK_CACHE: writes must reach us

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            if fh is not None:  # fstat() of an open fd
                st = os.fstat(self._handle(fh).fd)
            else:
                st = os.lstat(self._live(path or "/"))
        return {
            "st_mode": st.st_mode,
            "st_ino": st.st_ino,
            "st_nlink": st.st_nlink,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_size": st.st_size,
            "st_rdev": st.st_rdev,
            "st_blocks": st.st_blocks,
            "st_blksize": st.st_blksize,
            "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    def readlink(self, path: str) -> str:
        with self._mutex:
            return os.readlink(self._live(path))

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.root)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree")
        return {key: getattr(sv, key) for key in (*keys, "f_favail", "f_namemax")}

    def _named(self, path: str | None) -> str:
        """The backing path of a chmod, chown or utimens: the kernel sends these by name
        (an fchmod too), so an open file whose last name is gone cannot be reached."""
        if path is None:
            raise fail(errno.ESTALE)
        return self._live(path)

    def chmod(self, path: str | None, mode: int) -> int:
        with self._mutex:
            os.chmod(self._named(path), stat.S_IMODE(mode))
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        with self._mutex:
            os.lchown(self._named(path), uid, gid)
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        with self._mutex:
            live = self._named(path)
            now = time.time_ns()
            if times is None:
                os.utime(live, ns=(now, now), follow_symlinks=False)
                return 0
            st = os.lstat(live)
            old = (st.st_atime_ns, st.st_mtime_ns)
            new = [
                old[i] if t == UTIME_OMIT else now if t == UTIME_NOW else t
                for i, t in enumerate(times)
            ]
            os.utime(live, ns=(new[0], new[1]), follow_symlinks=False)
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            live = self._live(path)
            os.mknod(live, mode, dev)
            self._own(live)
            st = os.lstat(live)
            node = self._new_node(kind_of(st.st_mode), st)
            self._record([(parent.id, name, node.id)])
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            live = self._live(path)
            os.mkdir(live, mode)
            self._own(live)
            node = self._new_node(DIR, os.lstat(live))
            self._record([(parent.id, name, node.id)])
        return 0

    def symlink(self, target: str, source: str) -> int:
        """`target` is the new link's path, `source` what it points to (mfusepy's names)."""
        with self._mutex:
            parent, name = self._parent(target)
            live = self._live(target)
            os.symlink(source, live)
            self._own(live)
            node = self._new_node(LINK, os.lstat(live), source)
            self._record([(parent.id, name, node.id)])
        return 0

    def link(self, target: str, source: str) -> int:
        """`target` is the new name, `source` the existing one (mfusepy's names)."""
        with self._mutex:
            parent, name = self._parent(target)
            node = self._node_at(self._live(source))
            os.link(self._live(source), self._live(target))
            self._record([(parent.id, name, node.id)])
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            os.unlink(self._live(path))
            self._record([(parent.id, name, None)])
        return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            os.rmdir(self._live(path))
            self._record([(parent.id, name, None)])
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        with self._mutex:
            src, old_name = self._parent(old)
            dst, new_name = self._parent(new)
            old_live, new_live = self._live(old), self._live(new)
            moved = self._node_at(old_live)
            try:
                other: Node | None = self._node_at(new_live)
            except FileNotFoundError:
                other = None
            if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (
                RENAME_NOREPLACE | RENAME_EXCHANGE
            ):
                raise fail(errno.EINVAL)
            if flags & RENAME_EXCHANGE:
                if other is None:
                    raise fail(errno.ENOENT)
                renameat2(old_live, new_live, RENAME_EXCHANGE)
                self._record([(src.id, old_name, other.id), (dst.id, new_name, moved.id)])
                return 0
            if flags & RENAME_NOREPLACE and other is not None:
                raise fail(errno.EEXIST)
            if other is not None and other.id == moved.id:
                return 0  # two names of one inode: rename does nothing
            os.rename(old_live, new_live)
            self._record([(src.id, old_name, None), (dst.id, new_name, moved.id)])
        return 0

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._mutex:
            if fh is not None:
                handle = self._handle(fh)
                os.ftruncate(handle.fd, length)
                node = self.nodes[handle.node]
            elif path is not None:
                live = self._live(path)
                node = self._node_at(live)
                os.truncate(live, length)
            else:
                raise fail(errno.EIO)
            node.touch(length, EVERYTHING)
        return 0

    def _open_fd(self, live: str, flags: int, mode: int = 0) -> tuple[int, bool]:
        """The backing fd (read-write where allowed, so fsync can read it back)."""
        flags &= ~(os.O_APPEND | os.O_DIRECT | os.O_NOCTTY | os.O_SYNC | os.O_DSYNC)
        access = flags & os.O_ACCMODE
        if access != os.O_RDWR:
            with contextlib.suppress(PermissionError):
                return os.open(live, (flags & ~os.O_ACCMODE) | os.O_RDWR, mode), True
        return os.open(live, flags, mode), access != os.O_WRONLY

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            live = self._live(path)
            node = self._node_at(live)
            fd, readable = self._open_fd(live, flags & ~(os.O_CREAT | os.O_EXCL))
            if flags & os.O_TRUNC:
                node.touch(0, EVERYTHING)
            return self._add_handle(fd, node, readable)

    def create(self, path: str, mode: int, flags: int) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            live = self._live(path)
            existed = os.path.lexists(live)
            fd, readable = self._open_fd(live, flags | os.O_CREAT, mode)
            if existed:
                node = self._node_of(os.fstat(fd))
                if flags & os.O_TRUNC:
                    node.touch(0, EVERYTHING)
            else:
                self._own(live)
                node = self._new_node(FILE, os.fstat(fd))
                self._record([(parent.id, name, node.id)])
            return self._add_handle(fd, node, readable)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            return os.pread(self._handle(fh).fd, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            handle = self._handle(fh)
            written = os.pwrite(handle.fd, data, offset)
            self.nodes[handle.node].touch(offset, offset + written)
            return written

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:
            raise fail(errno.EOPNOTSUPP)
        with self._mutex:
            handle = self._handle(fh)
            os.posix_fallocate(handle.fd, offset, size)
            self.nodes[handle.node].touch(offset, offset + size)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def release(self, path: str | None, fh: int) -> int:
        with self._mutex:
            handle = self.handles.pop(fh, None)
            if handle is not None:
                os.close(handle.fd)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            handle = self._handle(fh)
            node = self.nodes[handle.node]
            if handle.readable:
                self._save_data(node, handle.fd)
            else:
                fd = os.open(f"/proc/self/fd/{handle.fd}", os.O_RDONLY)
                try:
                    self._save_data(node, fd)
                finally:
                    os.close(fd)
        return 0

    def opendir(self, path: str) -> int:
        with self._mutex:
            live = self._live(path)
            fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
            return self._add_handle(fd, self._node_of(os.fstat(fd)), True, is_dir=True)

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        with self._mutex:
            fd = self._handle(fh).fd
            out = [(".", {"st_mode": stat.S_IFDIR}, 0), ("..", {"st_mode": stat.S_IFDIR}, 0)]
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        mode = stat.S_IFLNK
                    elif entry.is_dir(follow_symlinks=False):
                        mode = stat.S_IFDIR
                    elif entry.is_file(follow_symlinks=False):
                        mode = stat.S_IFREG
                    else:
                        mode = stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
                    out.append((entry.name, {"st_mode": mode, "st_ino": entry.inode()}, 0))
            return out

    def releasedir(self, path: str | None, fh: int) -> int:
        return self.release(path, fh)

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            handle = self._handle(fh)
            st = os.fstat(handle.fd)
            node = self._node_of(st)
            node.attrs = Attrs.of(st)
            self.marks[node.id] = self.seq
            self._commit(node.id)
        return 0

    # -- the control channel's verbs -------------------------------------------------------

    def state(self) -> dict[str, int]:
        with self._mutex:
            return {
                "pending_changes": len(self._pending()),
                "dirty_files": sum(1 for node in self.nodes.values() if node.dirty),
                "open_files": len(self.handles),
                "cuts": self.cuts,
            }

    def sync(self) -> None:
        """Everything durable now, as after a clean shutdown."""
        with self._mutex:
            for change in self._pending():
                self._apply(change)
            self.queues.clear()
            self.marks = dict.fromkeys(self.nodes, self.seq)
            for node_id, source in self._sources().items():
                if self.nodes[node_id].dirty:
                    fd = os.open(source, os.O_RDONLY)
                    try:
                        self._save_data(self.nodes[node_id], fd)
                    finally:
                        os.close(fd)

    def _sources(self) -> dict[int, str]:
        """A path to read each live file from: an open fd of it, or one of its names."""
        sources: dict[int, str] = {}
        for handle in self.handles.values():
            if not handle.is_dir:
                sources.setdefault(handle.node, f"/proc/self/fd/{handle.fd}")
        for top, dirs, files in os.walk(self.root):
            for name in files + dirs:
                live = os.path.join(top, name)
                st = os.lstat(live)
                node_id = self.by_ino.get(st.st_ino)
                if stat.S_ISREG(st.st_mode) and node_id in self.nodes:
                    sources.setdefault(node_id, live)
        return sources

    def cut(self, seed: int | None = None, survive: float = 0.5) -> dict[str, int]:
        """Lose everything not durable (or, with a seed, a random part of it), then rebuild
        the backing folder from what survived."""
        with self._mutex:
            started = time.monotonic()
            pending = self._pending()
            if seed is not None:
                rng = random.Random(seed)
                self._survive_data(rng, survive)
                self._survive_names(rng, survive, pending)
            for handle in self.handles.values():
                os.close(handle.fd)
            self.handles.clear()
            self.queues.clear()
            self.marks.clear()
            self._rebuild()
            self.cuts += 1
            return {
                "lost_changes": len(pending),
                "rebuild_ms": round((time.monotonic() - started) * 1000),
            }

    def _survive_data(self, rng: random.Random, survive: float) -> None:
        for node_id, source in sorted(self._sources().items()):
            node = self.nodes[node_id]
            if not node.dirty:
                continue
            fd = os.open(source, os.O_RDONLY)
            out = os.open(self._durable_path(node_id), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                old_size = os.fstat(out).st_size
                for start, end in merged(node.dirty, size):
                    for page in range(start - start % PAGE, end, PAGE):
                        if rng.random() < survive:
                            copy_range(fd, out, max(page, start), min(page + PAGE, end))
                os.ftruncate(out, size if rng.random() < survive else old_size)
            finally:
                os.close(fd)
                os.close(out)
            node.dirty = []

    def _survive_names(self, rng: random.Random, survive: float, pending: list[Change]) -> None:
        held: set[int] = set()
        for change in pending:
            if held.intersection(change.dirs) or rng.random() >= survive:
                held.update(change.dirs)
            else:
                self._apply(change)

    def _rebuild(self) -> None:
        for entry in os.listdir(self.root):
            live = os.path.join(self.root, entry)
            if os.path.isdir(live) and not os.path.islink(live):
                shutil.rmtree(live)
            else:
                os.unlink(live)
        self.by_ino = {}
        made: dict[int, str] = {}
        root = self.nodes[self.root_id]
        self.by_ino[os.lstat(self.root).st_ino] = root.id
        self._build(root, self.root, made)
        self._restore(root, self.root)
        for node_id in list(self.nodes):
            if node_id not in made and node_id != self.root_id:
                del self.nodes[node_id]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._durable_path(node_id))

    def _build(self, directory: Node, path: str, made: dict[int, str]) -> None:
        for name, node_id in directory.listing.items():
            node = self.nodes[node_id]
            live = os.path.join(path, name)
            if node.kind == DIR:
                if node_id in made:  # cannot happen in this model: a directory has one name
                    continue
                os.mkdir(live, 0o700)
                made[node_id] = live
                self._build(node, live, made)  # records and restores the directory itself
                continue
            if node.kind == FILE and node_id in made:
                os.link(made[node_id], live)
                continue
            if node.kind == FILE:
                durable = self._durable_path(node_id)
                if os.path.exists(durable):
                    shutil.copyfile(durable, live)
                else:
                    os.close(os.open(live, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            elif node.kind == LINK:
                os.symlink(node.target, live)
            else:
                os.mknod(live, node.attrs.mode, node.attrs.rdev)
            made[node_id] = live
            node.dirty = []
            self.by_ino[os.lstat(live).st_ino] = node_id
            self._restore(node, live)
        # the directory's own attributes go last: adding entries changed its mtime
        if directory.kind == DIR and path != self.root:
            self.by_ino[os.lstat(path).st_ino] = directory.id
            self._restore(directory, path)

    def _restore(self, node: Node, live: str) -> None:
        a = node.attrs
        if os.geteuid() == 0:
            os.lchown(live, a.uid, a.gid)
        if node.kind != LINK:
            os.chmod(live, stat.S_IMODE(a.mode))
        os.utime(live, ns=(a.atime_ns, a.mtime_ns), follow_symlinks=False)


def renameat2(old: str, new: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class FUSE(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, passing on what its libfuse 3 wrappers lose: rename's flags
    (dropping RENAME_NOREPLACE would turn a no-replace rename into a replacing one), the
    open file an ftruncate comes through (without it, it would act on a path, which an
    unlinked file has not, and a stale fd would not fail), and utimens' UTIME_NOW and
    UTIME_OMIT as they are."""

    def _path(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        result: int = self.operations.rename(self._path(old), self._path(new), flags)
        return result

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = int(fip.contents.fh) if fip else None
        result: int = self.operations.truncate(self._path(path), length, fh)
        return result

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        def ns(spec: Any) -> int:
            nsec: int = spec.tv_nsec
            return nsec if nsec in (UTIME_NOW, UTIME_OMIT) else spec.tv_sec * 10**9 + nsec

        times = (ns(buf.contents.actime), ns(buf.contents.modtime)) if buf else None
        result: int = self.operations.utimens(self._path(path), times)
        return result


def serve_control(fs: PowercutFS, sock: socket.socket, mountpoint: str) -> None:
    """Answer the control channel's requests; unmount when its other end goes away."""
    with sock, sock.makefile("rwb") as stream:
        for line in stream:
            try:
                request = json.loads(line)
                verb = request.get("op")
                if verb == "ping":
                    answer: dict[str, Any] = {"ok": True, "pid": os.getpid()}
                elif verb == "cut":
                    seed = request.get("seed")
                    survive = float(request.get("survive", 0.5))
                    answer = {"ok": True, **fs.cut(seed, survive)}
                elif verb == "sync":
                    fs.sync()
                    answer = {"ok": True}
                elif verb == "state":
                    answer = {"ok": True, **fs.state()}
                else:
                    answer = {"ok": False, "error": f"unknown op {verb!r}"}
            except Exception as exc:  # the channel must answer, whatever went wrong
                logging.exception("control request failed")
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
    subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backing", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("mountpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    os.umask(0)  # the kernel applied the caller's umask already
    fs = PowercutFS(args.backing, args.state)
    control = socket.socket(fileno=args.control_fd)
    thread = threading.Thread(
        target=serve_control, args=(fs, control, args.mountpoint), daemon=True
    )
    thread.start()
    options: dict[str, Any] = {"fsname": "powercut", "subtype": "powercut"}
    options["default_permissions"] = True
    if os.geteuid() == 0:
        options["allow_other"] = True
    FUSE(fs, args.mountpoint, foreground=True, nothreads=True, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
