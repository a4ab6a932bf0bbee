"""The I/O priority of a thread (Linux's ioprio_set), so reactor's disk work yields to
MinKNOW's: a sequencer that cannot write its reads loses them.

Staging copies (bulk reads and writes) run in the idle class: they get the disk only
when nobody else wants it. The journal's writer (the fsyncs every answer waits for,
and merges, which are renames) runs best-effort at the lowest level, not idle: under a
busy acquisition the idle class could starve it, every answer would wait, leases would
run out and engines would give their batches up. `set_io_priority` is best effort: on a
platform without the call, or where it is refused, it says so and changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading
from enum import IntEnum

# ioprio_set's number, where reactor runs (asm-generic numbers on arm64)
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30}
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "arm64": 31}
_WHO_PROCESS = 1  # with a thread's id: that thread
_CLASS_SHIFT = 13


class IoClass(IntEnum):
    BEST_EFFORT = 2
    IDLE = 3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def set_io_priority(io_class: IoClass, level: int = 7) -> bool:
    """This thread's I/O priority; False if it could not be set."""
    number = _IOPRIO_SET.get(platform.machine())
    libc = _libc()
    if number is None or libc is None:
        return False
    value = (int(io_class) << _CLASS_SHIFT) | (level if io_class is IoClass.BEST_EFFORT else 0)
    result = libc.syscall(number, _WHO_PROCESS, threading.get_native_id(), value)
    return bool(result == 0)


def io_priority() -> tuple[int, int] | None:
    """(class, level) of this thread's I/O priority, or None where it cannot be read."""
    number = _IOPRIO_GET.get(platform.machine())
    libc = _libc()
    if number is None or libc is None:
        return None
    value = libc.syscall(number, _WHO_PROCESS, threading.get_native_id())
    if value < 0:
        return None
    return value >> _CLASS_SHIFT, value & ((1 << _CLASS_SHIFT) - 1)
