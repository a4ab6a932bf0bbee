"""Power cuts in-process: every state a cut could leave, from a real run's changes on disk.

A `Recorder` (tests/support/fs_recorder.py, re-exported here) records every change and
fsync reactor makes through `reactor.disk.fsops` during a real run, what the test's
stand-in engine writes, and each answer reactor gives. A `Model` replays those ops on
top of the run folders as they were when the recording began (copied to a base folder
first; all of it durable), by the power-cut model that tests/support/powercut_fs.py's
docstring states ("The model, exactly"), with the same semantics:

- inodes have ids that survive renames; each folder has a listing of names to ids;
- a folder's changes (create, mkdir, symlink, unlink, rmdir, rename) become durable only
  at an fsync of that folder, in the order they were made (the durable listing is always
  the real listing after some prefix of its changes);
- a rename between two folders is one atomic change of both, durable only once both
  were fsynced after it;
- a file's data becomes durable at an fsync of the file (its whole content then); a file
  never fsynced comes back empty if its name survives;
- only what is reachable from the root through durable listings exists after a cut (a
  folder's own name must be durable for its contents to be there);
- an unlink of a durable name that is lost brings the file back with its durable content.

`crash_states` cuts after each op in turn: the strict state (only what was fsynced), and
random states that keep part of the rest, seeded: each pending name change survives with
probability `survive`, visited in order, and a dropped one holds back every later change
of its folders (so listings stay prefixes, and renames between folders stay atomic); each
file whose data is not durable comes back with its new content or its durable one (whole
files: the records and outputs here are small). A rename can thus survive while its
file's data does not. `materialize` writes a state out as real folders, files and links.

With `honour_fsync=False` the model treats no fsync as making anything durable (as if
durability were off): the self-test of the checks built on this (a checker that cannot
fail proves nothing).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tests.support.fs_recorder import (
    CREATE,
    FSYNC,
    MKDIR,
    PUT,
    RENAME,
    RMDIR,
    SYMLINK,
    UNLINK,
    WRITE,
    Answer,
    Op,
    Recorder,
)

__all__ = [
    "Answer",
    "CrashState",
    "Entry",
    "Model",
    "Op",
    "Recorder",
    "crash_states",
    "materialize",
    "on_disk",
]

DIR, FILE, LINK = "dir", "file", "symlink"
STATE_FOLDER = ".reactor"  # reactor's own records: mode 0700, as reactor makes them

# A file's content: bytes, or a file of the base copy holding it (inputs are not read
# into memory; reactor never writes to a file it did not create).
Content = bytes | Path


@dataclass(slots=True)
class _Node:
    """An inode: a folder, a file or a link, with an id that survives renames."""

    id: int
    kind: str
    listing: dict[str, int] = field(default_factory=dict)  # a folder's names now
    durable_listing: dict[str, int] = field(default_factory=dict)  # what a cut keeps
    content: Content = b""  # a file's bytes now
    durable: Content | None = None  # a file's bytes at its last fsync (None: empty)
    dirty: bool = False  # a file written since its last fsync
    target: str = ""  # a link's


@dataclass(slots=True)
class _Change:
    """One change of names: (folder id, name, node id or None for removed) each."""

    seq: int
    dirs: tuple[int, ...]
    effects: list[tuple[int, str, int | None]]


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a crash state: a folder, a file with its content, or a link."""

    path: str
    kind: str
    content: Content = b""
    target: str = ""


@dataclass(frozen=True, slots=True)
class CrashState:
    """What the disk holds after a power cut once the first `cut` ops were made; `seed`
    None for the strict state (only what was fsynced)."""

    cut: int
    seed: int | None
    survive: float  # a random state's chance for each pending change and dirty file
    entries: tuple[Entry, ...]

    @property
    def key(self) -> str:
        """The same for two states whose disks are the same (to check each once)."""
        digest = hashlib.sha256()
        for entry in self.entries:
            digest.update(f"{entry.path}\0{entry.kind}\0{entry.target}\0".encode())
            content = entry.content
            data = b"\1" + os.fsencode(content) if isinstance(content, Path) else b"\2" + content
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()


class Model:
    """The filesystem under the recording: what is there now, and what a cut keeps."""

    def __init__(self, base: Path, *, honour_fsync: bool = True) -> None:
        self.honour_fsync = honour_fsync
        self.nodes: dict[int, _Node] = {}
        self.queues: dict[int, deque[_Change]] = {}  # folder id -> its pending changes
        self.marks: dict[int, int] = {}  # folder id -> last change seq at its last fsync
        self.seq = 0
        self.root = self._adopt(base)

    # ------------------------------------------------------------ the base

    def _new(self, kind: str, **fields: Any) -> _Node:
        node = _Node(len(self.nodes) + 1, kind, **fields)
        self.nodes[node.id] = node
        return node

    def _adopt(self, base: Path) -> int:
        """Everything in `base` is durable: names, contents, links."""
        root = self._new(DIR)
        stack = [(base, root)]
        while stack:
            path, folder = stack.pop()
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                if entry.is_symlink():
                    node = self._new(LINK, target=str(Path(entry.path).readlink()))
                elif entry.is_dir():
                    node = self._new(DIR)
                    stack.append((Path(entry.path), node))
                else:
                    node = self._new(FILE, content=Path(entry.path), durable=Path(entry.path))
                folder.listing[entry.name] = node.id
                folder.durable_listing[entry.name] = node.id
        return root.id

    # ------------------------------------------------------------ replaying

    def _lookup(self, path: str) -> tuple[_Node, str]:
        """The folder holding `path` now, and the last name."""
        parts = PurePosixPath(path).parts
        if not parts:
            msg = "the root itself has no folder holding it"
            raise AssertionError(msg)
        folder = self.nodes[self.root]
        for part in parts[:-1]:
            folder = self.nodes[folder.listing[part]]
            if folder.kind != DIR:
                msg = f"{path}: {part} is not a folder in the model"
                raise AssertionError(msg)
        return folder, parts[-1]

    def node_at(self, path: str) -> _Node:
        if not PurePosixPath(path).parts:
            return self.nodes[self.root]
        folder, name = self._lookup(path)
        return self.nodes[folder.listing[name]]

    def _record(self, effects: list[tuple[int, str, int | None]]) -> None:
        for folder_id, name, node_id in effects:
            listing = self.nodes[folder_id].listing
            if node_id is None:
                del listing[name]
            else:
                listing[name] = node_id
        self.seq += 1
        dirs = tuple(dict.fromkeys(folder_id for folder_id, _, _ in effects))
        change = _Change(self.seq, dirs, effects)
        for folder_id in dirs:
            self.queues.setdefault(folder_id, deque()).append(change)

    def _name_new(self, path: str, node: _Node) -> None:
        folder, name = self._lookup(path)
        if name in folder.listing:
            msg = f"{path} exists already in the model"
            raise AssertionError(msg)
        self._record([(folder.id, name, node.id)])

    def apply(self, op: Op) -> None:
        """Replay one op on the filesystem as it is now."""
        kind = op.kind
        if kind == MKDIR:
            self._name_new(op.path, self._new(DIR))
        elif kind == SYMLINK:
            self._name_new(op.path, self._new(LINK, target=op.other))
        elif kind == CREATE:
            self._name_new(op.path, self._new(FILE))
        elif kind == WRITE:
            node = self.node_at(op.path)
            node.content = _read(node.content) + op.data
            node.dirty = True
        elif kind == PUT:
            folder, name = self._lookup(op.path)
            if name in folder.listing:
                node = self.nodes[folder.listing[name]]
                node.content, node.dirty = op.data, True
            else:
                self._name_new(op.path, self._new(FILE, content=op.data, dirty=True))
        elif kind == RENAME:
            src, old = self._lookup(op.path)
            dst, new = self._lookup(op.other)
            moved = src.listing[old]
            if dst.listing.get(new) == moved:
                return  # two names of one inode: rename does nothing
            self._record([(src.id, old, None), (dst.id, new, moved)])
        elif kind in (UNLINK, RMDIR):
            folder, name = self._lookup(op.path)
            self._record([(folder.id, name, None)])
        elif kind == FSYNC:
            if self.honour_fsync:
                self._fsync(self.node_at(op.path))
        else:
            msg = f"unknown op {kind!r}"
            raise AssertionError(msg)

    def _fsync(self, node: _Node) -> None:
        if node.kind == FILE:
            node.durable, node.dirty = node.content, False
        elif node.kind == DIR:
            self.marks[node.id] = self.seq
            self._commit(node.id)

    def _commit(self, start: int) -> None:
        """Apply every change the fsyncs so far make durable (powercut_fs's `_commit`)."""
        work = [start]
        while work:
            folder_id = work.pop()
            queue = self.queues.get(folder_id)
            while queue:
                change = queue[0]
                if any(self.marks.get(d, 0) < change.seq for d in change.dirs):
                    break
                if any(self.queues[d][0] is not change for d in change.dirs):
                    break
                for d in change.dirs:
                    self.queues[d].popleft()
                    if d != folder_id:
                        work.append(d)
                _apply(change, self._durable_listings)

    def _durable_listings(self, folder_id: int) -> dict[str, int]:
        return self.nodes[folder_id].durable_listing

    # ------------------------------------------------------------ cutting

    def pending(self) -> list[_Change]:
        """Name changes not durable yet, in the order they were made."""
        seen = {change.seq: change for queue in self.queues.values() for change in queue}
        return [seen[seq] for seq in sorted(seen)]

    def dirty(self) -> list[_Node]:
        """Files whose content now is not their durable content."""
        return [node for node in self.nodes.values() if node.dirty]

    def cut(
        self, cut: int, rng: random.Random | None = None, seed: int | None = None
    ) -> CrashState:
        """The disk after a power cut now: strict without `rng`, else a random part of
        what is not durable kept as well."""
        overlay: dict[int, dict[str, int]] = {}
        data: dict[int, Content | None] = {}
        survive = 0.0
        if rng is not None:
            survive = rng.uniform(0.1, 0.9)
            for node in self.dirty():
                if rng.random() < survive:
                    data[node.id] = node.content
            held: set[int] = set()
            for change in self.pending():
                if held.intersection(change.dirs) or rng.random() >= survive:
                    held.update(change.dirs)
                else:
                    _apply(change, lambda folder_id: self._overlaid(overlay, folder_id))
        entries = self._reachable(overlay, data)
        return CrashState(cut, seed, round(survive, 3), entries)

    def _overlaid(self, overlay: dict[int, dict[str, int]], folder_id: int) -> dict[str, int]:
        if folder_id not in overlay:
            overlay[folder_id] = dict(self.nodes[folder_id].durable_listing)
        return overlay[folder_id]

    def _reachable(
        self, overlay: Mapping[int, dict[str, int]], data: Mapping[int, Content | None]
    ) -> tuple[Entry, ...]:
        """What exists after the cut: only what durable listings reach from the root."""
        return self._walk(
            lambda folder: overlay.get(folder.id, folder.durable_listing),
            lambda file: data.get(file.id, file.durable),
        )

    def now(self) -> tuple[Entry, ...]:
        """The filesystem as it is now, no cut (to compare with the real one)."""
        return self._walk(lambda folder: folder.listing, lambda file: _read(file.content))

    def _walk(
        self,
        listing_of: Callable[[_Node], Mapping[str, int]],
        content_of: Callable[[_Node], Content | None],
    ) -> tuple[Entry, ...]:
        entries: list[Entry] = []
        seen = {self.root}
        stack = [("", self.nodes[self.root])]
        while stack:
            path, folder = stack.pop()
            for name, node_id in listing_of(folder).items():
                node = self.nodes[node_id]
                child = f"{path}/{name}" if path else name
                if node.kind == LINK:
                    entries.append(Entry(child, LINK, target=node.target))
                elif node.kind == FILE:
                    content = content_of(node)
                    entries.append(Entry(child, FILE, b"" if content is None else content))
                elif node_id not in seen:  # a folder has one name, never two after a cut
                    seen.add(node_id)
                    entries.append(Entry(child, DIR))
                    stack.append((child, node))
        return tuple(sorted(entries, key=lambda entry: entry.path))


def _apply(change: _Change, listing_of: Any) -> None:
    for folder_id, name, node_id in change.effects:
        listing: dict[str, int] = listing_of(folder_id)
        if node_id is None:
            listing.pop(name, None)
        else:
            listing[name] = node_id


def _read(content: Content | None) -> bytes:
    if content is None:
        return b""
    return content.read_bytes() if isinstance(content, Path) else content


def crash_states(
    base: Path,
    ops: Sequence[Op],
    seeds: Iterable[int] = (),
    *,
    strict: bool = True,
    honour_fsync: bool = True,
    cuts: Iterable[int] | None = None,
) -> Iterator[CrashState]:
    """For each cut point (after 0..len(ops) ops, or those in `cuts`): the strict state
    (unless `strict` is False), then one random state per seed."""
    model = Model(base, honour_fsync=honour_fsync)
    wanted = set(range(len(ops) + 1) if cuts is None else cuts)
    seeds = list(seeds)
    for cut in range(len(ops) + 1):
        if cut:
            model.apply(ops[cut - 1])
        if cut not in wanted:
            continue
        if strict:
            yield model.cut(cut)
        for seed in seeds:
            yield model.cut(cut, random.Random(f"{seed}/{cut}"), seed)


def on_disk(root: Path) -> tuple[Entry, ...]:
    """The real folder `root` as entries (to compare with `Model.now`)."""
    entries: list[Entry] = []
    for path in root.rglob("*"):  # never into a link to a folder (rglob does not follow)
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries.append(Entry(relative, LINK, target=str(path.readlink())))
        elif path.is_dir():
            entries.append(Entry(relative, DIR))
        else:
            entries.append(Entry(relative, FILE, path.read_bytes()))
    return tuple(sorted(entries, key=lambda entry: entry.path))


def materialize(state: CrashState, target: Path) -> None:
    """Make `target` hold exactly `state`, as real folders (0o755; reactor's state folder
    and its subfolders 0o700), files (fresh mtimes) and symbolic links.

    What `target` holds already (an earlier state, and whatever ran on it) is kept where
    it is the same, and the rest removed: making inodes is what costs most on a slow
    disk, and most of one state's folders are the next one's. A file whose content is
    the base's (the `.pod5` inputs, which nothing writes to) is a hard link to the base
    copy, for the same reason. So what runs on a state must never write into a file it
    did not create: reactor never does, and the tests' engines write fresh files."""
    target.mkdir(parents=True, exist_ok=True)
    kept = _keep_what_matches(target, {entry.path: entry for entry in state.entries})
    for entry in state.entries:
        if entry.path in kept:
            continue
        path = target / entry.path
        if entry.kind == DIR:
            path.mkdir()
            path.chmod(_mode(entry))
        elif entry.kind == LINK:
            path.symlink_to(entry.target)
        elif isinstance(entry.content, Path):
            path.hardlink_to(entry.content)
        else:
            path.write_bytes(entry.content)
            path.chmod(_mode(entry))


def _mode(entry: Entry) -> int:
    private = STATE_FOLDER in PurePosixPath(entry.path).parts
    if entry.kind == DIR:
        return 0o700 if private else 0o755
    return 0o600 if private else 0o644


def _keep_what_matches(target: Path, wanted: Mapping[str, Entry]) -> set[str]:
    """Remove from `target` what `wanted` does not hold as it is; the paths kept."""
    kept: set[str] = set()
    folders = [""]
    while folders:
        folder = folders.pop()
        with os.scandir(target / folder) as scan:
            found = list(scan)
        for there in found:
            path = f"{folder}/{there.name}" if folder else there.name
            entry = wanted.get(path)
            if entry is not None and _same(there, entry):
                kept.add(path)
                if entry.kind == DIR:
                    folders.append(path)
            elif there.is_dir(follow_symlinks=False):
                shutil.rmtree(there.path)
            else:
                Path(there.path).unlink()
    return kept


def _same(there: os.DirEntry[str], entry: Entry) -> bool:
    """Whether `there` is `entry` already; a folder's or file's mode and a kept file's
    mtime are set as a new one's would be."""
    info = there.stat(follow_symlinks=False)
    path = Path(there.path)
    if entry.kind == LINK:
        return stat.S_ISLNK(info.st_mode) and str(path.readlink()) == entry.target
    if entry.kind == DIR:
        same = stat.S_ISDIR(info.st_mode)
    elif isinstance(entry.content, Path):
        return stat.S_ISREG(info.st_mode) and info.st_ino == entry.content.stat().st_ino
    else:
        same = (
            stat.S_ISREG(info.st_mode)
            and info.st_nlink == 1
            and info.st_size == len(entry.content)
            and path.read_bytes() == entry.content
        )
        if same:
            os.utime(path)
    if same and stat.S_IMODE(info.st_mode) != _mode(entry):
        path.chmod(_mode(entry))
    return same
