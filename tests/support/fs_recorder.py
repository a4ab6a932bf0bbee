"""Recording what reactor changes on disk, as it happens: the observer of `fsops`.

reactor makes each change to the run folders through one thin layer
(`reactor.disk.fsops`), which tells an observer about every name made, moved or removed,
every byte written and every fsync. A `Recorder` installs one for a block and writes each
call down as an `Op` on paths relative to the run's root (descriptors are resolved to
paths when the call happens: a folder renamed since it was opened is named where it is).
What the test's stand-in engine does is added by hand (`engine_wrote`, `engine_linked`):
engines write with plain `open` and never fsync. The answers reactor gave go in beside
them (`answered`), so a crash state knows which answers had gone out before the cut.

The journal's steps run on the writer's thread and the engine's on the test's: each op
is added under a lock, in the order the calls returned.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from reactor.disk import fsops

# Op kinds: what reactor does through fsops, and what an engine does ("put": a file
# written whole, made if missing).
MKDIR, SYMLINK, CREATE, WRITE, RENAME, UNLINK, RMDIR, FSYNC, PUT = (
    "mkdir", "symlink", "create", "write", "rename", "unlink", "rmdir", "fsync", "put",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Op:
    """One change on disk: `path` relative to the recorded root; `other` is a rename's
    new path or a link's target; `data` the bytes a write appends (or a put holds)."""

    kind: str
    path: str
    other: str = ""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer reactor gave, after the first `after` ops were made."""

    after: int
    kind: str
    details: Mapping[str, Any]


class Recorder:
    """Records reactor's changes below `root` (and what the test says an engine wrote)
    for the block it is entered for; `root` is first copied to `base`, the durable state
    the recording starts from."""

    def __init__(self, root: Path, base: Path) -> None:
        self.root = root.resolve()
        self.base = base
        self.ops: list[Op] = []
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._previous: fsops.Observer | None = None

    def __enter__(self) -> Recorder:
        shutil.copytree(self.root, self.base, symlinks=True)
        self._previous = fsops.observe(self._observe)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        fsops.observe(self._previous)

    def engine_wrote(self, path: Path, data: bytes) -> None:
        """The stand-in engine wrote `data` as the whole of `path` (no fsync)."""
        self._add(Op(PUT, self._relative(path.parent.resolve() / path.name), data=data))

    def engine_linked(self, path: Path, target: str) -> None:
        """The stand-in engine made the symbolic link `path` to `target`."""
        self._add(Op(SYMLINK, self._relative(path.parent.resolve() / path.name), other=target))

    def answered(self, kind: str, details: Mapping[str, Any]) -> None:
        """reactor gave this answer now: every op so far happened before it."""
        with self._lock:
            self.answers.append(Answer(len(self.ops), kind, dict(details)))

    # ------------------------------------------------------------ observing

    def _add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def _observe(self, operation: str, args: tuple[Any, ...]) -> None:
        if operation in (MKDIR, UNLINK, RMDIR):
            dir_fd, name = args
            self._add(Op(operation, self._at(dir_fd, name)))
        elif operation == SYMLINK:
            dir_fd, name, target = args
            self._add(Op(SYMLINK, self._at(dir_fd, name), other=target))
        elif operation == CREATE:
            dir_fd, name, _fd = args
            self._add(Op(CREATE, self._at(dir_fd, name)))
        elif operation == WRITE:
            fd, data = args
            self._add(Op(WRITE, self._of(fd), data=bytes(data)))
        elif operation == RENAME:
            src_fd, src, dst_fd, dst = args
            self._add(Op(RENAME, self._at(src_fd, src), other=self._at(dst_fd, dst)))
        elif operation == FSYNC:
            (fd,) = args
            self._add(Op(FSYNC, self._of(fd)))
        else:
            msg = f"fsops reported an operation the recorder does not know: {operation!r}"
            raise AssertionError(msg)

    def _of(self, fd: int) -> str:
        """The path of an open descriptor now (a folder's or a file's)."""
        return self._relative(Path(f"/proc/self/fd/{fd}").readlink())

    def _at(self, dir_fd: int, name: str) -> str:
        folder = self._of(dir_fd)
        return f"{folder}/{name}" if folder else name

    def _relative(self, path: Path) -> str:
        """`path` (absolute) relative to the root: "" for the root itself."""
        if path != self.root and self.root not in path.parents:
            msg = f"a change outside the recorded root {self.root}: {path}"
            raise AssertionError(msg)
        relative = path.relative_to(self.root).as_posix()
        return "" if relative == "." else relative
