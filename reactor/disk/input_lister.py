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
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import sys
import traceback
from array import array
from dataclasses import dataclass
from pathlib import Path

from reactor.core.names import RESULT_FOLDERS, is_pod5_name, output_stems
from reactor.disk.signature import look_at_pod5

# What the child found of one entry (one byte each in a chunk).
INCOMPLETE = 0  # a `.pod5` looked at: not (yet) complete, or unreadable
COMPLETE = 1  # a `.pod5` looked at: both signatures there
SYMLINK = 2  # a `.pod5` that is a symlink: not opened; the service looks
DONE = 3  # a `.pod5` an output names (the child's list): not opened
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


def done_stems(output_dir: str) -> set[str]:
    names: list[str] = []
    for kind in RESULT_FOLDERS:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            names += os.listdir(os.path.join(output_dir, kind))  # noqa: PTH118 - 10^6 names
    return output_stems(names)


def main(argv: list[str]) -> int:
    """(In the child.) List INPUTDIR (argv[0]) to stdout; OUTPUTDIR is argv[1].

    Lists the outputs' stems, then forks LOOKERS processes (this one has no threads):
    each lists INPUTDIR and looks at its share of the names (`share`), writing chunks
    of at most PIPE_BUF bytes, which the kernel writes whole, never mixed with another
    process's. The end goes out once every looker ended well."""
    input_dir, output_dir = argv
    out = sys.stdout.fileno()
    with contextlib.suppress(OSError):  # after the service, which is serving meanwhile
        os.nice(NICE)
    with contextlib.suppress(OSError, AttributeError):  # a bigger pipe: look further ahead
        fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    stems = done_stems(output_dir)
    lookers = max(1, min(LOOKERS, os.cpu_count() or 1))
    children = []
    for number in range(lookers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - in the forked looker (its exit code is tested)
            code = 1
            try:
                code = _looker(input_dir, stems, number, lookers, out)
            finally:  # never back into this loop, whatever happened
                os._exit(code)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    if failed:  # each said why on stderr
        return 1
    os.write(out, HEADER.pack(0, 0))  # the end: the folder was listed to its end
    return 0


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
            elif entry.is_symlink():  # the service decides, done or not: it may refuse it
                chunk.add(name, SYMLINK)
            elif name[:-5] in stems:
                chunk.add(name, DONE)
            elif (looked := look_at_pod5(name, folder)) is not None:  # None: gone
                chunk.add(name, COMPLETE if looked[0] else INCOMPLETE, looked[2])
    chunk.send()


class _Chunk:
    """Entries gathered until one more could make the chunk longer than PIPE_BUF."""

    def __init__(self, out: int) -> None:
        self.out = out
        self.names: list[bytes] = []
        self.kinds = bytearray()
        self.mtimes = array("d")
        self.size = HEADER.size

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
        if os.write(self.out, data) != len(data):  # a pipe writes PIPE_BUF bytes whole
            msg = "a chunk was written in part"
            raise OSError(msg)
        self.names.clear()
        self.kinds.clear()
        del self.mtimes[:]
        self.size = HEADER.size
