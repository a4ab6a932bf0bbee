"""The report of a start-up scan's child started before the service's watch.

`reactor serve` starts the child (`reactor.disk.input_lister`) before its imports, so
before its own watch is up. That child watches pass/, fail/ and INPUTDIR itself from
before it lists each until the service says its watch is up (its stdin ends), then
says on a second pipe (`--report-fd`), in frames (a `FRAME` header: kind, bytes; then
the bytes):

- CHANGED_INPUTS: the `.pod5` names of INPUTDIR that changed under its watch;
- CHANGED_DONE: those of them its list of the outputs names (done by the seed's rule);
- CHANGED_OUTPUTS: the names in pass/ and fail/ that changed under its watch;
- END: all is said (then the pipe ends);
- or LOST, with why some change may have been missed: nothing it says can be trusted.

So the service believes the child's looks, its list of the outputs included (which of
its files are done: at 10^6 files, half done, listing them again is ~0.45 s before the
first answer), once it has looked again at each name that changed before its watch was
up; what changes later its own watch sees. Names are NUL-joined, encoded as
os.fsencode encodes them (the bytes on disk).
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

FRAME = struct.Struct("<BQ")  # kind, bytes that follow
END = 0
CHANGED_INPUTS = 1
CHANGED_DONE = 2
CHANGED_OUTPUTS = 3
LOST = 4
KINDS = (CHANGED_INPUTS, CHANGED_DONE, CHANGED_OUTPUTS)
READ_BYTES = 1 << 20
_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())  # os.fsdecode's


class ReportFailed(Exception):
    """The report says changes may have been missed, or is not a whole report."""


@dataclass(frozen=True, slots=True)
class Report:
    changed_inputs: list[str]
    changed_done: set[str]  # of changed_inputs
    changed_outputs: list[str]


def frame(kind: int, names: Iterable[str]) -> bytes:
    """One frame of names (or, for LOST, of the one reason)."""
    blob = "\0".join(names).encode(*_ENCODING)
    return FRAME.pack(kind, len(blob)) + blob


def read_report(fd: int, timeout_s: float) -> Report:
    """Read the report pipe to its end (within `timeout_s`) and decode it. Raises
    ReportFailed, saying why, when it is not a whole report or says LOST."""
    data = _read_to_end(fd, timeout_s)
    found: dict[int, list[str]] = {}
    position = 0
    while position + FRAME.size <= len(data):
        kind, size = FRAME.unpack_from(data, position)
        position += FRAME.size
        blob = bytes(data[position : position + size])
        position += size
        if len(blob) != size:
            break
        if kind == END:
            if position != len(data):
                msg = "the report goes on after its end"
                raise ReportFailed(msg)
            return _report(found)
        if kind == LOST:
            raise ReportFailed(blob.decode(errors="replace"))
        if kind not in KINDS or kind in found:
            msg = f"the report holds a frame of kind {kind} where none is expected"
            raise ReportFailed(msg)
        names = blob.decode(*_ENCODING).split("\0") if blob else []
        if any(not name or "/" in name for name in names):
            msg = "the report holds a name that is empty or holds a slash"
            raise ReportFailed(msg)
        found[kind] = names
    msg = "the report ended early: the child stopped before it said all"
    raise ReportFailed(msg)


def _report(found: dict[int, list[str]]) -> Report:
    inputs = found.get(CHANGED_INPUTS, [])
    done = set(found.get(CHANGED_DONE, []))
    if not done.issubset(inputs):
        msg = "the report calls done a name it does not say changed"
        raise ReportFailed(msg)
    return Report(inputs, done, found.get(CHANGED_OUTPUTS, []))


def _read_to_end(fd: int, timeout_s: float) -> bytearray:
    data = bytearray()
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            msg = f"no whole report within {timeout_s:g} s"
            raise ReportFailed(msg)
        try:
            chunk = os.read(fd, READ_BYTES)
        except BlockingIOError:
            continue
        if not chunk:
            return data
        data += chunk
