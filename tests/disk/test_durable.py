"""The barrier: every file and folder collected is fsynced once before it returns, side by
side from the fsync threads, or one after the other in order while an observer records;
one failure fails the barrier, and every descriptor is closed either way."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.disk import fsops
from reactor.disk.durable import DurabilityError, Sync


def _files(folder: Path, count: int) -> list[int]:
    fds = []
    for number in range(count):
        fds.append(os.open(folder / f"f{number}", os.O_WRONLY | os.O_CREAT, 0o600))
    return fds


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, str]]]:
    """(fd, thread name) of every fsync, in the order they were made."""
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()
    real = fsops.fsync

    def fsync(fd: int) -> None:
        real(fd)
        with lock:
            seen.append((fd, threading.current_thread().name))

    monkeypatch.setattr(fsops, "fsync", fsync)
    yield seen


def test_a_barrier_fsyncs_every_file_and_folder_once_off_the_callers_thread(
    tmp_path: Path, fsynced: list[tuple[int, str]]
) -> None:
    """Ten files and their folder: eleven fsyncs, on the fsync threads, all before
    flush returns; the descriptors are closed and counted."""
    sync = Sync()
    fds = _files(tmp_path, 10)
    for fd in fds:
        sync.take(fd)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sync.folder(folder)
        sync.folder(folder)  # twice: once at the barrier
        sync.flush()
    finally:
        os.close(folder)
    assert len(fsynced) == 11
    assert all(name.startswith("reactor-fsync-") for _, name in fsynced)
    assert sync.fsyncs == 11
    assert not sync.pending
    assert not any(_open(fd) for fd in fds)


def test_while_an_observer_records_the_fsyncs_are_made_in_order_on_the_callers_thread(
    tmp_path: Path, fsynced: list[tuple[int, str]]
) -> None:
    """The power-loss tests' recording must be the same run after run."""
    sync = Sync()
    fds = _files(tmp_path, 5)
    for fd in fds:
        sync.take(fd)
    previous = fsops.observe(lambda _op, _args: None)
    try:
        sync.flush()
    finally:
        fsops.observe(previous)
    assert [fd for fd, _ in fsynced] == fds
    assert {name for _, name in fsynced} == {threading.current_thread().name}


def test_one_failed_fsync_fails_the_barrier_and_every_descriptor_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The others are still fsynced (and closed); the barrier raises DurabilityError."""
    sync = Sync()
    fds = _files(tmp_path, 6)
    for fd in fds:
        sync.take(fd)
    real = fsops.fsync

    def fsync(fd: int) -> None:
        if fd == fds[3]:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(fsops, "fsync", fsync)
    with pytest.raises(DurabilityError):
        sync.flush()
    assert sync.fsyncs == 5
    assert not any(_open(fd) for fd in fds)
