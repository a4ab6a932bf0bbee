"""What engines write, read as data: a job's outputs looked at and moved without trust.

An engine writes its job's `TMPOUTPUT_…/{pass,fail}/` as the same Unix user as reactor,
so it could put anything there: a link to INPUTDIR instead of `pass/`, links, devices or
FIFOs instead of outputs, names with newlines, a hard link to someone else's file, a
hundred thousand empty files. Nothing it writes may make reactor move, read or
overwrite anything outside the job's own folders (docs/journal.md, "Trust").

So every folder here is opened through a descriptor of its parent with `O_NOFOLLOW`
(a link where a folder should be is refused, and swapping a folder for a link after it
was opened changes nothing: the descriptor still names the folder that was looked at),
every entry is looked at with `lstat` through that descriptor, and moved with `renameat`
from it, never through a path. `inspect` says whether a job's outputs may be merged at
all; `make_durable` fsyncs them before the decision to merge them is recorded; `move`
merges them, looking at each entry again just before it moves it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from reactor.core.names import RESULT_FOLDERS
from reactor.disk import fsops
from reactor.disk.durable import Sync
from reactor.disk.state_dir import open_folder

# More outputs than this in one job is not basecalling: dorado writes one file per batch,
# a file per read barcode at most. The limit keeps a merge (and its log line) bounded.
MAX_OUTPUTS = 10_000
NAME_MAX_BYTES = 255  # one path component, on every Linux filesystem reactor runs on
# Opening an output to fsync it: never through a link, never blocking on a FIFO.
_OUTPUT_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class Refused(Exception):
    """The job's outputs break the rules: nothing of them is merged. Says what was found."""


@dataclass(frozen=True, slots=True)
class Outputs:
    """A job's outputs as inspected: (result folder, entry name), in merge order."""

    entries: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Moved:
    """What a merge moved, and what it left with the job (and why)."""

    moved: int = 0
    kept: list[str] = field(default_factory=list)  # "pass/<entry>: <why>"


def _name_problem(name: str, tag: str) -> str | None:
    if any(not ch.isprintable() for ch in name):
        return "a name with control characters"
    if name.startswith("."):
        return "a hidden name"
    if len(os.fsencode(tag + name)) > NAME_MAX_BYTES:
        return f"a name too long to be merged (over {NAME_MAX_BYTES - len(tag)} bytes)"
    return None


def _entry_problem(folder_fd: int, name: str) -> str | None:
    """Why the entry `name` of a result folder is not an output that may be merged."""
    try:
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "gone"
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(info.st_mode):
        return "a folder"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a device, a FIFO or a socket)"
    if info.st_nlink != 1:
        return "a hard link to another file"
    return None


def inspect(output_dir_fd: int, folder: str, tag: str) -> Outputs:
    """Look at the outputs in `folder` (a job's output folder, in OUTPUTDIR) without
    following any link; raise Refused naming the first thing that breaks the rules. The
    folder itself must be there: a job that removed it has nothing to merge."""
    try:
        job_fd = open_folder(output_dir_fd, folder)
    except FileNotFoundError:
        msg = f"its output folder {folder} is gone"
        raise Refused(msg) from None
    except NotADirectoryError:
        msg = f"its output folder {folder} is a link or a file, not a folder"
        raise Refused(msg) from None
    entries: list[tuple[str, str]] = []
    try:
        for kind in RESULT_FOLDERS:
            try:
                kind_fd = open_folder(job_fd, kind)
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                msg = f"{folder}/{kind} is a link or a file, not a folder"
                raise Refused(msg) from None
            try:
                names = os.listdir(kind_fd)
                if len(entries) + len(names) > MAX_OUTPUTS:
                    msg = f"{folder} holds more than {MAX_OUTPUTS:,} outputs"
                    raise Refused(msg)
                for name in sorted(names):
                    problem = _name_problem(name, tag) or _entry_problem(kind_fd, name)
                    if problem is not None:
                        msg = f"{folder}/{kind}/{name!r} is {problem}"
                        raise Refused(msg)
                    entries.append((kind, name))
            finally:
                os.close(kind_fd)
    finally:
        os.close(job_fd)
    return Outputs(tuple(entries))


def make_durable(output_dir_fd: int, folder: str, outputs: Outputs, sync: Sync) -> None:
    """Hand the inspected outputs and their folders to `sync`, so that their contents and
    names are on stable storage at its barrier, before a DONE decision points at them:
    basecallers writing through stdout or htslib do not fsync. An entry that is no longer
    a regular file is left out (the merge keeps it with the job), so nothing an engine
    swaps in can make the barrier fail."""
    if not sync.durable:
        return
    try:
        job_fd = open_folder(output_dir_fd, folder)
    except (FileNotFoundError, NotADirectoryError):
        return  # the merge finds it gone too, and says so
    try:
        for kind in RESULT_FOLDERS:
            wanted = [name for k, name in outputs.entries if k == kind]
            if not wanted:
                continue
            try:
                kind_fd = open_folder(job_fd, kind)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in wanted:
                try:
                    fd = os.open(name, _OUTPUT_FLAGS, dir_fd=kind_fd)
                except OSError:
                    continue  # a link now, or gone: the merge will say so
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    sync.take(fd)
                else:
                    os.close(fd)
            sync.take(kind_fd)
    finally:
        os.close(job_fd)


def move(
    output_dir_fd: int,
    folder: str,
    outputs: Outputs,
    tag: str,
    after_each: Callable[[], None] | None = None,
    sync: Sync | None = None,
) -> Moved:
    """Move each inspected output into OUTPUTDIR's result folder of its kind, named
    `tag + name`, never over an existing name. An entry that changed since it was
    inspected (no longer a plain file), or whose name is taken, stays with the job.
    `after_each` is called after each move (the journal's crash points); the folders
    a move changed go to `sync` (a move between folders is durable once both are).

    An entry no longer in the job's folder was moved by an earlier try of this merge if
    its tagged name is in the results; otherwise it is gone (the engine removed it, or
    its whole folder, after reporting DONE): the others are moved, then OutputsGone says
    which are missing, so the job waits for a person instead of passing for merged."""
    moved = Moved()
    missing: list[str] = []
    job_fd = open_if_there(output_dir_fd, folder)
    try:
        for kind in RESULT_FOLDERS:
            wanted = [name for k, name in outputs.entries if k == kind]
            if not wanted:
                continue
            with contextlib.suppress(FileExistsError):
                fsops.mkdir(kind, dir_fd=output_dir_fd)
            source = None if job_fd is None else open_if_there(job_fd, kind)
            target = open_folder(output_dir_fd, kind)
            count = moved.moved
            try:
                for name in wanted:
                    why = None if source is None else _entry_problem(source, name)
                    if source is None or why == "gone":
                        if not _exists(target, tag + name):  # else: moved by an earlier try
                            missing.append(f"{kind}/{name}")
                        continue
                    if why is None and _exists(target, tag + name):
                        why = "its name is taken in the results"
                    if why is not None:
                        moved.kept.append(f"{kind}/{name}: {why}")
                        continue
                    fsops.rename(name, tag + name, src_dir_fd=source, dst_dir_fd=target)
                    moved.moved += 1
                    if after_each is not None:
                        after_each()
            finally:
                os.close(target)
                if source is not None and sync is not None and moved.moved > count:
                    sync.take(source)
                    sync.folder(output_dir_fd, kind)
                elif source is not None:
                    os.close(source)
    finally:
        if job_fd is not None:
            os.close(job_fd)
    if missing:
        raise OutputsGone(missing)
    return moved


def open_folders(parent_fd: int, path: str, sync: Sync | None = None) -> int:
    """A descriptor of the folder `path` ("fastq_pass/barcode01") below `parent_fd`, each
    part made if missing and opened without following a link. A folder a name was made
    in is fsynced at once (`sync.now`): what is renamed into the new folder next must not
    outlive it in a power cut (found by the crash states of MinKNOW's layout)."""
    fd = os.dup(parent_fd)
    try:
        for part in path.split("/"):
            try:
                fsops.mkdir(part, dir_fd=fd)
            except FileExistsError:
                made = False
            else:
                made = True
            child = open_folder(fd, part)
            if made and sync is not None:
                sync.now(fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def place(
    source_fd: int | None,
    output_dir_fd: int,
    entries: list[tuple[str, str]],
    after_each: Callable[[], None] | None = None,
    sync: Sync | None = None,
) -> Moved:
    """Move each (output folder, name) from the folder `source_fd` (None: it is gone)
    into that folder below OUTPUTDIR under the same name, never over an existing one.
    A name already in its output folder and no longer in the source was moved by an
    earlier try; one in neither is gone (OutputsGone, after the others moved)."""
    moved = Moved()
    missing: list[str] = []
    targets: dict[str, int] = {}
    try:
        for folder, name in entries:
            target = targets.get(folder)
            if target is None:
                target = targets[folder] = open_folders(output_dir_fd, folder, sync)
            why = None if source_fd is None else _entry_problem(source_fd, name)
            if source_fd is None or why == "gone":
                if not _exists(target, name):
                    missing.append(f"{folder}/{name}")
                continue
            if why is None and _exists(target, name):
                why = "its name is taken in the results"
            if why is not None:
                moved.kept.append(f"{folder}/{name}: {why}")
                continue
            fsops.rename(name, name, src_dir_fd=source_fd, dst_dir_fd=target)
            moved.moved += 1
            if after_each is not None:
                after_each()
        # Durable even when an earlier try did the moves (a crash before its barrier):
        # what follows a merge (the engine's outputs, the split folder removed) must
        # never reach the disk before them.
        if sync is not None and (moved.moved or entries):
            if source_fd is not None:
                sync.take(os.dup(source_fd))
            for fd in targets.values():
                sync.take(os.dup(fd))
    finally:
        for fd in targets.values():
            os.close(fd)
    if missing:
        raise OutputsGone(missing)
    return moved


def remove_entries(parent_fd: int, folder: str, entries: list[tuple[str, str]]) -> None:
    """Remove the plain files (result folder, name) of the job folder `folder`, never
    following a link; what is gone or not a plain file is left as it is."""
    job_fd = open_if_there(parent_fd, folder)
    if job_fd is None:
        return
    try:
        for kind in sorted({kind for kind, _ in entries}):
            kind_fd = open_if_there(job_fd, kind)
            if kind_fd is None:
                continue
            try:
                for name in [n for k, n in entries if k == kind]:
                    if _entry_problem(kind_fd, name) is None:
                        with contextlib.suppress(FileNotFoundError):
                            fsops.unlink(name, dir_fd=kind_fd)
            finally:
                os.close(kind_fd)
    finally:
        os.close(job_fd)


class OutputsGone(FileNotFoundError):
    """Outputs a merge was decided on are neither in the job's folder nor in the results."""

    LISTED = 5

    def __init__(self, missing: list[str]) -> None:
        listed = ", ".join(missing[: self.LISTED]) + (" …" if len(missing) > self.LISTED else "")
        message = (
            f"{len(missing)} of its outputs are gone before they were merged ({listed}); "
            "once they are put back, the merge goes on"
        )
        super().__init__(errno.ENOENT, message)
        self.missing = missing


def open_if_there(parent_fd: int, name: str) -> int | None:
    """A descriptor of the folder `name`, or None when it is gone."""
    try:
        return open_folder(parent_fd, name)
    except FileNotFoundError:
        return None


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def rename_folder(parent_fd: int, name: str, new_name: str) -> bool:
    """Rename the entry `name` (a job folder, or whatever an engine left under its
    name: a rename never follows a link) to `new_name`; False when it is gone."""
    try:
        fsops.rename(name, new_name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except FileNotFoundError:
        return False
    return True


def renamed(parent_fd: int, name: str, new_name: str) -> bool:
    """Whether `name` was renamed to `new_name` already: it is gone and `new_name` is
    there (a merge whose outputs were all moved before its folder was renamed)."""
    return not _exists(parent_fd, name) and _exists(parent_fd, new_name)


def remove_folder(parent_fd: int, name: str) -> None:
    """Remove the folder `name` and what it holds without following any link (a link
    left in its place is removed itself); nothing when it is gone."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(FileNotFoundError):
            fsops.unlink(name, dir_fd=parent_fd)
        return

    fsops.remove_tree(name, dir_fd=parent_fd)


def holds_anything(parent_fd: int, folder: str) -> bool:
    """Whether the job folder has any entry in its result folders (never following).
    A folder that cannot be read (an engine's chmod 000) may hold anything: True, so it
    is kept for a person rather than removed."""
    try:
        job_fd = open_folder(parent_fd, folder)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    try:
        for kind in RESULT_FOLDERS:
            try:
                kind_fd = open_folder(job_fd, kind)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                return True
            try:
                if os.listdir(kind_fd):
                    return True
            except OSError:
                return True
            finally:
                os.close(kind_fd)
    finally:
        os.close(job_fd)
    return False


def is_gone(error: OSError) -> bool:
    return error.errno in (errno.ENOENT, errno.ENOTDIR)
