"""Filesystem events as the core sees them, and the pure filters that choose them.

The watchdog bridge (`reactor.serve.watcher`) turns each watchdog event into an
`FsEvent` on the observer's thread and hands it to the event loop; everything after
that (the coordinator, the end-of-run finisher) sees only these types. The filters are
pure predicates, `(change, path) -> bool`, as in watchfiles' `filters.py`: they see
only the path (directory events never reach them) and never touch the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

from reactor.core.names import is_pod5_name, output_stem


class Area(StrEnum):
    """Which watched folder an event comes from."""

    INPUT = "input"  # top level of INPUTDIR
    RESULTS = "results"  # top level of OUTPUTDIR/pass and OUTPUTDIR/fail


class Change(StrEnum):
    CREATED = "created"
    MODIFIED = "modified"
    CLOSED = "closed"  # closed after writing (inotify IN_CLOSE_WRITE; never when polling)
    MOVED_IN = "moved_in"  # renamed into the folder, or renamed within it (new name)
    GONE = "gone"  # deleted, or renamed away (old name)


@dataclass(frozen=True, slots=True)
class FsEvent:
    """One filesystem change, as the loop sees it."""

    area: Area
    change: Change
    name: str  # base name of the file
    at: float  # time.monotonic() on the observer thread: the start of ingest latency
    # The folder the file is in, when the area has several (a MinKNOW run's POD5 and
    # barcode folders); "" for INPUTDIR's, pass/'s and fail/'s.
    folder: str = ""


PathFilter = Callable[[Change, PurePath], bool]


def input_filter(change: Change, path: PurePath) -> bool:
    """A visible `*.pod5`; hidden names, staging names (`.reactor-staging-*`) and the
    pod5 writer's `.<uuid>.tmp-*` side files all start with a dot and are refused."""
    return is_pod5_name(path.name)


def results_filter(change: Change, path: PurePath) -> bool:
    """A FASTQ/BAM output; hidden names (staging names while a merge is built) are refused."""
    name = path.name
    return not name.startswith(".") and output_stem(name) is not None
