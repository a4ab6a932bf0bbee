"""Giving freed heap memory back to the system, where the C library allows it.

glibc keeps memory that `free` returned at the top of its heap, and raises its mmap
threshold after a large block is freed, so large temporary blocks later come from the
heap too: a burst of temporaries (the start-up scan's final sort at 10^6 files, about
60 bytes a file) stays in the process's RSS after it is freed, although it is unused.
`malloc_trim(0)` hands it back. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Return the heap's free memory to the system; whether the C library could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
