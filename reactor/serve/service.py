"""The coordinator: runs each request and filesystem event through core and journal.

`Reactor` owns the one `RunState` and the one `Journal`. Everything here runs on the
event loop thread: HTTP handlers, the watcher bridge and the sweeper all call in, so
no locks are needed. Each mutating operation is: plan in the core (pure), carry the
plan out on disk (a journal step, on the writer's thread), then commit it in the
core, then log one event. Disk first: if the step fails before its decision is
committed (`JournalError`), memory is unchanged and the caller gets an error; if a step
after a committed decision fails (`Unfinished`), the decision stands, memory follows
it, and the job is held.

While a step is on the writer (`reactor.serve.writer`, which groups the steps waiting
into one commit), the loop serves other requests, so an operation claims what it
plans on: the files an assignment or a late merge takes are reserved in the core,
and one operation at a time runs on a job (`_turn`): a second report on the same job
waits for the first, and the sweeper leaves a busy job for its next pass. Each
operation runs detached from its caller, so memory follows the disk even when the
client hangs up or the service shuts down mid-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import os
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from reactor.core.endrun import RunEnd, is_stalled, phase_of
from reactor.core.events import Area, Change, FsEvent
from reactor.core.fleet import EngineWork, engines_seen
from reactor.core.model import Clock
from reactor.core.names import RESULT_FOLDERS, Folder, JobFolder, job_tag, output_stem
from reactor.core.params import min_qscore
from reactor.core.rate import Throughput
from reactor.core.readstats import JobReads, RunReads
from reactor.core.retry import FailureHistory
from reactor.core.state import (
    CompletionAction,
    CompletionPlan,
    EngineReport,
    FileState,
    Job,
    JobState,
    RunState,
)
from reactor.core.status import alerts, count_fields, hash_trouble, status_line, status_report
from reactor.disk.durable import DurabilityError, fsync_folder
from reactor.disk.engine_trees import Outputs
from reactor.disk.input_lister import worth_a_child
from reactor.disk.inputs import InputFolders
from reactor.disk.journal import (
    Chore,
    Journal,
    JournalError,
    Merged,
    Refused,
    SplitOutputs,
    Step,
    Unfinished,
)
from reactor.disk.lister_report import Report
from reactor.disk.read_requests import SplitRequest, UnreadableOutput
from reactor.disk.recovery import Recovered, recover, unrecorded_input
from reactor.disk.signature import check_pod5
from reactor.disk.state_dir import RUN, StateError
from reactor.runtime.heap import release_free_memory
from reactor.runtime.zone import host_time_zone
from reactor.serve.metrics import Metrics
from reactor.serve.read_worker import ReadWorker, ReadWorkerGone, shared_read_worker
from reactor.serve.start_scan import ChildLister, KnownOutputs, ListerFailed, StartScan
from reactor.serve.work_waiters import WorkWaiters
from reactor.serve.writer import DiskWriter
from reactor.settings.serve import ServeConfig

log = structlog.get_logger("reactor")
# The host's zone, read once: the dashboard shows the sequencer's clock in it.
HOST_TIME_ZONE = host_time_zone()
T = TypeVar("T")


@functools.cache
def reactor_version() -> str:
    """This package's version, for the @PG line of split BAMs; looked up when first
    needed (the lookup walks the installed packages: ~15 ms of every start)."""
    import importlib.metadata  # its own imports: ~5 ms of every start

    try:
        return importlib.metadata.version("pod5-reactor")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


MAX_BATCH_SIZE = 10_000
# An engine silent this long, with no live job and not benched, is forgotten: /status and
# the engine records stay bounded while engine ids come and go over months.
ENGINE_FORGET_S = 3600.0


# Start-up makes one record per file (10^6 in a site archive). While they are built the
# cyclic GC walks the growing heap again and again (a quarter of the build time, measured
# at 10^6 files), and each later full collection walks them all once more (~0.25 s of
# stalled loop per pass at 10^6 files). Records hold no reference cycles, so they are
# built with the collector paused and, for a large run, moved out of its sight.
FREEZE_HEAP_AT_FILES = 10_000
# The start-up scan gives the event loop a turn this often. An answer takes a few turns
# (accept, read, the handler, its step's result): with slices of 2,000 files (25 ms and
# more on a busy machine) the first answer waited ~0.5 s behind the scan.
SCAN_TURN_S = 0.004
# While the scan holds the GIL, a thread waiting for it (the writer carrying out an
# assignment: a few dozen system calls, each giving the GIL up) waits this long each
# time, not the default 5 ms: at 5 ms the first assignment took ~0.25 s.
SCAN_SWITCH_S = 0.0005
# How long the service waits at start for the report of a child started before its
# watch (it lists pass/ and fail/ meanwhile, as the service would otherwise).
REPORT_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _gc_paused(freeze: Callable[[], bool]) -> Iterator[None]:
    """Pause the cyclic GC; after the block, `gc.freeze()` what exists if `freeze()`."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze():
            gc.freeze()
        if was_enabled:
            gc.enable()


def _nothing() -> None:
    pass


def _ignore(_name: str, _is_folder: bool) -> None:
    pass


def _count_files(folder: Path) -> int:
    """How many entries a folder holds (0 when it is not there)."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for _ in entries)
    except OSError:
        return 0


def _decided(result: object) -> bool:
    """An expiry's result: decided on disk (even with steps left), or not."""
    return not isinstance(result, JournalError)


def new_job_id() -> str:
    """An unguessable job id: 128 random bits in decimal (the seed's shape, uuid4().int).
    A job id is the capability to report on its job (docs/protocol.md)."""
    return str(secrets.randbits(128))


@dataclass(frozen=True, slots=True)
class _RecoveredSummary:
    began: float  # perf_counter at the start of recovery
    recovered: Recovered


class Conflict(Exception):
    """A request that cannot be carried out in the job's current state (HTTP 409)."""


class StartupError(Exception):
    """The run as a whole cannot be served (its folders or its state folder unusable);
    the message names the real cause and what to do. One job's trouble never is one."""


class StepsLeft(Exception):
    """The report was decided and memory follows it, but a step on disk after the
    decision could not be carried out yet: the job is held until it is. Repeating the
    report tries the steps again; `Reactor.hold_for_good` says so in the log when the
    caller stops trying."""

    def __init__(self, plan: CompletionPlan, reason: str) -> None:
        super().__init__(reason)
        self.plan = plan
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReadRules:
    """How a run's reads are judged and split: the pass threshold, whether by barcode
    (None: as the reads say), the barcodes' aliases, and the run's basecall parameters
    (recorded with each job's reads)."""

    min_qscore: float
    barcoded: bool | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # the run's, as engines are told


@dataclass(slots=True)
class _ReadOutputs:
    """A job's outputs as the read worker found them, for its merge."""

    outputs: Outputs
    reads: JobReads | None
    split: SplitOutputs | None = None
    made_with: dict[str, str] | None = None


class Reactor:
    """The running service: state, journal, and the operations on them."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        clock: Clock = time.monotonic,
        journal: Journal | None = None,
        job_id_factory: Callable[[], str] = new_job_id,
        inputs: InputFolders | None = None,
        jobs_dir: Path | None = None,
        scan_child: bool | None = None,
        lister: ChildLister | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # Where the files are (INPUTDIR; a MinKNOW run's POD5 folders in host mode), and
        # where the folders of links handed to engines go (INPUTDIR unless told).
        self.inputs = inputs or InputFolders.flat(config.input_dir)
        jobs_dir = jobs_dir or config.input_dir
        self.journal = journal or Journal(
            jobs_dir,
            config.output_dir,
            durable=config.durable,
            link_target=self.inputs.link_target(jobs_dir),
        )
        self.state = RunState(
            config.max_attempts,
            bench_after=config.bench_after,
            bench_s=config.bench_seconds,
            engine_window_s=config.report_back_interval,
        )
        # Engines waiting for work (`/assignwork?wait_s=`), woken when a file is ready.
        self.waiters = WorkWaiters()
        self.state.ready_listener = self.waiters.notify
        self._new_job_id = job_id_factory
        self.ready = False
        self.throughput = Throughput(started_at=clock())
        self.reconciles = 0
        self.metrics = Metrics(self.state, clock)
        self._refused: set[str] = set()  # names refused once, so they are logged once
        self.run_end = RunEnd()  # set by reactor.serve.finisher: stop file seen, complete
        # FAILED_/UNKNOWN_ folder name -> (folder, the .pod5 names it quarantines)
        self.quarantine_folders: dict[str, tuple[JobFolder, list[str]]] = {}
        self.state_folder_new = False  # made at this start (see `Recovered`)
        # Why no work is handed out (the output filesystem below min_free_percent), if so.
        self.paused: str | None = None
        # The end-of-run cross-check with MinKNOW's output hash file, once done.
        self.hash_check: dict[str, Any] | None = None
        # The run-complete marker as the finisher last recorded it (/status "end")
        self.on_complete: dict[str, Any] | None = None
        self.last_news = clock()  # the last filesystem event of the run (for stalls)
        # Files of the run that are not in its queue yet but will be (staging): the run
        # cannot end while there are some.
        self.pending_elsewhere: Callable[[], int] = lambda: 0
        self.writer = DiskWriter(
            durable=config.durable, on_broken=self._storage_failed, on_group=self._committed
        )
        self.on_storage_failed: Callable[[], None] = lambda: None  # the app stops the service
        self._loop: asyncio.AbstractEventLoop | None = None
        # job id -> done when the step on disk about it is: one step per job at a time.
        self._busy: dict[str, asyncio.Future[None]] = {}
        self._operations: set[asyncio.Task[Any]] = set()
        self.metrics.disk_operations.set_function(lambda: len(self._operations))
        # The reads of merged jobs (exact: a job adds once, when its merge is decided),
        # read in a worker process before each merge (read_qc, or MinKNOW's layout).
        self.reads = RunReads()
        self.read_worker: ReadWorker | None = (
            shared_read_worker(config.read_workers)
            if config.read_qc or config.minknow_layout
            else None
        )
        # The run's rules for its reads (host mode: from the run's parameters).
        self.read_rules: Callable[[], ReadRules] = lambda: ReadRules(
            min_qscore({}, config.min_qscore)
        )
        self._next_batch = 0  # MinKNOW's layout: the next output batch number
        self.metrics.count_reads(lambda: self.reads)
        # The start-up scan while serving (`begin`, `scan`), and what it reports at its end.
        self._scan: StartScan | None = None
        self._recovered_summary: _RecoveredSummary | None = None
        self._reconcile_after_scan: str | None = None
        self._scan_task: asyncio.Task[None] | None = None
        # The scan's looks, in a child: started by `begin`, or before the service's watch
        # was up (`lister`: `reactor serve` starts it before its imports).
        self._lister: ChildLister | None = lister
        # Whether `begin` starts one: None, when INPUTDIR is large enough to gain by it
        # (`input_lister.worth_a_child`); tests say yes or no.
        self._scan_child = scan_child
        self._looked_by = "service"  # who looked at INPUTDIR's files at start (`recovered`)
        self._looks_began: str | None = None  # the children's: before the watch was up?
        self.on_ready: Callable[[], None] = _nothing  # told when the service becomes ready
        self._after_scan: list[Callable[[], None]] = []  # `when_scanned`

    # ------------------------------------------------------------ start

    def start(self) -> Recovered:
        """Rebuild state from disk (finishing half-done transitions), then scan INPUTDIR.
        Raises StartupError when the run folders themselves cannot be used."""
        with (
            self._startup_errors(),
            _gc_paused(freeze=lambda: len(self.state.files) >= FREEZE_HEAP_AT_FILES),
        ):
            return self._start()

    def begin(self) -> Recovered:
        """Rebuild state from disk as `start` does, but leave the scan of INPUTDIR to
        `scan()`: from here the service may hand out the files it knows to be ready (see
        docs/journal.md, "Serving during the start-up scan"). One run's folder only (host
        mode's runs `start`). Raises StartupError as `start` does."""
        with self._startup_errors(), _gc_paused(freeze=lambda: False):
            return self._begin()

    def start_scan(self) -> None:
        """Run `scan()` in the background (`stop()` cancels it)."""
        if self._scan is not None and self._scan_task is None:
            self._scan_task = asyncio.create_task(self.scan(), name="start-scan")

    async def scan(self) -> None:
        """The start-up scan after `begin()`, a slice at a time between requests; the
        service is ready at its end. A folder that cannot be read stops the service."""
        scan = self._scan
        if scan is None:
            return
        # Engines waiting for work are woken once per turn of the loop, not once per file
        # found. A request takes several turns (accept, read, handler, write), so the
        # loop turns every SCAN_TURN_S, not every few thousand files.
        listener = self.state.ready_listener
        clock = time.perf_counter
        switch_s = sys.getswitchinterval()
        sys.setswitchinterval(SCAN_SWITCH_S)
        turn_at = clock() + SCAN_TURN_S

        async def turn() -> None:
            nonlocal turn_at
            if clock() < turn_at:
                return
            silenced = self.state.ready_listener
            self.state.ready_listener = listener
            listener()
            await asyncio.sleep(0)
            self.state.ready_listener = silenced
            turn_at = clock() + SCAN_TURN_S

        try:
            with _gc_paused(freeze=lambda: len(self.state.files) >= FREEZE_HEAP_AT_FILES):
                if not await self._scan_in_child(scan, turn, listener):
                    self.state.ready_listener = _nothing
                    for _ in scan.slices():
                        await turn()
                scan.finish()
            release_free_memory()  # the final sort's temporaries (reactor.runtime.heap)
        except OSError as exc:
            where = exc.filename or self.config.input_dir
            log.error(
                "scan_failed",
                folder=str(where),
                detail=exc.strerror or str(exc),
                action="check that input_dir is a folder this user can read",
            )
            self._stop_serving()
            return
        except Exception as exc:  # a bug: never leave the service scanning for ever
            log.exception("scan_failed", detail=str(exc))
            self._stop_serving()
            return
        finally:
            self.state.ready_listener = listener
            sys.setswitchinterval(switch_s)
        self._scan = None
        self._ready_now(self._recovered_summary)
        if self._reconcile_after_scan is not None:
            self.reconcile(self._reconcile_after_scan)
            self._reconcile_after_scan = None
        after, self._after_scan = self._after_scan, []
        for action in after:
            try:
                action()
            except Exception as exc:  # one that fails stops neither the others nor the scan
                log.exception("after_scan_failed", detail=str(exc))

    async def _scan_in_child(
        self, scan: StartScan, turn: Callable[[], Awaitable[None]], listener: Callable[[], None]
    ) -> bool:
        """The start-up scan with its looks made by the child `begin` started, if it
        did (`reactor.disk.input_lister`); whether it went to its end. A child that
        fails is logged, and the scan goes on in the service (`slices`): what was
        recorded already is only marked present again."""
        lister = self._lister
        if lister is None:
            return False
        state = self.state
        try:
            # Closed (its pipe out of the loop's sight) before the child is stopped.
            async with contextlib.aclosing(lister.chunks()) as chunks:
                async for listed in chunks:
                    # Engines are woken once a chunk, not once a file; between chunks,
                    # while the pipe is awaited, every file that becomes ready wakes them.
                    ready = state.counts()[FileState.READY]
                    state.ready_listener = _nothing
                    scan.take(listed)
                    state.ready_listener = listener
                    if state.counts()[FileState.READY] > ready:
                        listener()
                    await turn()
        except ListerFailed as exc:
            self._lister_failed(exc)
            return False
        finally:
            self._stop_lister()
        self._looked_by = "children"
        self._looks_began = "before_watch" if lister.until_watched else "after_watch"
        return True

    def _changed_unwatched(self, scan: StartScan, names: list[str], done: set[str]) -> None:
        """`.pod5` names the child saw change before the service's watch was up: looked
        at now, as that watch's events would have been (without their times: no
        ingest latency is counted for them). `done`: those an output names (the
        child's list, or one made since), recorded done as the scan records them."""
        now = self.clock()
        files = self.state.files
        for name in names:
            if not self.inputs.accepts(name):
                continue
            scan.changed(name)  # its look in a chunk still to come is not believed
            if not os.path.lexists(self.inputs.path(name)):
                if (state := self.state.file_gone(name, now)) is not None:
                    log.info("file_gone", name=name, state=state)
            elif name in done and name not in files:
                self.state.restore_done_found([name], now)
            else:
                self._check_input(name, now)

    def _stop_lister(self) -> None:
        """End the child `begin` started, if it is still there (read or not)."""
        if self._lister is not None:
            self._lister.stop()
            self._lister = None

    def _lister_failed(self, exc: ListerFailed) -> None:
        log.warning(
            "scan_child_failed",
            folder=str(self.inputs.main),
            detail=str(exc),
            action="none: the service looks at INPUTDIR's files itself (slower)",
        )

    @property
    def scanning(self) -> bool:
        """Serving before ready: the start-up scan goes on (`begin()`, then `scan()`)."""
        return self._scan is not None

    def when_scanned(self, action: Callable[[], None]) -> None:
        """`action()` now, or once the start-up scan is over if it goes on: work that
        would take the CPU from the scan (starting the read workers) waits for it."""
        if self.scanning:
            self._after_scan.append(action)
        else:
            action()

    @contextlib.contextmanager
    def _startup_errors(self) -> Iterator[None]:
        try:
            yield
        except StateError as exc:
            raise StartupError(exc.strerror or str(exc)) from exc
        except OSError as exc:
            where = exc.filename or self.config.output_dir
            msg = (
                f"cannot read the run folders ({where}: {exc.strerror or exc}): check that "
                "input_dir and output_dir are folders this user can read and write"
            )
            raise StartupError(msg) from exc

    async def stop(self) -> None:
        """Let the operations under way reach the disk, then end the writer's thread."""
        self.ready = False
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
        self._stop_lister()  # started by `begin`, and the scan never ran
        while self._operations:
            await asyncio.wait(list(self._operations))
        await self.writer.stop()

    # ------------------------------------------------------- the disk's turn

    async def _detached(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run an operation to its end even if its caller goes away (a client that hangs
        up, a sweeper cancelled at shutdown): memory must follow what reached the disk."""
        task = asyncio.ensure_future(operation)
        self._operations.add(task)
        task.add_done_callback(self._operations.discard)
        return await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def _turn(self, job_id: str) -> AsyncIterator[None]:
        """One operation at a time on a job: a second report, an expiry, a retry of its
        steps wait until the step under way is on disk and memory follows it."""
        while (busy := self._busy.get(job_id)) is not None:
            await asyncio.shield(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._busy[job_id] = done
        try:
            yield
        finally:
            del self._busy[job_id]
            done.set_result(None)

    @property
    def operations_in_flight(self) -> int:
        """Operations under way: their steps on the disk or waiting for it."""
        return len(self._operations)

    def _committed(self, steps: int, seconds: float) -> None:
        """(On the writer's thread; the metrics are thread-safe.) A group was committed."""
        self.metrics.disk_group_steps.observe(steps)
        self.metrics.disk_commit_seconds.observe(seconds)

    async def _write(self, step: Step[T]) -> T:
        """Carry a step out on the writer's thread; the loop serves others meanwhile."""
        if self.writer.broken is not None:
            raise self.writer.broken
        return await self.writer.run(step)

    def _storage_failed(self, error: DurabilityError) -> None:
        """(On the writer's thread.) An fsync failed: stop serving, and stop the service."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_serving)

    def _stop_serving(self) -> None:
        self.ready = False
        self.on_storage_failed()

    def _start(self) -> Recovered:
        began = time.perf_counter()
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        now = self.clock()
        recovered = self._recover(now)
        stems = self.journal.result_stems()
        others = self._unrecorded_inputs(recovered)
        self._scan_inputs(now, recovered.history, recovered.handed_back, stems, others)
        for job in recovered.finished:
            self.state.restore_job(job)
        self._restored(recovered, now)
        self._ready_now(_RecoveredSummary(began, recovered))
        return recovered

    def _begin(self) -> Recovered:
        began = time.perf_counter()
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        # The watch is up: the child may list INPUTDIR (and the outputs) while recovery
        # runs. Recovery touches no `.pod5` there; what it removes the scan meets gone.
        if self._lister is not None:  # started before the watch: it watched until now
            self._lister.watching()
        else:
            self._start_lister()
        try:
            return self._recover_to_serve(began)
        except BaseException:
            self._stop_lister()  # it would wait for a reader for ever
            raise

    def drop_early_lister(self, why: str) -> bool:
        """End a child started before the service's watch (before `begin`), if there
        is one: its own watch holds an inotify instance, which the service's watch may
        need (the per-user limit). Whether there was one; `begin` then starts one
        after the watch."""
        lister = self._lister
        if lister is None or not lister.until_watched:
            return False
        self._lister_failed(ListerFailed(why))
        self._stop_lister()
        return True

    def _start_lister(self) -> None:
        """Start the child that looks at INPUTDIR's files, after the watch, if the
        folder is large enough to gain by it."""
        if (folder := self.inputs.plain) is not None and self._wants_child(folder):
            try:
                self._lister = ChildLister.start(folder, self.config.output_dir)
            except ListerFailed as exc:
                self._lister_failed(exc)

    def _wants_child(self, folder: Path) -> bool:
        """Whether the scan's looks go to a child process: a child takes ~30 ms to
        start, the looks at a few hundred files less, so only for a folder whose size
        says it holds thousands of names (a folder's size grows with its entries)."""
        if self._scan_child is not None:
            return self._scan_child
        return worth_a_child(folder)

    def _recover_to_serve(self, began: float) -> Recovered:
        now = self.clock()
        recovered = self._recover(now)
        outputs, changed, changed_done = self._outputs_at_start()
        scan = StartScan(
            self.state,
            self.inputs,
            outputs,
            recovered.history,
            recovered.handed_back,
            self._refuse,
            now,
            self._unrecorded_inputs(recovered),
        )
        # What the journal knows of goes in by name first (few names): failures and
        # hand-backs at the front, finished jobs' files known before their jobs.
        finished_files = {name for job in recovered.finished for name in job.files}
        scan.front(recovered.handed_back.union(recovered.history, finished_files))
        for job in recovered.finished:
            self.state.restore_job(job)
        live_files = [name for job in recovered.live for name in job.files]
        scan.mark_present([*live_files, *recovered.quarantined])
        self._changed_unwatched(scan, changed, changed_done)
        self._restored(recovered, now)
        self._scan = scan
        self._recovered_summary = _RecoveredSummary(began, recovered)
        self.waiters.notify()  # files found ready before the service could hand them out
        log.info(
            "serving_before_scan",
            duration_s=round(time.perf_counter() - began, 3),
            **self.count_fields(),
        )
        return recovered

    def _outputs_at_start(self) -> tuple[KnownOutputs, list[str], set[str]]:
        """What the scan knows of pass/ and fail/ (the seed's done rule), the INPUTDIR
        names that changed before the service's watch was up, and which of those are
        done by an output. A child started before the watch listed the outputs under
        its own watch, and says what changed until this one was up
        (`ChildLister.report`): its looks say what is done, with the outputs made
        meanwhile. Otherwise (or if it cannot say: it is ended, and one is started
        now, after the watch; or an output went meanwhile: `_outputs_made`), the
        service lists them, after its watch."""
        lister = self._lister
        changed: list[str] = []
        if lister is not None and lister.until_watched:
            try:
                report = lister.report(REPORT_TIMEOUT_S)
            except ListerFailed as exc:
                self._lister_failed(exc)
                self._stop_lister()
                self._start_lister()
            else:
                changed = report.changed_inputs
                if (made := self._outputs_made(report)) is not None:
                    outputs = KnownOutputs(self.journal.result_stems, child_decides=True, made=made)
                    done = report.changed_done.union(n for n in changed if n[:-5] in made)
                    return outputs, changed, done
        outputs = KnownOutputs(self.journal.result_stems)
        stems = outputs.stems()  # listed now, before serving: the names looked at first need it
        return outputs, changed, {name for name in changed if name[:-5] in stems}

    def _outputs_made(self, report: Report) -> set[str] | None:
        """The stems of the outputs a child's report says were made meanwhile (a symlink
        too: the service's own listing counts it); None if one was removed meanwhile: a
        look's DONE may then be stale, and the service decides by its own listing (rare:
        the window is the service's imports)."""
        made: set[str] = set()
        results = [self.config.output_dir / kind for kind in RESULT_FOLDERS]
        for name in report.changed_outputs:
            if (stem := output_stem(name)) is None:
                continue
            if not any(os.path.lexists(folder / name) for folder in results):
                return None
            made.add(stem)
        return made

    def _recover(self, now: float) -> Recovered:
        """The journal's state in the core: done, quarantined, live jobs."""
        self.ensure_result_folders()
        recovered = recover(
            self.journal,
            now,
            self.config.report_back_interval,
            scan_lists_inputs=self.inputs.lists(self.journal.input_dir),
        )
        state = self.state
        for name in recovered.done:
            state.restore_done(name, now)
        for name in recovered.quarantined:
            history = recovered.history.get(name)
            state.restore_quarantined(name, history.failures if history else 0, now)
        for job in recovered.live:
            state.restore_job(job)
        return recovered

    def _restored(self, recovered: Recovered, now: float) -> None:
        """The rest of recovery, once every job is in the core: leases that ran out while
        down expire now, and the writer starts (work may be handed out from here)."""
        self.quarantine_folders = dict(recovered.quarantine_folders)
        self.state_folder_new = recovered.state_folder_new
        self.reads = recovered.reads
        self._next_batch = recovered.next_batch
        for what, folder in recovered.repairs:
            log.warning("recovery_repair", repair=what, folder=folder)
        for job_id, reason in recovered.held.items():
            self._hold(self.state.jobs[job_id], reason)
        self.state.last_activity = now
        # Leases run from the last keepalive on disk: expire now what ran out while down.
        self._expire_now(now)
        self.writer.start()

    def _unrecorded_inputs(self, recovered: Recovered) -> Callable[[str, bool], None]:
        """For the scan of INPUTDIR, when recovery left its job folders to it: each entry
        that is not a `.pod5` is settled as recovery's own listing would have done
        (`reactor.disk.recovery.unrecorded_input`), the repair logged and counted."""
        if not self.inputs.lists(self.journal.input_dir):
            return _ignore
        input_dir = self.journal.input_dir
        recorded, jobs = recovered.recorded, self.state.jobs

        def known(job_id: str) -> bool:
            return job_id in recorded or job_id in jobs

        def meet(name: str, is_folder: bool) -> None:
            repair = unrecorded_input(input_dir, name, is_folder, known)
            if repair is not None:
                recovered.repairs.append((repair, name))
                log.warning("recovery_repair", repair=repair, folder=name)

        return meet

    def _ready_now(self, summary: _RecoveredSummary | None) -> None:
        self.ready = True
        self.waiters.notify()  # files found ready before the service could hand them out
        if summary is not None:
            recovered = summary.recovered
            log.info(
                "recovered",
                duration_s=round(time.perf_counter() - summary.began, 3),
                live_jobs=len(recovered.live),
                finished_jobs=len(recovered.finished),
                repairs=len(recovered.repairs),
                looked_by=self._looked_by,
                **({"looks_began": self._looks_began} if self._looks_began else {}),
                **self.count_fields(),
            )
        self.on_ready()

    def _scan_inputs(
        self,
        now: float,
        history: dict[str, FailureHistory],
        handed_back: set[str],
        stems: set[str],
        others: Callable[[str, bool], None],
    ) -> None:
        """Every `.pod5` not accounted for by the journal: done by the seed's rule,
        else ready or incomplete by its signature. Queued oldest first, files that failed
        before or were handed back (`handed_back`, from released jobs) in front."""
        found: list[tuple[float, str, bool]] = []
        files = self.state.files
        # Once per file at start (10^6 files): no Path objects, `entry.path` as it is.
        for entry in self.inputs.scan(others):
            name = entry.name
            record = files.get(name)
            if record is not None:
                record.present = True
                continue
            if name[:-5] in stems:  # is_pod5_name: it ends in ".pod5"
                self.state.restore_done(name, now)
                files[name].present = True
                continue
            if entry.is_symlink() and self._refuse(name):
                continue
            check = check_pod5(entry.path)
            if check is None:
                continue
            found.append((check.mtime, name, check.complete))
        found.sort()
        # Files that failed before or were handed back go to the front, oldest first:
        # file_seen puts each at the front, so feed them newest first, after the others.
        front = handed_back.union(history)  # few: the files of failed and released jobs
        fresh = [entry for entry in found if entry[1] not in front]
        again = [entry for entry in reversed(found) if entry[1] in front]
        for _mtime, name, complete in fresh + again:
            self.state.file_seen(
                name,
                complete=complete,
                now=now,
                history=history.get(name),
                front=name in handed_back,
            )

    # ----------------------------------------------------------- requests

    async def assign(
        self, engine_id: str, batch_size: int, *, takes_params: bool = False
    ) -> Job | None:
        """Hand up to `batch_size` ready files to `engine_id`; None when there are none.
        (`takes_params`: whether the engine can be told basecall parameters; one run's
        service has none to tell.)"""
        return await self._detached(self._assign(engine_id, batch_size))

    async def _assign(self, engine_id: str, batch_size: int) -> Job | None:
        now = self.clock()
        size = self.config.batch_size if batch_size <= 0 else min(batch_size, MAX_BATCH_SIZE)
        if self.paused is not None:
            self.state.engine_polled(engine_id, now)
            return None
        plan = self.state.plan_assignment(engine_id, size, now)
        if plan.empty:
            self.state.engine_polled(engine_id, now)
            return None
        job_id = self._new_job_id()
        while job_id in self.state.jobs:  # 128 random bits: never, but cheap to be sure
            job_id = self._new_job_id()
        # The files are this assignment's until it is on disk: no other request takes
        # them, and no late DONE of the job they expired from merges meanwhile.
        self.state.reserve(plan.files)
        try:
            for expired_id in plan.supersede:
                await self._supersede(self.state.jobs[expired_id])
            job = Job(
                job_id=job_id,
                engine_id=engine_id,
                files=dict(plan.files),
                state=JobState.ASSIGNED,
                assigned_at=now,
                last_seen=now,
                lease_s=self.config.report_back_interval,
            )
            await self._write(self.journal.assign_step(job))
        except BaseException:
            self.state.unreserve(plan.files)
            raise
        now = self.clock()  # the lease runs from the answer, not from the plan
        job = self.state.commit_assignment(plan, job_id, now, self.config.report_back_interval)
        self.metrics.assignments.inc()
        log.info(
            "job_assigned",
            job_id=job_id,
            engine_id=engine_id,
            files=len(job.files),
            attempt=max(job.files.values()),
        )
        return job

    async def _supersede(self, expired: Job) -> None:
        """Set an expired job's outputs aside for good (its files go out again)."""
        async with self._turn(expired.job_id):
            if expired.superseded:
                return
            try:
                await self._write(self.journal.supersede_step(expired))
            except Unfinished as exc:
                self._hold(expired, exc.reason)
            self.state.supersede(expired)  # on disk already: memory follows at once
            log.info("job_superseded", job_id=expired.job_id, engine_id=expired.engine_id)

    def keepalive(self, job_id: str, engine_state: str) -> bool:
        """Extend the job's lease. True means the job is late and the engine must stop."""
        late = self.state.keepalive(job_id, engine_state, self.clock())
        job = self.state.jobs[job_id]
        if late:
            log.info("keepalive_late", job_id=job_id, engine_id=job.engine_id, state=job.state)
        else:
            # The mark on disk is best effort: the answer does not wait for it.
            self.writer.post(Chore(functools.partial(self.journal.renew_lease, job)))
            log.debug("keepalive", job_id=job_id, engine_id=job.engine_id, state=engine_state)
        return late

    async def complete(self, job_id: str, job_state: str) -> CompletionPlan:
        """Carry out an engine's /completed report. Raises Conflict for a 409, and
        StepsLeft when the decision's steps on disk could not all be carried out."""
        outcome = EngineReport.parse(job_state)
        self.state.job(job_id)  # UnknownJob before anything waits
        return await self._detached(self._complete(job_id, job_state, outcome))

    async def _complete(self, job_id: str, job_state: str, outcome: EngineReport) -> CompletionPlan:
        async with self._turn(job_id):
            plan = self.state.plan_completion(job_id, outcome, self.clock())
            if plan.action is CompletionAction.REPEAT and self._unfinished(plan.job):
                await self._finish_steps(plan)  # the report again: carry on with what is left
                return plan
            # A late DONE merges files that are ready again: keep them from other engines.
            late = plan.action is CompletionAction.MERGE and not plan.job.live
            reserved = list(plan.job.files) if late else []
            self.state.reserve(reserved)
            try:
                plan, merged, unfinished = await self._carry_out(plan, job_state)
                return self._completed(plan, job_state, merged, unfinished)
            finally:
                self.state.unreserve(reserved)

    async def _carry_out(
        self, plan: CompletionPlan, job_state: str
    ) -> tuple[CompletionPlan, Merged, str | None]:
        """The plan's decision on disk: (the plan as carried out, what was merged, the
        steps left if some could not be carried out)."""
        job = plan.job
        action = plan.action
        journal = self.journal
        merged = Merged()
        decided: JobReads | None = None
        try:
            if action is CompletionAction.MERGE:
                try:
                    read = await self._read_outputs(job)
                    if read is None:
                        merged = await self._write(journal.merge_step(job))
                    else:
                        reads = None if read.reads is None else read.reads.to_json()
                        step = journal.merge_step(
                            job, read.outputs, reads, read.split, read.made_with
                        )
                        decided = read.reads
                        merged = await self._write(step)
                        self._count_reads(job, decided, merged)
                except Refused as refused:
                    decided = None
                    plan = self.state.plan_refusal(plan, str(refused))
                    await self._write(journal.refuse_step(job, plan.reason))
            elif action is CompletionAction.FAIL:
                await self._write(journal.fail_step(job, plan.requeue, plan.quarantine))
            elif action is CompletionAction.RELEASE:
                await self._write(journal.hand_back_step(job))
            elif action is CompletionAction.SET_ASIDE:
                await self._write(journal.set_aside_step(job, job_state))
            elif action is CompletionAction.LATE_NOT_MERGED and plan.supersede:
                await self._write(journal.supersede_step(job))
        except Unfinished as exc:  # decided on disk: memory follows, the job is held
            if decided is not None and plan.action is CompletionAction.MERGE:
                self._count_reads(job, decided, None)
            return plan, merged, exc.reason
        return plan, merged, None

    async def _read_outputs(self, job: Job) -> _ReadOutputs | None:
        """The job's outputs read in the worker process, read by read (and in MinKNOW's
        layout written again, split, into its split folder); None when reads are not
        read. Refused when the outputs break the rules, or cannot be split."""
        worker = self.read_worker
        if worker is None:
            return None
        split = self.config.minknow_layout
        rules = self.read_rules()
        batch = None
        if split:
            batch, self._next_batch = self._next_batch, self._next_batch + 1
        journal = self.journal
        request = SplitRequest(
            output_dir=str(journal.output_dir.absolute()),
            folder=journal.output_folder(job, Folder.TMPOUTPUT).name,
            tag=job_tag(job.job_id),
            pod5_paths=tuple(str(self.inputs.path(name).absolute()) for name in sorted(job.files)),
            min_qscore=rules.min_qscore,
            barcoded=rules.barcoded,
            aliases=dict(rules.aliases),
            batch=batch,
            stage=str(journal.split_folder(job.job_id).absolute()) if split else None,
            output_format=self.config.output_format,
            provenance={"job": job.job_id, "engine": job.engine_id, "version": reactor_version()},
        )
        problem: Exception | None = None
        result = None
        try:
            result = await worker.split(request)
        except Refused:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
                # the output filesystem, not the engine: not decided, the engine retries
                msg = f"could not write the reads of job {job.job_id} again: {exc}"
                raise JournalError(msg) from exc
            problem = exc
        except Exception as exc:  # anything the reads did to the worker: the engine's
            problem = exc
        if problem is not None or result is None:
            detail = " ".join(str(problem).split()) or type(problem).__name__
            if problem is not None and not isinstance(problem, UnreadableOutput | ReadWorkerGone):
                detail = f"{type(problem).__name__}: {detail}"
            if split:
                msg = f"its reads could not be split: {detail}"
                raise Refused(msg) from None
            log.warning("reads_unreadable", job_id=job.job_id, engine_id=job.engine_id,
                        detail=detail)  # fmt: skip
            return None
        for warning in result.warnings:
            log.warning("reads_warning", job_id=job.job_id, detail=warning)
        made_with = {
            **rules.params,
            "min_qscore": f"{rules.min_qscore:g}",
            "output_layout": "minknow" if split else "seed",
            "reactor": reactor_version(),
        }
        if not split:
            return _ReadOutputs(result.outputs, result.reads, made_with=made_with)
        assert batch is not None  # noqa: S101  # set above for the split
        return _ReadOutputs(
            result.outputs,
            result.reads,
            SplitOutputs(tuple(result.written), tuple(result.read_from), batch),
            made_with,
        )

    def _count_reads(self, job: Job, reads: JobReads | None, merged: Merged | None) -> None:
        """A merge is decided: its reads count, once (timed by its record's wall clock,
        as recovery times them; a merge whose steps were cut short, by this one)."""
        if reads is None:
            return
        now = time.time()
        if merged is not None and merged.decided_at:
            busy_s, merged_at = merged.decided_at - merged.assigned_at, merged.decided_at
        else:
            busy_s, merged_at = self.clock() - job.assigned_at, now
        self.reads.add(reads, engine_id=job.engine_id, busy_s=busy_s, merged_at=merged_at)

    def _completed(
        self, plan: CompletionPlan, job_state: str, merged: Merged, unfinished: str | None
    ) -> CompletionPlan:
        """Memory follows the decision on disk; the report is logged."""
        job = plan.job
        now = self.clock()
        engine = self.state.engines.get(job.engine_id)
        benched_before = engine.benched_until if engine else 0.0
        self.state.apply_completion(plan, now)
        engine = self.state.engines[job.engine_id]
        if engine.benched_until > benched_before:
            log.warning(
                "engine_benched",
                engine_id=job.engine_id,
                failed_batches=self.config.bench_after,
                duration_s=self.config.bench_seconds,
            )
        self._quarantine_kept(plan, job_state)
        self._log_completion(plan, job_state, merged, now)
        if unfinished is not None:
            self.state.hold(job.job_id, unfinished)
            raise StepsLeft(plan, unfinished)
        if plan.action is CompletionAction.CONFLICT:
            raise Conflict(plan.reason)
        return plan

    def _quarantine_kept(self, plan: CompletionPlan, job_state: str) -> None:
        """Remember the quarantine folder a FAILED or unknown report made, for requeue."""
        job = plan.job
        if plan.action is CompletionAction.FAIL and plan.quarantine:
            folder = JobFolder(Folder.FAILED, job.job_id, job.engine_id)
            self.quarantine_folders[folder.name] = (folder, sorted(plan.quarantine))
        elif plan.action is CompletionAction.SET_ASIDE:
            folder = JobFolder(Folder.UNKNOWN, job.job_id, job.engine_id)
            self.quarantine_folders[folder.name] = (folder, sorted(job.files))

    def _unfinished(self, job: Job) -> bool:
        """Held because steps of its decision are left (not a refused job)."""
        return bool(job.reason) and job.state is not JobState.REFUSED

    async def _finish_steps(self, plan: CompletionPlan) -> None:
        """Carry out what is left of a held job's decision; StepsLeft if still stuck."""
        job = plan.job
        try:
            await self._write(Chore(functools.partial(self._finish_from_record, job)))
        except Unfinished as exc:
            job.reason = exc.reason
            raise StepsLeft(plan, exc.reason) from None
        self.state.unhold(job.job_id)
        log.info("job_no_longer_held", job_id=job.job_id, engine_id=job.engine_id)

    def _finish_from_record(self, job: Job) -> None:
        """(On the writer's thread.) The steps left of the decision the job's record says."""
        record = self.journal.read_record(job.job_id)
        if record is not None:
            self.journal.finish(job, record)

    def hold_for_good(self, job_id: str) -> None:
        """The caller stops trying the steps left of this job now: say so, once."""
        job = self.state.jobs.get(job_id)
        if job is not None and self._unfinished(job):
            self._hold(job, job.reason)

    def _hold(self, job: Job, reason: str) -> None:
        """Hold a job for a person: a step on disk that could not be carried out (its
        decision stands), or outputs refused. Every other job goes on."""
        self.state.hold(job.job_id, reason)
        log.error(
            "job_held",
            job_id=job.job_id,
            engine_id=job.engine_id,
            state=str(job.state),
            reason=reason,
            action=(
                "look at the job's folders; reactor tries the steps left again at each "
                "reconcile and at the next start"
                if job.state is not JobState.REFUSED
                else "its outputs were kept aside, not merged; its files went to other engines"
            ),
        )

    async def finish_held(self) -> None:
        """Try again the steps left of held jobs whose decision could not be carried out
        (refused jobs stay held: there is nothing left to do for them)."""
        await self._detached(self._finish_held())

    async def _finish_held(self) -> None:
        for job in [j for j in self.state.held_jobs() if j.state is not JobState.REFUSED]:
            if job.job_id in self._busy:
                continue  # its report is being carried out: that tries the steps too
            async with self._turn(job.job_id):
                try:
                    await self._write(Chore(functools.partial(self._finish_from_record, job)))
                except (Unfinished, ValueError, KeyError, TypeError, OSError) as exc:
                    log.debug("job_still_held", job_id=job.job_id, detail=str(exc))
                    continue
                self.state.unhold(job.job_id)
                log.info("job_no_longer_held", job_id=job.job_id, engine_id=job.engine_id)

    def _log_completion(
        self, plan: CompletionPlan, job_state: str, merged: Merged, now: float
    ) -> None:
        job = plan.job
        fields: dict[str, Any] = {
            "job_id": job.job_id,
            "engine_id": job.engine_id,
            "files": len(job.files),
            "duration_s": round(now - job.assigned_at, 3),
        }
        action = plan.action
        if action in (
            CompletionAction.MERGE,
            CompletionAction.FAIL,
            CompletionAction.RELEASE,
            CompletionAction.SET_ASIDE,
        ):
            self.metrics.completions.labels(outcome=str(plan.outcome)).inc()
        if action is CompletionAction.REFUSE:
            self.metrics.completions.labels(outcome="REFUSED").inc()
            log.error(
                "job_refused",
                reason=plan.reason,
                requeued=len(plan.requeue),
                folder=self.journal.output_folder(job, Folder.REFUSEDOUTPUT).name,
                **fields,
            )
        if action is CompletionAction.MERGE:
            self.metrics.job_seconds.observe(now - job.assigned_at)
            self.throughput.record(now, len(job.files))
            log.info("job_done", outputs=merged.moved, **fields)
            if merged.kept:
                folder = self.journal.output_folder(job, Folder.LOGOUTPUT).name
                self.metrics.outputs_not_merged.inc(len(merged.kept))
                log.error(
                    "outputs_not_merged",
                    outputs=merged.kept,
                    folder=folder,
                    action=(
                        f"each is kept in {folder}, with why: a name taken in pass/ or "
                        "fail/ (compare the two), or an entry that changed after the job "
                        "reported DONE; move what belongs by hand"
                    ),
                    **fields,
                )
        elif action is CompletionAction.FAIL:
            self.metrics.retried_files.inc(len(plan.requeue))
            self.metrics.quarantined_files.inc(len(plan.quarantine))
            log.warning(
                "job_failed",
                requeued=len(plan.requeue),
                quarantined=len(plan.quarantine),
                attempt=max(job.files.values()),
                **fields,
            )
            for name in plan.quarantine:
                record = self.state.files[name]
                log.error(
                    "file_quarantined",
                    name=name,
                    job_id=job.job_id,
                    reason="failed_alone",
                    attempt=record.solo_failures,
                    engines=sorted(record.failed_on),
                )
        elif action is CompletionAction.RELEASE:
            self.metrics.released_files.inc(len(plan.requeue))
            log.info("job_released", **fields)
        elif action is CompletionAction.SET_ASIDE:
            self.metrics.quarantined_files.inc(len(job.files))
            log.warning("job_set_aside", state=job_state, **fields)
        elif action is CompletionAction.LATE_NOT_MERGED:
            kept = Folder.REFUSEDOUTPUT if job.state is JobState.REFUSED else Folder.EXPIREDOUTPUT
            folder = self.journal.output_folder(job, kept).name
            log.warning("late_done_not_merged", reason=plan.reason, folder=folder, **fields)
        elif action is CompletionAction.CONFLICT:
            log.warning("completion_rejected", reason=plan.reason, state=job_state, **fields)
        else:
            log.info("completion_repeated", action=str(action), state=job_state, **fields)

    async def requeue(self, folders: list[str] | None) -> dict[str, list[str]]:
        """Release quarantine folders (FAILED_…/UNKNOWN_…; all when `folders` is None):
        their files go back to the front of the queue with fresh attempts. Returns the
        released file names by folder. Raises KeyError naming an unknown folder."""
        found = self.quarantine_folders
        wanted = list(found) if folders is None else folders
        unknown = [name for name in wanted if name not in found]
        if unknown:
            raise KeyError(unknown[0])
        return await self._detached(self._requeue(wanted))

    async def _requeue(self, wanted: list[str]) -> dict[str, list[str]]:
        found = self.quarantine_folders
        released: dict[str, list[str]] = {}
        for name in wanted:
            if name not in found:
                continue  # released by a request that ran meanwhile
            folder, names = found[name]
            baseline = {n: self.state.files[n].failures for n in names if n in self.state.files}
            await self._write(self.journal.requeue_step(folder, baseline))
            if name not in found:
                continue
            del found[name]
            released[name] = self.state.release_quarantined(names, self.clock())
            log.warning("quarantine_released", folder=name, files=len(released[name]))
        return released

    # ------------------------------------------------------------ sweeper

    def forget_idle_engines(self, now: float) -> None:
        """Forget engines gone for ENGINE_FORGET_S (no live job, not benched)."""
        gone = self.state.forget_idle_engines(now, ENGINE_FORGET_S)
        if gone:
            log.info("engines_forgotten", engines=len(gone), idle_s=ENGINE_FORGET_S)

    async def expire_due(self, now: float) -> list[Job]:
        """Expire every live job whose lease ran out before `now` (one group on disk);
        a job whose report is being carried out is left to it."""
        return await self._detached(self._expire_due(now))

    async def _expire_due(self, now: float) -> list[Job]:
        due = [job for job in self.state.expired_jobs(now) if job.job_id not in self._busy]
        if not due:
            return []
        async with contextlib.AsyncExitStack() as turns:
            for job in due:
                await turns.enter_async_context(self._turn(job.job_id))
            results = await asyncio.gather(
                *(self._write(self.journal.expire_step(job)) for job in due),
                return_exceptions=True,
            )
            for job, result in zip(due, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(
                    result, (JournalError, Unfinished)
                ):
                    raise result
                self._expired(job, result, now)
        return [job for job, result in zip(due, results, strict=True) if _decided(result)]

    def _expire_now(self, now: float) -> None:
        """At start, before the writer runs: expire what ran out while reactor was down."""
        for job in self.state.expired_jobs(now):
            try:
                self.journal.expire(job)
            except (JournalError, Unfinished) as exc:
                self._expired(job, exc, now)
            else:
                self._expired(job, None, now)

    def _expired(self, job: Job, result: object, now: float) -> None:
        """Memory follows an expiry on disk (`result`: its error, if it had one)."""
        if isinstance(result, JournalError):  # not decided: this job stays live
            log.error("expiry_failed", job_id=job.job_id, detail=str(result))
            return
        self.state.expire(job.job_id, now)
        if isinstance(result, Unfinished):
            self._hold(job, result.reason)
        self.metrics.expiries.inc()
        log.warning(
            "job_expired",
            job_id=job.job_id,
            engine_id=job.engine_id,
            files=len(job.files),
            silent_s=round(now - job.last_seen, 3),
        )

    async def check_space(self) -> None:
        """Pause handing out work while the output filesystem is below min_free_percent,
        resume 1 point above it (the reading is on a worker thread: the loop never waits
        on a filesystem, an NFS one included)."""
        floor = self.config.min_free_percent
        if floor <= 0:
            return
        output = self.config.output_dir
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, output)
        except OSError as exc:
            log.warning("disk_unreadable", folder=str(output), detail=str(exc))
            return
        free = 100 * usage.free / usage.total if usage.total else 100.0
        self.metrics.output_free_ratio.set(free / 100)
        if self.paused is None and free < floor:
            self.paused = (
                f"{free:.1f} % free on the filesystem of {output}, below min_free_percent "
                f"({floor:g} %): no work is handed out until it is back above {floor + 1:g} %"
            )
            self.metrics.assigning_paused.set(1)
            log.error(
                "disk_low",
                folder=str(output),
                free_percent=round(free, 2),
                free_bytes=usage.free,
                min_free_percent=floor,
                action="free space there (move finished runs' results away); work resumes "
                "by itself",
            )
        elif self.paused is not None and free >= floor + 1:
            self.paused = None
            self.metrics.assigning_paused.set(0)
            log.warning("disk_ok", folder=str(output), free_percent=round(free, 2))
            # The files ready meanwhile can go out now: wake the engines waiting for work
            # (the listener reaches the host's waiters in host mode), or they would hear of
            # them only when their wait runs out.
            self.state.ready_listener()

    async def check_stalled(self, now: float) -> None:
        """Say once when the run stalls (`reactor.core.endrun.is_stalled`), with what is
        left and the fix; and when something happens again."""
        run_end = self.run_end
        if run_end.complete or not self.ready:
            return
        counts = self.count_fields()
        live = sum(1 for _ in self.state.live_jobs())
        quiet = now - max(self.last_news, self.state.last_activity)
        stalled = is_stalled(
            quiet_s=quiet,
            stall_after_s=self.config.stall_after,
            ready=counts["ready"],
            live_jobs=live,
        )
        if stalled == run_end.stalled:
            return
        run_end.stalled = stalled
        self.metrics.run_stalled.set(int(stalled))
        if not stalled:
            log.info("run_active_again", **counts)
            return
        queued = self.config.input_dir.absolute().parent / "queued_reads"
        waiting = await asyncio.to_thread(_count_files, queued)
        incomplete = sorted(self.state.incomplete_due(now, 0.0))
        log.warning(
            "run_stalled",
            quiet_s=round(quiet),
            final_summary=str(run_end.stop_file) if run_end.stop_file else None,
            incomplete=incomplete[:10],
            incomplete_total=len(incomplete),
            queued_reads=waiting,
            action=(
                "a POD5 that never completes is truncated: pod5 recover it, then "
                "reactor run add RUN; reads left in queued_reads/ (a MinKNOW crash) can be "
                "recovered the same way; or end the run as it is: reactor run close RUN"
            ),
        )

    def settle(self, now: float) -> None:
        """Re-check incomplete files that have been quiet for `settle_seconds`."""
        for name in self.state.incomplete_due(now, self.config.settle_seconds):
            self._check_input(name, now)

    def reconcile(self, reason: str) -> None:
        """Full scan of INPUTDIR and pass/fail: after lost events, and as a safety net.
        During the start-up scan it waits for the scan's end (which lists INPUTDIR too)."""
        if self.scanning:
            self._reconcile_after_scan = reason
            return
        began = time.perf_counter()
        now = self.clock()
        on_disk = self.inputs.names()
        files = self.state.files
        added = removed = 0
        for name in on_disk:
            record = files.get(name)
            if record is None or record.state is FileState.INCOMPLETE:
                added += record is None
                self._check_input(name, now)
        for name in [n for n, r in files.items() if r.present and n not in on_disk]:
            self.state.file_gone(name, now)
            removed += 1
        waiting = (FileState.INCOMPLETE, FileState.READY)
        for stem in self.journal.result_stems():
            name = f"{stem}.pod5"
            record = files.get(name)
            # Only a waiting file can be marked done by an output (mark_done_by_output).
            if name in on_disk and (record is None or record.state in waiting):
                self._done_by_output(name, f"{stem}.*", now)
        self.reconciles += 1
        self.metrics.reconciles.labels(reason=reason).inc()
        log.info(
            "reconciled",
            reason=reason,
            added=added,
            removed=removed,
            duration_s=round(time.perf_counter() - began, 3),
        )

    # ---------------------------------------------------------- filesystem

    def on_fs_event(self, event: FsEvent) -> None:
        """One filesystem event from the watcher (called on the loop thread): INPUTDIR's,
        or pass/'s and fail/'s. Job folders are not watched (`reactor.serve.watcher` says why)."""
        now = self.clock()
        self.last_news = now
        self.metrics.fs_events.labels(area=str(event.area)).inc()
        if event.area is Area.INPUT:
            self._on_input_event(event, now)
        elif event.area is Area.RESULTS:
            stem = output_stem(event.name)
            if stem is not None and event.change is not Change.GONE:
                self._done_by_output(f"{stem}.pod5", event.name, now)

    def _done_by_output(self, name: str, output: str, now: float) -> None:
        """The seed's rule, for a `.pod5` that exists: most outputs (dorado's, and the
        job-tagged ones reactor merges) match no input, and must not invent records."""
        if name not in self.state.files and not self.inputs.path(name).exists():
            return
        if self.state.mark_done_by_output(name, now):
            log.info("file_done_by_output", name=name, output=output)

    def _on_input_event(self, event: FsEvent, now: float) -> None:
        name = event.name
        if not self.inputs.accepts(name):
            return  # another run's file, in a folder pooled runs share
        change = event.change
        folder = Path(event.folder) if event.folder else None
        if change is Change.GONE:
            if not self.inputs.gone(name, folder):
                return  # moved to another of the run's folders: seen there
            if self._scan is not None:
                self._scan.changed(name)  # a listing made before may still hold it
            state = self.state.file_gone(name, now)
            if state is not None:
                log.info("file_gone", name=name, state=state)
            return
        record = self.state.files.get(name)
        if change is Change.MODIFIED and record is not None:
            if record.state is FileState.INCOMPLETE:
                record.changed_at = now  # still being written: restart the settle timer
            return
        if folder is not None:
            self.inputs.seen(name, folder)
        self._check_input(name, now, seen_at=event.at)

    def _check_input(self, name: str, now: float, seen_at: float | None = None) -> None:
        record = self.state.files.get(name)
        if record is not None and record.state is not FileState.INCOMPLETE:
            record.present = True
            return
        path = self.inputs.path(name)
        if path.is_symlink() and self._refuse(name):
            return
        check = check_pod5(path)
        if check is None:
            if record is not None:
                self.state.file_gone(name, now)
            return
        before = record.state if record is not None else None
        after = self.state.file_seen(name, complete=check.complete, now=now)
        if after is FileState.READY and before is not FileState.READY:
            fields: dict[str, Any] = {"name": name}
            if seen_at is not None:
                latency = time.monotonic() - seen_at
                self.metrics.ingest_seconds.observe(latency)
                fields["latency_s"] = round(latency, 4)
            log.info("file_ready", **fields)
        elif after is FileState.INCOMPLETE and before is None:
            log.info("file_incomplete", name=name)
        if before is None and self.run_end.reconciled:
            # Basecalled like any other, but it was not in the run when it ended.
            log.warning("file_after_run_end", name=name, phase=str(self.phase))

    def _refuse(self, name: str) -> bool:
        """A `.pod5` that is a symlink leading outside INPUTDIR (the run folder, in host
        mode) is never handed out: the links reactor makes must not lead engines anywhere
        else. Logged once per name."""
        target = self.inputs.path(name).resolve()
        if self.inputs.contains(target):
            return False
        if name not in self._refused:
            self._refused.add(name)
            log.error("file_refused", name=name, reason="symlink_outside_input", target=str(target))
        return True

    def ensure_result_folders(self) -> None:
        """Recreate pass/ or fail/ if a person removed them (merges would recreate them
        too; the watcher needs them to watch), durably: merged outputs are only as
        durable as the folder they are in."""
        made = False
        for kind in RESULT_FOLDERS:
            folder = self.config.output_dir / kind
            if not folder.is_dir():
                try:
                    folder.mkdir()
                except OSError as exc:
                    log.error("results_folder_missing", folder=str(folder), detail=str(exc))
                else:
                    made = True
                    log.warning("results_folder_recreated", folder=str(folder))
        if made or not self.ready:  # at start: made by an earlier start that lost power
            fsync_folder(self.config.output_dir)

    # ------------------------------------------------------------- views

    async def write_run_record(self, name: str, data: dict[str, Any]) -> None:
        """A record about the run as a whole (its pinned parameters), in the state folder,
        replaced atomically and durably on the writer's thread."""
        await self._write(Chore(functools.partial(self.journal.state.write, RUN, name, data)))

    async def write_chore(self, work: Callable[[], T]) -> T:
        """Run `work` on the writer's thread, in turn with the journal's steps."""
        return await self._write(Chore(work))

    def read_run_record(self, name: str) -> dict[str, Any] | None:
        """(At start, before serving.) A record about the run, or None."""
        try:
            return self.journal.state.read(RUN, name)
        except ValueError as exc:
            log.error("run_record_unreadable", record=f"{RUN}/{name}", detail=str(exc))
            return None

    def params_of(self, job: Job) -> dict[str, str]:
        """The basecall parameters of the job's run (none in single-run mode)."""
        return {}

    def folders_of(self, job: Job) -> tuple[str, str]:
        """The job's folders as engines are given them: relative to INPUTDIR, OUTPUTDIR."""
        return (
            JobFolder(Folder.ASSIGNED, job.job_id, job.engine_id).name,
            JobFolder(Folder.TMPOUTPUT, job.job_id, job.engine_id).name,
        )

    @property
    def writer_broken(self) -> BaseException | None:
        """The error that stopped the writer (a failed fsync), if one did."""
        return self.writer.broken

    @property
    def phase(self) -> str:
        """starting, running, finishing or complete (see `reactor.core.endrun.phase_of`)."""
        return str(phase_of(self.ready, self.run_end, scanning=self.scanning))

    def count_fields(self) -> dict[str, int]:
        return count_fields(self.state)

    def heartbeat(self) -> dict[str, Any]:
        idle = self.clock() - self.state.last_activity
        status = "true" if idle >= self.config.shutdown_interval else "false"
        return {"status": status, "inactivity_interval": idle}

    def status(self) -> dict[str, Any]:
        """The body of GET /status (see `reactor.core.status`)."""
        report = status_report(
            self.state,
            self.throughput,
            now=self.clock(),
            ready=self.ready,
            phase=self.phase,
            reconciles=self.reconciles,
        )
        report["paused"] = self.paused
        report["engines_waiting"] = len(self.waiters)
        report["time_zone"] = HOST_TIME_ZONE
        report["reads"] = self.reads.view(self.read_rules().min_qscore)
        if self.hash_check is not None:
            report["output_hash"] = self.hash_check
        report["end"] = self.end_view()
        report["alerts"] = self.alerts(report)
        self._name_quarantine_folders(report["quarantined"]["files"])
        return report

    def _name_quarantine_folders(self, listed: list[dict[str, Any]]) -> None:
        """Each quarantined file listed gets the folder that holds it (what `POST
        /requeue?folder=` releases), or None. Quarantines are rare: the folders are few."""
        if not listed:
            return
        folder_of = {
            name: folder for folder, (_, names) in self.quarantine_folders.items() for name in names
        }
        for entry in listed:
            entry["folder"] = folder_of.get(entry["name"])

    def end_view(self) -> dict[str, Any]:
        """The end of the run as /status shows it: the final summary seen, closed by
        hand, and on_complete's outcome (the run-complete marker, as the finisher last
        recorded it; None before the run is complete)."""
        return {
            "sequencing_finished": self.run_end.stop_file is not None,
            "complete": self.run_end.complete,
            "closed": self.run_end.closed,
            "on_complete": self.on_complete,
        }

    def engine_seen_s(self, now: float) -> float | None:
        """Seconds since any engine's last request (None: none known)."""
        latest = max((e.last_seen for e in self.state.engines.values()), default=None)
        return None if latest is None else now - latest

    def alerts(self, report: dict[str, Any]) -> list[dict[str, str]]:
        broken = self.writer.broken
        return alerts(
            waiting_files=report["backlog"]["files"],
            waiting_s=report["backlog"]["waiting_s"],
            engine_seen_s=self.engine_seen_s(self.clock()),
            quarantined=report["files"]["quarantined"],
            held=report["held"]["total"],
            paused=[] if self.paused is None else [self.paused],
            storage=None if broken is None else str(broken),
            hash_problems=["this run"] if hash_trouble(self.hash_check) else [],
        )

    def status_line(self) -> str:
        """The one line `systemctl status` shows (see `reactor.core.status`)."""
        return status_line(self.state, self.clock())

    def engine_work(self) -> EngineWork:
        """The run's work as the fleet sizes engines by it (`reactor.cluster.fleet`)."""
        return EngineWork(
            waiting_files=self.state.backlog()[0],
            files_known=len(self.state.files),
            batch_size=self.config.batch_size,
            engines=engines_seen([self.state.engines], self.clock()),
        )
