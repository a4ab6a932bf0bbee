"""The writer: one thread that carries out the journal's steps, in order, off the loop.

Every change on disk goes through here (`Reactor` submits `reactor.disk.journal.Step`s
and awaits them), so the event loop never waits on the disk: a slow or stalled disk
slows the requests that change something, while /status, keepalives and the watcher
go on. One thread, one queue: steps reach the disk in the order they were submitted.

Group commit, pipelined. A step runs in four phases with a barrier after each
(`reactor.disk.durable.Sync`): `prepare`, `commit`, `finish`, `tidy`. The thread works in
rounds: it takes in every step waiting (up to `max_group` in flight), runs the next phase
of each step in flight, oldest first, then one barrier for the round. A barrier fsyncs
each file once and each folder once, however many steps of the round touched it, so
under load many decisions share the fsync of `.reactor/jobs/` and of the run folders.
A step that arrives while others are on the disk joins at the next barrier instead of
waiting for their last phase (an assignment waits one round, not a whole commit of the
one before it), and a step is answered as soon as its own last phase is durable (a step
without a `tidy` after `finish`'s barrier). Order holds: a step's phase never runs
before the same phase of a step submitted before it. A step that fails drops out of the
later phases; the others go on.

A failed fsync (`DurabilityError`) breaks the writer: what reached the disk is unknown,
so every step after it fails with the same error and `on_broken` is called once (the
app stops the service; recovery at the next start goes from what is on disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from reactor.disk.durable import DurabilityError, Sync
from reactor.disk.journal import Step
from reactor.runtime.io_priority import IoClass, set_io_priority

log = structlog.get_logger("reactor.writer")

T = TypeVar("T")
MAX_GROUP = 64  # steps in flight at once
_PHASES = ("prepare", "commit", "finish", "tidy")


@dataclass(slots=True)
class _Entry:
    step: Step[Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    result: Any = None
    error: BaseException | None = None
    phase: int = 0  # index in _PHASES of the phase it runs next


class DiskWriter:
    """The one thread that writes the run folders (see the module docstring)."""

    def __init__(
        self,
        *,
        durable: bool = True,
        max_group: int = MAX_GROUP,
        on_broken: Callable[[DurabilityError], None] | None = None,
        on_group: Callable[[int, float], None] | None = None,
    ) -> None:
        self.durable = durable
        self.on_group = on_group  # (steps, seconds) after each group, on the thread
        self.max_group = max_group
        self.on_broken = on_broken
        self.broken: DurabilityError | None = None
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Counted on the thread, read on the loop (plain ints: a stale read is harmless).
        self.groups = 0  # rounds: barriers passed
        self.steps = 0  # steps carried out
        self.shared = 0  # steps in flight, summed over rounds: shared / groups per barrier
        self.fsyncs = 0
        self.largest_group = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reactor-disk", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Carry out every step submitted so far, then end the thread."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """`stop`, for a caller without a loop (blocks until the steps are done)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    async def run(self, step: Step[T]) -> T:
        """Carry `step` out and return its result, or raise what it raised."""
        if self._thread is None or not self._thread.is_alive():
            msg = "the disk writer is not running"
            raise RuntimeError(msg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Entry(step, loop, future))
        return await future

    def post(self, step: Step[Any]) -> None:
        """Carry `step` out in its turn without waiting for it (its errors are logged)."""
        if self._thread is not None:
            self._queue.put(_Entry(step, None, None))

    # ---------------------------------------------------------------- thread

    def _work(self) -> None:
        # yield to MinKNOW's writes, without being starved (reactor.runtime.io_priority)
        set_io_priority(IoClass.BEST_EFFORT, 7)
        in_flight: list[_Entry] = []
        stopping = False
        while True:
            if not in_flight:
                if stopping:
                    return
                entry = self._queue.get()
                if entry is None:
                    return
                self._admit(entry, in_flight)
            stopping = self._admit_waiting(in_flight) or stopping
            if in_flight and not self._round(in_flight):
                return

    def _admit(self, entry: _Entry, in_flight: list[_Entry]) -> None:
        if self._refuse_if_broken(entry):
            self._deliver(entry)
        else:
            in_flight.append(entry)

    def _admit_waiting(self, in_flight: list[_Entry]) -> bool:
        """Take the steps waiting, while fewer than `max_group` are in flight; True when
        the end was asked for (the steps before it are carried out first)."""
        while len(in_flight) < self.max_group:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return False
            if entry is None:
                return True
            self._admit(entry, in_flight)
        return False

    def _round(self, in_flight: list[_Entry]) -> bool:
        """One round: the next phase of every step in flight, oldest first, then one
        barrier; the steps whose last phase is durable are answered. False when the
        thread must end (see below)."""
        began = time.perf_counter()
        barrier = Sync(self.durable)
        for entry in in_flight:
            # Each step collects into a Sync of its own, handed to the barrier after its
            # phase: a step that gives up (`Sync.discard`) drops what it collected, never
            # what another step of the round is waiting to have fsynced.
            own = Sync(self.durable)
            phase = _PHASES[entry.phase]
            try:
                outcome = getattr(entry.step, phase)(own)
                if phase == "finish":
                    entry.result = outcome
            except DurabilityError as exc:  # a barrier inside a step
                self._break(exc)
                entry.error = exc
            except Exception as exc:
                entry.error = exc
            except BaseException as exc:
                # Not an error a step can have: the process is going (tests stand in
                # for kill -9 this way). Nothing more is written, as if it had gone.
                own.discard()
                barrier.discard()
                for other in in_flight:
                    if other.error is None:
                        other.error = exc
                    self._deliver(other)
                return False
            barrier.absorb(own)
        ran = list(in_flight)
        try:
            barrier.flush()
        except DurabilityError as exc:
            self._break(exc)
            for entry in ran:
                if entry.error is None:
                    entry.error = exc
        done = [entry for entry in ran if self._last_phase_done(entry)]
        in_flight[:] = [entry for entry in ran if entry not in done]
        self.groups += 1
        self.steps += len(done)
        self.shared += len(ran)
        self.fsyncs += barrier.fsyncs
        self.largest_group = max(self.largest_group, len(ran))
        if self.on_group is not None:
            self.on_group(len(ran), time.perf_counter() - began)
        for entry in done:
            self._deliver(entry)
        return True

    @staticmethod
    def _last_phase_done(entry: _Entry) -> bool:
        """Advance `entry` past the phase just run; True when nothing is left of it (it
        failed, or its last phase is durable: `finish`'s, for a step that does not tidy)."""
        entry.phase += 1
        if entry.error is not None or entry.phase == len(_PHASES):
            return True
        return _PHASES[entry.phase] == "tidy" and not entry.step.tidies

    def _refuse_if_broken(self, entry: _Entry) -> bool:
        if self.broken is None:
            return False
        entry.error = self.broken
        return True

    def _break(self, error: DurabilityError) -> None:
        if self.broken is not None:
            return
        self.broken = error
        log.critical("storage_failed", detail=str(error), action="reactor stops")
        if self.on_broken is not None:
            self.on_broken(error)

    @staticmethod
    def _deliver(entry: _Entry) -> None:
        if entry.future is None or entry.loop is None:
            if entry.error is not None:
                log.warning("disk_step_failed", detail=str(entry.error))
            return

        def resolve(future: asyncio.Future[Any] = entry.future) -> None:
            if future.cancelled():
                return
            if entry.error is not None:
                future.set_exception(entry.error)
            else:
                future.set_result(entry.result)

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            entry.loop.call_soon_threadsafe(resolve)
