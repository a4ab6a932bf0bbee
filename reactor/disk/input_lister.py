"""The start-up scan's looks at INPUTDIR's `.pod5` files, made in child processes.

Looking at one file (open, fstat, two 8-byte reads, close: `reactor.disk.signature`)
is ~5 µs of system calls and ~1 µs of Python; the service's own work for it (its
record, its place in the queue) is ~3 µs more, on the event loop. In one process they
add up. Here a child lists the outputs' stems (pass/ and fail/, the seed's done rule:
a file an output names is not opened; the service decides by its own list anyway),
then forks LOOKERS processes that each list INPUTDIR and look at their share of the
names, at a lower priority than the service; the service records what they found
while they look further, and a scan of 10^6 files takes less than the looks alone.

The child runs `main` with nothing but the standard library, `reactor.core.names` and
`reactor.disk.signature`. What it finds goes to its stdout in chunks (`Listed`,
`decode`), then an empty chunk once every looker listed the folder to its end: a pipe
that ends without it means the child failed, and the service scans by itself. A
symlink is reported, not opened (the service decides whether it refuses it, and looks
itself). A file gone before it was opened is not reported, as the scan in the service
would not report it.

`reactor serve` starts the child before its own imports (`spawn(until_watched=True)`),
so that its work overlaps them: the service's watch is not up yet. The child then
watches pass/, fail/ and INPUTDIR itself (`reactor.disk.folder_changes`), each before
it lists it, until its stdin ends (the service closes it once its watch is up), and
reports on a second pipe the names that changed meanwhile
(`reactor.disk.lister_report`): the service then believes its looks, DONE included.
Until the service reads the pipe, the lookers keep their chunks (`_Chunk`): they do not
wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import sys
import traceback
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reactor.core.names import RESULT_FOLDERS, is_pod5_name, output_stems
from reactor.disk import lister_report
from reactor.disk.folder_changes import FolderChanges
from reactor.disk.signature import look_at_pod5

if TYPE_CHECKING:
    import subprocess

# What the child found of one entry (one byte each in a chunk).
INCOMPLETE = 0  # a `.pod5` looked at: not (yet) complete, or unreadable
COMPLETE = 1  # a `.pod5` looked at: both signatures there
SYMLINK = 2  # a `.pod5` that is a symlink and not DONE: not opened; the service looks
DONE = 3  # a `.pod5` an output names (the child's list), a symlink or not: not opened
OTHER = 4  # an entry that is not a `.pod5`
OTHER_FOLDER = 5  # a folder that is not a `.pod5`

# A chunk is written whole by one write of at most PIPE_BUF bytes (POSIX: the kernel
# never mixes it with another process's write), so the lookers share one pipe.
CHUNK_BYTES = select.PIPE_BUF
PIPE_BYTES = 1 << 20
LOOKERS = 2  # processes looking at files, each at its share of the names
NICE = 10  # the lookers yield the CPU to the service (and to MinKNOW)
HEADER = struct.Struct("<II")  # entries in the chunk, bytes of their names
MAX_CHUNK_BYTES = 1 << 20  # what a header may announce: more is not a chunk
# What a looker keeps while the pipe is full (the service is importing): past this, it
# waits for the service to read.
KEPT_BYTES = 64 << 20
# A folder at least this large (a folder's size grows with its entries: thousands of
# names) is looked at by a child: a smaller one is scanned faster than a child starts.
CHILD_FROM_BYTES = 64 * 1024
REPORT_FD = "--report-fd"  # the child's flag: watch until stdin ends, report to this fd
_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())  # os.fsdecode's


@dataclass(frozen=True, slots=True)
class Listed:
    """One chunk: each entry's name, kind, and mtime (0.0 when not looked at)."""

    names: list[str]
    kinds: bytes
    mtimes: array[float]


def decode(count: int, body: bytes) -> Listed:
    """A chunk from its header's count and the bytes after the header."""
    names_end = len(body) - 9 * count
    blob = body[:names_end]
    if b"/" in blob:
        msg = "a name in a chunk holds a slash"
        raise ValueError(msg)
    # As os.fsdecode would decode each name in this process (NUL is no part of another
    # character in any encoding a filesystem uses), so names match its own listings.
    names = blob.decode(*_ENCODING).split("\0") if count else []
    mtimes = array("d")
    mtimes.frombytes(body[names_end + count :])
    kinds = body[names_end : names_end + count]
    if len(names) != count or len(mtimes) != count:
        msg = f"a chunk of {count} entries holds {len(names)} names and {len(mtimes)} times"
        raise ValueError(msg)
    if kinds and max(kinds) > OTHER_FOLDER:
        msg = f"a chunk holds an entry of unknown kind {max(kinds)}"
        raise ValueError(msg)
    return Listed(names, kinds, mtimes)


def body_size(count: int, names_bytes: int) -> int:
    """The bytes after a header announcing `count` entries and `names_bytes` of names;
    ValueError if no chunk is that large."""
    size = names_bytes + 9 * count
    if size > MAX_CHUNK_BYTES:
        msg = f"a header announces {size} bytes: not a chunk"
        raise ValueError(msg)
    return size


def command(input_dir: Path, output_dir: Path) -> list[str]:
    """The child's command line: this interpreter, isolated (no environment, no user
    site), importing reactor from where this module was imported: installed, that is
    on the path already (after the standard library); from a source tree, it goes in
    front."""
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; {root!r} in sys.path or sys.path.insert(0, {root!r}); "
        "from reactor.disk.input_lister import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-I", "-c", code, str(input_dir), str(output_dir)]


def worth_a_child(folder: Path) -> bool:
    """Whether the folder's size says it holds thousands of names (CHILD_FROM_BYTES)."""
    try:
        return folder.stat().st_size >= CHILD_FROM_BYTES
    except OSError:
        return False  # the scan says what is wrong with the folder


def spawn(
    input_dir: Path, output_dir: Path, *, until_watched: bool, program: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the child (`program`: its command line, `command`'s by default), its
    stdout and stderr piped; with the read end of its report pipe when `until_watched`
    (it then watches until its stdin, a pipe, is closed: REPORT_FD), else None (its
    stdin is /dev/null). Raises OSError when it cannot be started."""
    import subprocess  # here: the child imports this module, and needs none of it

    args = program or command(input_dir, output_dir)
    report_read = report_write = None
    if until_watched:
        report_read, report_write = os.pipe()
        args = [*args, REPORT_FD, str(report_write)]
    try:
        process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if until_watched else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=() if report_write is None else (report_write,),
            # A process group of its own, lookers included: the service ends them all at
            # once, and a Ctrl-C meant for the service is not taken for the child failing.
            start_new_session=True,
        )
    except OSError:
        if report_read is not None:
            os.close(report_read)
        raise
    finally:
        if report_write is not None:
            os.close(report_write)  # the child's end: its own copy stays open
    return process, report_read


def done_stems(output_dir: str) -> set[str]:
    names: list[str] = []
    for kind in RESULT_FOLDERS:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            names += os.listdir(os.path.join(output_dir, kind))  # noqa: PTH118 - 10^6 names
    return output_stems(names)


def main(argv: list[str]) -> int:
    """(In the child.) List INPUTDIR (argv[0]) to stdout; OUTPUTDIR is argv[1]; with
    REPORT_FD and a descriptor after them, watch first and report there (`_report`).

    Lists the outputs' stems, then forks LOOKERS processes (this one has no threads):
    each lists INPUTDIR and looks at its share of the names (`share`), writing chunks
    of at most PIPE_BUF bytes, which the kernel writes whole, never mixed with another
    process's. The end goes out once every looker ended well."""
    input_dir, output_dir, *flags = argv
    out = sys.stdout.fileno()
    report = int(flags[flags.index(REPORT_FD) + 1]) if REPORT_FD in flags else None
    changes = None
    if report is not None:  # each folder watched before it is listed
        results = [os.path.join(output_dir, kind) for kind in RESULT_FOLDERS]  # noqa: PTH118
        changes = FolderChanges(results)
    with contextlib.suppress(OSError):  # after the service, which is serving meanwhile
        os.nice(NICE)
    with contextlib.suppress(OSError, AttributeError):  # a bigger pipe: look further ahead
        fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    os.set_blocking(out, False)  # a full pipe: the lookers keep their chunks (`_Chunk`)
    stems = done_stems(output_dir)
    if changes is not None:  # after the outputs' listing, which is the longer wait
        changes.add(input_dir)
    lookers = max(1, min(LOOKERS, os.cpu_count() or 1))
    children = []
    for number in range(lookers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - in the forked looker (its exit code is tested)
            code = 1
            try:
                if changes is not None and report is not None:
                    changes.close()
                    os.close(report)
                code = _looker(input_dir, stems, number, lookers, out)
            finally:  # never back into this loop, whatever happened
                os._exit(code)
        children.append(pid)
    watched = changes is None or report is None or _report(changes, stems, report)
    if not watched:
        for pid in children:  # their looks cannot be trusted: the service looks itself
            os.kill(pid, signal.SIGKILL)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    if failed or not watched:  # each said why on stderr
        return 1
    _write_whole(out, HEADER.pack(0, 0))  # the end: the folder was listed to its end
    return 0


def _report(changes: FolderChanges, stems: set[str], report: int) -> bool:
    """(In the child, while the lookers look.) Take in the changes until stdin ends
    (the service's watch is up); then send what changed until then, and END
    (`reactor.disk.lister_report`). False (and why, on stderr and in the report) when
    some change may have been missed."""
    stdin = sys.stdin.fileno()
    # Until stdin is readable: it ended (the service writes nothing), its watch is up.
    while stdin not in select.select([changes.fd, stdin], [], [])[0]:
        changes.read()
    changes.read()  # all that came before the service's word: its watch sees the rest
    changes.close()
    *results, inputs = changes.names
    if changes.lost is not None:
        print(f"the watch before the service's: {changes.lost}", file=sys.stderr)
        said = lister_report.frame(lister_report.LOST, [changes.lost])
    else:
        changed = sorted(filter(is_pod5_name, inputs))
        done = [name for name in changed if name[:-5] in stems]  # by its list of outputs
        said = (
            lister_report.frame(lister_report.CHANGED_INPUTS, changed)
            + lister_report.frame(lister_report.CHANGED_DONE, done)
            + lister_report.frame(lister_report.CHANGED_OUTPUTS, sorted(set().union(*results)))
            + lister_report.FRAME.pack(lister_report.END, 0)
        )
    with open(report, "wb") as end:  # closed after: the service reads to the end
        end.write(said)
    return changes.lost is None


def _looker(input_dir: str, stems: set[str], number: int, lookers: int, out: int) -> int:
    """(In a forked looker.) Its exit code; what stopped it, on stderr."""
    try:
        _look(input_dir, stems, number, lookers, out)
    except BaseException:  # said on stderr; the exit code tells the child
        with contextlib.suppress(BaseException):  # stderr may be gone with the service
            traceback.print_exc()
            sys.stderr.flush()
        return 1
    return 0


def share(name: str, lookers: int) -> int:
    """Which looker takes `name` (a `.pod5` name: it ends in `.pod5`): by the character
    before `.pod5`, the last digit of MinKNOW's file number. Any rule that gives each
    name one looker is correct; this one is cheap and shares MinKNOW's names evenly."""
    return ord(name[-6]) % lookers


def _look(input_dir: str, stems: set[str], number: int, lookers: int, out: int) -> None:
    """(In a looker.) List INPUTDIR; report the names ending in `.pod5` of its share,
    looking at the files among them; the other entries go with looker 0's."""
    chunk = _Chunk(out)
    folder = os.open(input_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if len(name) > 5 and name.endswith(".pod5"):  # as every `is_pod5_name` does
                if share(name, lookers) != number:
                    continue  # not even checked: another looker's
            elif number != 0:
                continue
            if not is_pod5_name(name):
                chunk.add(name, OTHER_FOLDER if entry.is_dir(follow_symlinks=False) else OTHER)
            elif name[:-5] in stems:  # a symlink too: done before it could be refused
                chunk.add(name, DONE)
            elif entry.is_symlink():  # not opened: the service decides, it may refuse it
                chunk.add(name, SYMLINK)
            elif (looked := look_at_pod5(name, folder)) is not None:  # None: gone
                chunk.add(name, COMPLETE if looked[0] else INCOMPLETE, looked[2])
    chunk.send()
    chunk.flush()


class _Chunk:
    """Entries gathered until one more could make the chunk longer than PIPE_BUF. The
    pipe does not block (`main`): a chunk that finds it full is kept, and written
    before the next (up to KEPT_BYTES kept, then it waits); `flush` waits for all."""

    def __init__(self, out: int) -> None:
        self.out = out
        self.names: list[bytes] = []
        self.kinds = bytearray()
        self.mtimes = array("d")
        self.size = HEADER.size
        self.kept: deque[bytes] = deque()
        self.kept_bytes = 0

    def add(self, name: str, kind: int, mtime: float = 0.0) -> None:
        encoded = os.fsencode(name)  # the bytes on disk, whatever this process's locale
        if self.size + len(encoded) + 10 > CHUNK_BYTES:
            self.send()
        self.names.append(encoded)
        self.kinds.append(kind)
        self.mtimes.append(mtime)
        self.size += len(encoded) + 10  # its NUL, its kind, its mtime

    def send(self) -> None:
        if not self.names:
            return
        blob = b"\0".join(self.names)
        data = HEADER.pack(len(self.names), len(blob)) + blob + self.kinds + self.mtimes.tobytes()
        self.kept.append(data)
        self.kept_bytes += len(data)
        self._write(wait=self.kept_bytes > KEPT_BYTES)
        self.names.clear()
        self.kinds.clear()
        del self.mtimes[:]
        self.size = HEADER.size

    def flush(self) -> None:
        """Write every chunk kept, waiting for the pipe."""
        self._write(wait=True)

    def _write(self, *, wait: bool) -> None:
        kept = self.kept
        while kept:
            if not _write_chunk(self.out, kept[0], wait=wait):
                return
            self.kept_bytes -= len(kept.popleft())


def _write_chunk(out: int, data: bytes, *, wait: bool) -> bool:
    """Write `data` (at most PIPE_BUF bytes: written whole or not at all); whether it
    was (not, only when the pipe is full and `wait` is False)."""
    while True:
        try:
            written = os.write(out, data)
        except BlockingIOError:
            if not wait:
                return False
            select.select([], [out], [])
            continue
        if written != len(data):  # a pipe writes PIPE_BUF bytes whole
            msg = "a chunk was written in part"
            raise OSError(msg)
        return True


def _write_whole(out: int, data: bytes) -> None:
    _write_chunk(out, data, wait=True)
