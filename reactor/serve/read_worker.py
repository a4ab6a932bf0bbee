"""The worker processes that read jobs' outputs, read by read, for the event loop.

Parsing FASTQ and BAM holds the GIL for as long as it runs, so a thread would stall
the event loop (and every engine's answer) with it: the reads are read in separate
processes (`reactor.disk.read_files.split_outputs`, imported there only), a pool of
`read_workers` (2) per service shared by every run of a host. They are started with
`spawn` (the service has threads: forking it could copy a lock held by one of them) on
the first job to read (`reactor serve` starts them once it listens: `warm`), and
replaced if one dies. They
die with the service, however the service ends (`kill -9` included): the kernel
signals them when their parent goes (Linux's PR_SET_PDEATHSIG), since a worker waiting
on its queue would otherwise wait forever, holding the queue's other end itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import resource
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from reactor.disk.read_requests import SplitRequest, SplitResult

WORKERS = 2  # the read_workers setting's default


PR_SET_PDEATHSIG = 1  # linux/prctl.h
# A worker's address space: far above what a job needs (its reads stream; its read ids
# and lengths take ~100 bytes a read), far below what would hurt a sequencer host. An
# engine's gzip bomb or a giant record then fails the job (MemoryError: refused) rather
# than taking the host's memory from MinKNOW.
WORKER_MEMORY_BYTES = 4 * 1024**3


def die_with_parent(parent_pid: int, memory_bytes: int = WORKER_MEMORY_BYTES) -> None:
    """(In the worker, at its start.) Be killed when the service ends, and end now if it
    ended while this process started; never take more than `memory_bytes`."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit stays
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if os.getppid() != parent_pid:
        os._exit(0)


def _start_worker(parent_pid: int, memory_bytes: int) -> None:
    """(In the worker, at its start.) `die_with_parent`, then import what it reads with
    (~1 s spawned), so that a job never waits for it. The service itself never imports
    `reactor.disk.read_files`: its reading libraries cost ~0.15 s before the port opens."""
    die_with_parent(parent_pid, memory_bytes)
    import reactor.disk.read_files  # noqa: F401


def _split(request: SplitRequest) -> SplitResult:
    """(In the worker.) One job's outputs read, and split."""
    from reactor.disk.read_files import split_outputs

    return split_outputs(request)


class ReadWorkerGone(Exception):
    """The worker process died twice on one job: its outputs could not be read."""


class ReadWorker:
    """A lazily started pool of processes that read jobs' outputs."""

    def __init__(self, workers: int = WORKERS, memory_bytes: int = WORKER_MEMORY_BYTES) -> None:
        self._workers = workers
        self._memory_bytes = memory_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(), self._memory_bytes),
                )
            return self._pool

    def warm(self) -> None:
        """Start the workers now, in the background: a spawned worker takes about a
        second to import what it reads with, which the run's first DONE would otherwise
        wait for (and every engine reporting with it)."""
        pool = self._executor()
        for _ in range(self._workers):
            pool.submit(os.getpid)  # an errand that only makes the pool start a worker

    def _replace(self, broken: ProcessPoolExecutor, *, kill: bool = False) -> None:
        with self._lock:
            if self._pool is broken:
                if kill:
                    _end_workers()
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    async def split(self, request: SplitRequest) -> SplitResult:
        """Read (and split) one job's outputs in the worker; a worker that died is
        replaced and the job tried once more."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, _split, request)
            except MemoryError:
                # the job is the engine's to answer for; the worker, its memory kept by
                # the allocator, is replaced for the jobs after it
                self._replace(pool, kill=True)
                raise
            except BrokenProcessPool:
                self._replace(pool)
                if attempt == 2:
                    msg = "the process reading jobs' outputs died twice on this job"
                    raise ReadWorkerGone(msg) from None
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers. `wait=False` (the service exiting): the jobs waiting are
        dropped and the workers ended now, not after the splits under way; a job cut
        short was not decided, and its engine's report is carried out at the next start
        (the split folder a worker leaves is removed by recovery)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        if not wait:
            _end_workers()
        pool.shutdown(wait=wait, cancel_futures=True)


def _end_workers() -> None:
    """Terminate the pool's worker processes (the only processes spawned here)."""
    for process in multiprocessing.active_children():
        if process.name.startswith("SpawnProcess"):
            process.terminate()


def close_shared(*, wait: bool = True) -> None:
    """Stop the process's workers, if they were started."""
    if _shared is not None:
        _shared.close(wait=wait)


_shared: ReadWorker | None = None


def shared_read_worker(workers: int = WORKERS) -> ReadWorker:
    """The process's workers, shared by every run it serves (`workers`: how many, the
    first time it is asked for)."""
    global _shared  # one pool per process, made on first use
    if _shared is None:
        _shared = ReadWorker(workers)
    return _shared
