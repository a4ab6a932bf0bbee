"""The start-up scan of INPUTDIR, a slice at a time, while the service already serves.

A single run's service recovers its journal, lists the outputs' stems, and from then on
hands out the files it knows to be ready while this scan goes on between requests
(docs/journal.md, "Serving during the start-up scan", says why that is safe). The scan
owns nothing but its cursor: each `.pod5` it finds goes into the core (`RunState`) as the
whole-folder scan of `Reactor.start` would put it, and at the end the files it queued are
put in the order that scan gives them, oldest first, behind the files sent to the front.

Memory: per file found, one reference in a list and one double in an array, no objects
of its own, so nothing it drops at the end is scattered among the records it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
from array import array
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reactor.core.retry import FailureHistory
from reactor.core.state import RunState
from reactor.disk.input_lister import (
    COMPLETE,
    DONE,
    HEADER,
    OTHER,
    OTHER_FOLDER,
    SYMLINK,
    Listed,
    body_size,
    command,
    decode,
    spawn,
)
from reactor.disk.inputs import InputFolders
from reactor.disk.lister_report import Report, ReportFailed, read_report
from reactor.disk.signature import look_at_pod5

# Entries looked at between two looks at the clock (`Reactor.scan` turns the event loop
# once SCAN_TURN_S has passed): ~2 ms of signature checks on a local disk.
SLICE_FILES = 256
# What the child's pipe may hold before the service reads it: the child looks ahead
# while the loop records the chunk before.
PIPE_BUFFER_BYTES = 1 << 20
STDERR_KEPT_BYTES = 16_384  # of a failed child's stderr: its last line goes in the log
ENDING_S = 1.0  # how long a child whose report failed is given to end and say why


@dataclass(slots=True)
class KnownOutputs:
    """What the scan knows of the outputs in pass/ and fail/ (the seed's done rule):
    their stems, listed the first time they are needed (`stems`). With a child that
    listed them under its own watch (`child_decides`), its looks say which files are
    done (DONE), and only the stems of outputs made after its listing (`made`, from its
    report) are known here, until more is needed."""

    listed: Callable[[], set[str]]  # the stems of pass/ and fail/, listed now
    child_decides: bool = False
    made: set[str] = field(default_factory=set)
    _stems: set[str] | None = None

    def stems(self) -> set[str]:
        if self._stems is None:
            self._stems = self.listed() | self.made
        return self._stems


@dataclass(slots=True)
class StartScan:
    """One start-up scan: `front()` the few files the journal names, then `slices()`,
    then `finish()`. `refuse(name)`: whether a symlinked `.pod5` is refused."""

    state: RunState
    inputs: InputFolders
    outputs: KnownOutputs  # of pass/ and fail/: the files they name are done (the seed's rule)
    history: dict[str, FailureHistory]
    handed_back: set[str]
    refuse: Callable[[str], bool]
    now: float
    # Every entry of INPUTDIR that is not a `.pod5`, by name and whether it is a folder
    # (recovery leaves its strays to the scan)
    others: Callable[[str, bool], None]
    _names: list[str] = field(default_factory=list)  # queued by the scan, in its order
    _mtimes: array[float] = field(default_factory=lambda: array("d"))
    # Names that changed during the scan: a listing (the child's above all, made ahead of
    # the loop) may still hold them as they were, so they are looked at again.
    _changed: set[str] = field(default_factory=set)
    _met: set[str] = field(default_factory=set)  # entries given to `others` (few): once

    def changed(self, name: str) -> None:
        """`name` changed while the scan goes on: its GONE event came
        (`Reactor.on_fs_event`), or the child saw it change before the service's watch
        was up (its report). A look at it in a listing made before is not believed."""
        self._changed.add(name)

    def other(self, name: str, is_folder: bool) -> None:
        """An entry that is not a `.pod5`, to `others` once, however often it is listed
        (the scan in the service after a child that failed half-way lists it again)."""
        if name not in self._met:
            self._met.add(name)
            self.others(name, is_folder)

    def front(self, names: Iterable[str]) -> None:
        """Before serving: the files the journal knows something about (failed before,
        handed back, in a finished job), looked up by name, so that their history is in
        place and they are at the front before the first engine asks."""
        found: list[tuple[float, str, bool]] = []
        for name in names:
            if name in self.state.files:
                continue
            path = self.inputs.path(name)
            if (checked := self._check(name, str(path), path.is_symlink())) is not None:
                found.append((checked[0], name, checked[1]))
        found.sort()
        front = self.handed_back.union(self.history)
        for mtime, name, complete in found:
            if name not in front:  # in a finished job: queued as the scan queues files
                self._queue(name, complete=complete)
                self._names.append(name)
                self._mtimes.append(mtime)
        # file_seen puts each front file at the very front: feed them newest first.
        for _mtime, name, complete in reversed(found):
            if name in front:
                self._queue(name, complete=complete)

    def mark_present(self, names: Iterable[str]) -> None:
        """Before serving: records restored from the journal (live jobs' files, the
        quarantined) learn whether their `.pod5` is there, as the scan would tell them.
        A failed or expired job requeues only files that are there."""
        files = self.state.files
        for name in names:
            record = files.get(name)
            if record is not None and os.path.lexists(self.inputs.path(name)):
                record.present = True

    def slices(self, size: int = SLICE_FILES) -> Iterator[int]:
        """Scan INPUTDIR, yielding after every `size` entries (the files seen so far)."""
        # `_check` and `_queue` inlined: this loop runs once per file (10^6 at start).
        state, now, stems, refuse = self.state, self.now, self.outputs.stems(), self.refuse
        files, front, history, gone = state.files, self.handed_back, self.history, self._changed
        names, mtimes = self._names, self._mtimes
        for count, entry in enumerate(self.inputs.scan(self.other), 1):
            name = entry.name
            record = files.get(name)
            if gone and name in gone:
                self._look_here(name, os.path.dirname(entry.path))  # noqa: PTH120
            elif record is not None:
                record.present = True
            elif stems and name[:-5] in stems:  # is_pod5_name: it ends in ".pod5"
                state.restore_done(name, now)
                files[name].present = True
            elif (
                not (entry.is_symlink() and refuse(name))
                and (looked := look_at_pod5(entry.path)) is not None
            ):
                complete, _size, mtime = looked
                if name in front or name in history:
                    self._queue(name, complete=complete)
                else:
                    state.file_found(name, complete=complete, now=now)
                    names.append(name)
                    mtimes.append(mtime)
            if count % size == 0:
                yield count

    def take(self, listed: Listed) -> None:
        """What the child processes looking at INPUTDIR found (`reactor.disk.input_lister`),
        recorded as `slices` records what it finds itself: the scan's list of outputs
        decides what is done, or the child's where it decides (`KnownOutputs`); a symlink, a
        file the child's list of outputs called done and this one does not, and a file
        that changed meanwhile are looked at here."""
        state, now, gone = self.state, self.now, self._changed
        decides = self.outputs.child_decides
        stems = self.outputs.made if decides else self.outputs.stems()
        files, front, history = state.files, self.handed_back, self.history
        names, mtimes = self._names, self._mtimes
        folder = str(self.inputs.main)
        done: list[str] = []
        for name, kind, mtime in zip(listed.names, listed.kinds, listed.mtimes, strict=True):
            if kind >= OTHER:
                self.other(name, kind == OTHER_FOLDER)
                continue
            if gone and name in gone:
                self._look_here(name, folder)
                continue
            record = files.get(name)
            if record is not None:
                record.present = True
                continue
            if (decides and kind == DONE) or (stems and name[:-5] in stems):
                done.append(name)  # recorded done below, present: no file is twice in a chunk
                continue
            if kind >= SYMLINK:  # a symlink, or done by the child's list only
                # Where the child decides, a symlink it reports is not done by its list.
                self._look_here(name, folder, done=False if decides else None)
                continue
            if name in front or name in history:
                self._queue(name, complete=kind == COMPLETE)
            else:
                state.file_found(name, complete=kind == COMPLETE, now=now)
                names.append(name)
                mtimes.append(mtime)
        if done:
            state.restore_done_found(done, now)

    def _look_here(self, name: str, folder: str, done: bool | None = None) -> None:
        """One name as `slices` meets it, the file looked at now. `done`: the child's
        word on whether its list of outputs names it (then only the outputs made since
        are asked), or None: the list of outputs says."""
        path = os.path.join(folder, name)  # noqa: PTH118 - as slices, no Path per file
        try:
            is_symlink = stat.S_ISLNK(os.lstat(path).st_mode)
        except FileNotFoundError:
            return  # gone: nothing recorded, no record marked present
        except OSError:
            is_symlink = False  # the look below says what it is
        record = self.state.files.get(name)
        if record is not None:
            record.present = True
            return
        if (checked := self._check(name, path, is_symlink, done)) is None:
            return
        mtime, complete = checked
        if name in self.handed_back or name in self.history:
            self._queue(name, complete=complete)
        else:
            self.state.file_found(name, complete=complete, now=self.now)
            self._names.append(name)
            self._mtimes.append(mtime)

    def finish(self) -> None:
        """The scan is over: the files it queued go behind the others, oldest first (the
        order `Reactor.start` gives them); files handed out meanwhile are not touched."""
        mtimes = self._mtimes
        order = sorted(range(len(self._names)), key=mtimes.__getitem__)
        names = self._names
        self.state.requeue_in_order(map(names.__getitem__, order))
        self._names = []
        self._mtimes = array("d")

    def _check(
        self, name: str, path: str, is_symlink: bool, done: bool | None = None
    ) -> tuple[float, bool] | None:
        """(mtime, complete) of a `.pod5` unknown so far; None when it is done by an
        output (recorded so), refused, or gone. `done`: as `_look_here`."""
        stem = name[:-5]  # is_pod5_name: it ends in ".pod5"
        if done is None:
            done = stem in self.outputs.stems()
        elif not done:
            done = stem in self.outputs.made
        if done:
            self.state.restore_done(name, self.now)
            self.state.files[name].present = True
            return None
        if is_symlink and self.refuse(name):
            return None
        looked = look_at_pod5(path)
        if looked is None:
            return None
        complete, _size, mtime = looked
        return mtime, complete

    def _queue(self, name: str, *, complete: bool) -> None:
        self.state.file_seen(
            name,
            complete=complete,
            now=self.now,
            history=self.history.get(name),
            front=name in self.handed_back,
        )


class ListerFailed(Exception):
    """The child looking at INPUTDIR's files failed (`ChildLister`)."""


class ChildLister:
    """The child process (`reactor.disk.input_lister`) looking at INPUTDIR's files,
    started as soon as the watch is up (`start`, while recovery runs), or before it
    (`reactor serve` starts it before its imports: `input_lister.spawn`, `report`
    being its report pipe), then told when the watch is up (`watching`) and asked what
    it saw meanwhile (`report`); read a chunk at a time between turns of the loop
    (`chunks`), killed if the service stops first (`stop`)."""

    def __init__(self, process: subprocess.Popen[bytes], report: int | None = None) -> None:
        self._process = process
        self._report = report  # read end of its report pipe, until read
        # Started before the service's watch: it watched, and reports (`report`).
        self.until_watched = report is not None

    @classmethod
    def start(
        cls, input_dir: Path, output_dir: Path, program: list[str] | None = None
    ) -> ChildLister:
        """Start the child after the watch (`program`: its command line,
        `input_lister.command`'s by default). Raises ListerFailed when it cannot be
        started."""
        try:
            process, _ = spawn(
                input_dir,
                output_dir,
                until_watched=False,
                program=program or command(input_dir, output_dir),
            )
        except OSError as exc:
            msg = f"could not start the child: {exc}"
            raise ListerFailed(msg) from exc
        return cls(process)

    def watching(self) -> None:
        """The service's watch is up: a child started before it stops its own watch and
        reports what changed until now (its stdin ends)."""
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):  # it ended: its report says how
                stdin.close()

    def report(self, timeout_s: float) -> Report:
        """(After `watching`.) What a child started before the watch says: the names
        that changed before the watch was up
        (`reactor.disk.lister_report`); waits for it, at most `timeout_s`. Raises
        ListerFailed when there is no whole report, or it says changes were missed."""
        fd, self._report = self._report, None
        if fd is None:
            msg = "the child has no report"
            raise ListerFailed(msg)
        try:
            return read_report(fd, timeout_s)
        except ReportFailed as exc:
            msg = f"the child's watch before the service's: {exc}"
            with contextlib.suppress(subprocess.TimeoutExpired):  # it is ending: its why
                self._process.wait(ENDING_S)
            if (said := self._last_said()) is not None:
                msg += f" ({said})"
            raise ListerFailed(msg) from exc
        finally:
            os.close(fd)

    def _last_said(self) -> str | None:
        """The last line on the child's stderr so far, if it ended (a traceback's says
        what it was), without waiting."""
        process, err = self._process, self._process.stderr
        if err is None or process.poll() is None:
            return None
        os.set_blocking(err.fileno(), False)
        with contextlib.suppress(BlockingIOError, OSError):
            kept = os.read(err.fileno(), STDERR_KEPT_BYTES).decode(errors="replace")
            lines = [line for line in kept.splitlines() if line.strip()]
            return lines[-1] if lines else None
        return None

    async def chunks(self) -> AsyncGenerator[Listed, None]:
        """What the child found, a chunk at a time. Raises ListerFailed when it ends
        without saying it listed the folder to its end, or writes what is not a chunk."""
        process = self._process
        if process.stdout is None:  # pragma: no cover - asked for in start
            msg = "the child has no pipe"
            raise ListerFailed(msg)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=PIPE_BUFFER_BYTES, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), process.stdout
        )
        failed: Exception | None = None
        try:
            while True:
                count, names_bytes = HEADER.unpack(await reader.readexactly(HEADER.size))
                if count == 0:
                    break
                yield decode(count, await reader.readexactly(body_size(count, names_bytes)))
        except (asyncio.IncompleteReadError, ValueError) as exc:
            failed = exc
        finally:
            transport.close()  # a looker still writing ends on the broken pipe
        if failed is not None:
            raise ListerFailed(await self._failure(failed))
        await asyncio.to_thread(process.wait)  # it ends once it wrote the end
        self.stop()

    async def _failure(self, exc: Exception) -> str:
        process = self._process
        if isinstance(exc, ValueError):
            _kill_group(process)  # it wrote what is not a chunk: nothing more to read (at
            # an early end of its output, it is ending by itself: its exit code tells how)
        code = await asyncio.to_thread(process.wait)
        return f"the child ended early (exit {code}): {self._last_said() or exc}"

    def stop(self) -> None:
        """Kill the child if it still runs (the service stops during the scan)."""
        process = self._process
        _kill_group(process)
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):  # stdin: a pipe the child closed
                    pipe.close()
        if self._report is not None:
            os.close(self._report)
            self._report = None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the child's process group (the child and its lookers), if any is left.
    Only while the child is not reaped: its group id is its pid, not yet reused."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
