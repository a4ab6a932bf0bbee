"""Host mode: one service for every run under MinKNOW data roots (`watch_root`).

Each run found under a root (`reactor.disk.runs`) and adopted is a `RunUnit`: the same
coordinator (`Reactor`), end-of-run finisher and sweeper as single-run mode, on the
run's own folders: its `.pod5` files in its POD5 folders and their barcode folders
(`reactor.disk.inputs`), its results, records and job folders in its output folder
(`RUN/reactor/` unless `output_root` is set; docs/host.md says why). So each run has its
own journal, state folder, end of run, `on_complete` and phase, and a finished run can be
moved or archived and served again alone.

The `Host` owns the units and answers the engines' requests: a batch holds files of one
run, the run chosen by the fair share (`reactor.core.sharing`); keepalives and reports
go to the run that handed the job out. It finds runs at start, deciding for each run
without records whether to adopt it (`reactor.core.minknow.adoption`), and again every
sweep, re-reading only sample folders whose modification time changed. A complete run
is skipped at start from its marker alone, and a run that completes while served leaves
memory (and `/metrics`) `RETIRE_AFTER_S` after its end.

Everything here runs on the event loop thread, as in `reactor.serve.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reactor.core.endrun import stop_file_filter, stop_file_matcher
from reactor.core.events import Area, Change, FsEvent, input_filter
from reactor.core.fleet import EngineWork, engines_seen
from reactor.core.minknow import (
    POD5_FOLDERS,
    Adoption,
    RunKey,
    Sources,
    WorkDecision,
    adoption,
    parse_pod5_name,
    work_folders,
)
from reactor.core.model import Clock
from reactor.core.names import is_pod5_name
from reactor.core.params import (
    RunFacts,
    choose,
    for_engines,
    min_qscore,
    parse_rules,
    seed_can_take,
)
from reactor.core.readstats import RunReads, coarsen
from reactor.core.sharing import Backlog, FairShare
from reactor.core.state import CompletionPlan, FileState, Job, UnknownJob
from reactor.core.status import RUNS_LISTED, alerts, hash_trouble, merged_engines
from reactor.disk.durable import fsync_folder
from reactor.disk.inputs import InputFolders
from reactor.disk.marker import marker_path
from reactor.disk.merged import MERGED_SAMPLE, MergedFiles, merge_into, sample_runs
from reactor.disk.rebasecall import SUPERSEDED, set_aside
from reactor.disk.run_facts import read_run_info, read_sample_sheet, sample_sheet_of
from reactor.disk.runs import (
    FoundRun,
    Survey,
    find_runs,
    read_run_folder,
    read_sample,
    subfolders,
)
from reactor.disk.state_dir import RUN, STATE_NAME
from reactor.runtime.io_priority import IoClass, set_io_priority
from reactor.serve.finisher import Finisher
from reactor.serve.folder_poll import FolderPoller
from reactor.serve.folder_watch import FolderWatch
from reactor.serve.held_events import HeldEvents
from reactor.serve.host_answers import Busy, UnknownRun
from reactor.serve.metrics import LATENCY_BUCKETS_S, LOOP_LAG_BUCKETS_S
from reactor.serve.reconciles import DebouncedReconcile
from reactor.serve.service import HOST_TIME_ZONE, Reactor, ReadRules, StartupError, new_job_id
from reactor.serve.stager import RunStager
from reactor.serve.sweeper import Sweeper
from reactor.serve.watcher import Watcher, new_observer
from reactor.serve.work_waiters import WorkWaiters
from reactor.settings.serve import ServeConfig

log = structlog.get_logger("reactor.host")

RUN_OUTPUT = "reactor"  # reactor's folder inside each run folder (no output_root)
JOBS_FOLDER = "input"  # in a run's output folder: the folders of links engines get
PARAMS_RECORD = "params.json"  # in the run's state folder, `run/`
# A run's reads in the host's /status: the figures, not the histograms and series.
RUN_READS = ("reads", "bases", "pass_reads", "pass_bases", "n50", "min_qscore", "accounting")
SHEET_NAME = "sample_sheet.csv"  # the run's sample sheet, copied where engines read it
RETIRE_AFTER_S = 900.0  # a complete run stays in /status and /metrics this long


@dataclass(frozen=True)
class RunPlace:
    """Where a run's own things go."""

    output_dir: Path  # results, records, job output folders
    jobs_dir: Path  # the folders of links handed to engines
    engine_root: Path  # what engines are given as INPUTDIR and OUTPUTDIR


def place_of(found: FoundRun, output_root: Path | None) -> RunPlace:
    """A run's output folder mirrors its path under the root: `RUN/reactor/` by default,
    `OUTPUT_ROOT/{group}/{sample}/{run}/` with an output root; a pooled run, which shares
    its sample folder, gets a folder named after it below that."""
    if output_root is None:
        base = found.folder / RUN_OUTPUT
        engine_root = found.root
    else:
        base = output_root / found.relative
        engine_root = output_root
    if found.pooled:
        base = base / str(found.key)
    return RunPlace(base, base / JOBS_FOLDER, engine_root)


def _parts(found: FoundRun) -> tuple[str, str]:
    """(group, sample) of a run, from its path under the root."""
    parts = found.relative.parts
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", "")


def _accept(found: FoundRun) -> Callable[[str], bool]:
    """Which `.pod5` names are this run's: all in its own folder; in a pooled folder, those
    whose name carries its flow cell and protocol run."""
    if not found.pooled:
        return is_pod5_name
    key = found.key

    def mine(name: str) -> bool:
        parsed = parse_pod5_name(name)
        return parsed is not None and parsed.key == key

    return mine


# --------------------------------------------------------------------------- one run


class RunUnit:
    """One adopted run: its coordinator, finisher, sweeper and watches."""

    def __init__(
        self,
        found: FoundRun,
        host_config: ServeConfig,
        *,
        clock: Clock,
        job_id_factory: Callable[[], str],
        watch_worker: ThreadPoolExecutor,
        watch: bool = True,
        poller: FolderPoller | None = None,
        on_foreign: Callable[[Path, str], None] | None = None,
        stage_worker: ThreadPoolExecutor | None = None,
    ) -> None:
        self.found = found
        # A pooled run sees the other runs' files in its folders: a new one is news
        # for the host (a run that started in the shared folder).
        self._on_foreign = on_foreign
        self._poller = poller
        self._polled: int | None = None  # the poller's handle for this run's folders
        self.key = found.key
        self.place = place_of(found, host_config.output_root)
        self.clock = clock
        self._watch_worker = watch_worker
        self._watch = watch
        self._sources = Sources(host_config.sources)
        self._rules = host_config.rules
        # The run's basecall parameters: chosen by the rules from what it says it is, and
        # pinned (recorded with the run) at its first assignment.
        self.facts = RunFacts(str(found.relative))
        self.choice = choose(self._rules, self.facts)
        self.pinned: dict[str, str] | None = None
        self._pinning = asyncio.Lock()  # requests of several engines: pinned once
        self._reworking = asyncio.Lock()  # an event and discovery's pass: one at a time
        self.rebasecalling = False  # its outputs being set aside: no batch goes out
        self.override: dict[str, str] = {}  # set by a person at runtime (reactor run params)
        self.work = self._decide(found)
        folders = self._folders(found, self.work)
        # The run's POD5 folders; what the coordinator serves is the same, or with
        # staging (`stage_to`), the run's staging folder, which the stager fills.
        self.sources = InputFolders(
            folders, barcodes=True, accept=_accept(found), within=found.folder
        )
        self.stager: RunStager | None = None
        if host_config.stage_to is not None and stage_worker is not None:
            staged = host_config.stage_to / found.relative
            staged = staged / str(found.key) if found.pooled else staged
            self.inputs = InputFolders.flat(staged)
            self.stager = RunStager(
                staged,
                worker=stage_worker,
                deliver=self._staged,
                max_bytes=int(host_config.stage_max_gb * 1e9),
                keep=host_config.stage_keep,
            )
        else:
            self.inputs = self.sources
        self._stage_task: asyncio.Task[None] | None = None
        self.config = replace(
            host_config,
            watch_root=(),
            output_root=None,
            stage_to=None,
            input_dir=self.inputs.main,
            output_dir=self.place.output_dir,
            stop_file=f"final_summary_{found.key}*.txt",
            exit_on_complete=False,
            output_layout="minknow" if host_config.minknow_layout else "seed",
        )
        self.reactor = Reactor(
            self.config,
            clock=clock,
            job_id_factory=job_id_factory,
            inputs=self.inputs,
            jobs_dir=self.place.jobs_dir,
        )
        self.reactor.read_rules = self._read_rules
        if self.stager is not None:
            stager = self.stager
            self.reactor.pending_elsewhere = lambda: len(stager.waiting)
        group, sample = _parts(found)
        self.group, self.sample = group, sample
        self.finisher = Finisher(
            self.reactor,
            request_exit=lambda: None,
            run_dir=found.folder if self.stager is not None else None,
            work_folders=lambda: self.sources.folders,
            run_vars={
                "REACTOR_RUN_FLOW_CELL": found.key.flow_cell,
                "REACTOR_RUN_PROTOCOL_RUN": found.key.protocol_run,
                "REACTOR_RUN_GROUP": group,
                "REACTOR_RUN_SAMPLE": sample,
                "REACTOR_RUN_FOLDER": str(found.folder),
                "REACTOR_RUN_NAME": str(found.key),
            },
        )
        self.sweeper = Sweeper(
            self.reactor,
            clock=clock,
            interval_s=host_config.sweep_interval,
            reconcile_interval_s=host_config.reconcile_interval,
        )
        self._events = HeldEvents(self._deliver, self._lost)
        self._losses: DebouncedReconcile | None = None
        self._watcher: Watcher | None = None
        self._watched: tuple[str, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self.completed_at: float | None = None
        # engine paths: the job folders relative to what engines are given
        self.jobs_prefix = os.path.relpath(self.place.jobs_dir, self.place.engine_root)
        self.output_prefix = os.path.relpath(self.place.output_dir, self.place.engine_root)

    # -------------------------------------------------------------- lifecycle

    def bound(self) -> contextlib.AbstractContextManager[Any]:
        """Every event logged inside carries `run` and `flow_cell` (tasks started inside
        keep them: the sweeper's, the finisher's, the operations the coordinator detaches)."""
        return structlog.contextvars.bound_contextvars(
            run=str(self.key), flow_cell=self.key.flow_cell
        )

    def _prepare(self) -> None:
        """The run's output folders (and staging folder), made durably (their names too)."""
        folders = [self.place.output_dir, self.place.jobs_dir]
        if self.stager is not None:
            folders.append(self.stager.folder)
        for folder in folders:
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                fsync_folder(folder.parent)
        for name in ("pass", "fail"):
            (self.place.output_dir / name).mkdir(exist_ok=True)

    async def start(self) -> None:
        """Watch, recover and scan, then serve. Raises StartupError for this run only."""
        try:
            self._prepare()
        except OSError as exc:
            msg = f"cannot make the run's output folder {self.place.output_dir}: {exc.strerror}"
            raise StartupError(msg) from exc
        loop = asyncio.get_running_loop()
        self._losses = DebouncedReconcile(self.reactor.reconcile, loop)
        if self._watch:
            await self._rewatch()
        self._finish_rebasecall()
        self.reactor.start()
        if self.stager is not None:
            await self.stage_tick(rescan=True)
        record = self.reactor.read_run_record(PARAMS_RECORD)
        if record is not None and isinstance(record.get("params"), dict):
            self.pinned = {str(k): str(v) for k, v in record["params"].items()}
        await self.reactor.check_space()
        self.finisher.start()
        self.sweeper.end_of_run = self.finisher.check
        self._events.release()
        self._task = asyncio.create_task(self.sweeper.run(), name=f"reactor-sweeper-{self.key}")

    async def stop(self) -> None:
        self._events.hold()
        if self._stage_task is not None and not self._stage_task.done():
            await asyncio.wait({self._stage_task})
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sweeper.end_of_run = None
        self.finisher.begin_shutdown()
        await self._unwatch()
        await self.finisher.stop()
        await self.reactor.stop()
        self.reactor.journal.close()
        if self._losses is not None:
            self._losses.cancel()

    # ---------------------------------------------------------------- watches

    def _deliver(self, event: FsEvent) -> None:
        with self.bound():
            if is_pod5_name(event.name):
                foreign = self.found.pooled and not self.sources.accepts(event.name)
                if foreign and event.change is not Change.GONE and self._on_foreign is not None:
                    self._on_foreign(self.found.folder, event.name)
                if self.stager is None:
                    self.reactor.on_fs_event(event)
                elif not foreign and event.change is not Change.GONE:
                    folder = Path(event.folder) if event.folder else None
                    if folder is not None:
                        self.sources.seen(event.name, folder)
                    self.stager.offer(event.name, self.sources.path(event.name))
                    self._kick_stager()
            else:
                self.finisher.on_input_event(event)

    def _lost(self, reason: str) -> None:
        if self._losses is not None:
            with self.bound():
                self._losses.report(reason)

    async def _rewatch(self) -> None:
        """Watch the POD5 folders the run has now (with their barcode folders)."""
        existing = tuple(str(f) for f in self.sources.folders if f.is_dir())
        if existing == self._watched and self._watcher is not None:
            return
        await self._unwatch()
        self._watched = existing
        if not existing:
            return
        stop_file = stop_file_filter(self.config.stop_file)
        if self._poller is not None:  # observer = polling: the host's one poller
            matcher = stop_file_matcher(self.config.stop_file)
            self._polled = self._poller.register(
                [Path(f) for f in existing],
                nested=True,
                accept=lambda name: is_pod5_name(name) or bool(matcher.match(name)),
                post=self._events.on_event,
            )
            return

        def accept(change: Change, path: PurePath) -> bool:
            return input_filter(change, path) or stop_file(change, path)

        watcher = Watcher(
            [Path(f) for f in existing],
            None,
            on_event=self._events.on_event,
            on_lost=self._events.on_lost,
            loop=asyncio.get_running_loop(),
            polling=self.config.observer == "polling",
            poll_interval_s=self.config.poll_interval,
            input_accept=accept,
            nested=True,
        )
        await asyncio.get_running_loop().run_in_executor(self._watch_worker, watcher.start)
        self._watcher = watcher
        self.sweeper.health_check = self._check_health

    async def _unwatch(self) -> None:
        if self._polled is not None and self._poller is not None:
            self._poller.unregister(self._polled)
            self._polled = None
        watcher, self._watcher = self._watcher, None
        self.sweeper.health_check = None
        if watcher is not None:
            await asyncio.get_running_loop().run_in_executor(self._watch_worker, watcher.stop)

    def _check_health(self) -> None:
        watcher = self._watcher
        if watcher is not None:
            self._watch_worker.submit(watcher.check_health)

    def _decide(self, found: FoundRun) -> WorkDecision:
        # a rule may say which folders are work for this run (set = { sources = … })
        chosen = self.params.get("sources")
        return work_folders(
            found.pod5_folders,
            sources=Sources(chosen) if chosen else self._sources,
            outputs=found.outputs,
            basecalled=found.basecalled,
        )

    @staticmethod
    def _folders(found: FoundRun, work: WorkDecision) -> list[Path]:
        """The folders to take files from: the work's, or the one it will be in."""
        placeholder = "pod5_skip" if work.skip_only else "pod5"
        return [found.folder / name for name in work.folders] or [found.folder / placeholder]

    def log_work(self) -> None:
        log.info("run_work", run=str(self.key), folders=list(self.work.folders),
                 reason=self.work.reason)  # fmt: skip

    async def refresh(self, found: FoundRun) -> None:
        """The run's folder was read again: POD5 folders that appeared, or MinKNOW's
        outputs that say it basecalled live, change what is work (files of a folder that
        stops being work leave the queue, unless handed out already)."""
        seen = (found.pod5_folders, found.outputs, found.basecalled)
        if seen == (self.found.pod5_folders, self.found.outputs, self.found.basecalled):
            return
        self.found = found
        await self._rework(force=True)

    async def _rework(self, *, force: bool = False) -> None:
        """Decide again what is work (the run's folders, or its rules, changed); take
        and watch the folders it says, and look at them again."""
        async with self._reworking:
            await self._rework_now(force=force)

    async def _rework_now(self, *, force: bool) -> None:
        found = self.found
        work = self._decide(found)
        if work == self.work and not force:
            return
        if work != self.work:
            self.work = work
            self.log_work()
        self.sources.use(self._folders(found, work))
        if self._watch:
            await self._rewatch()
        if self.stager is not None:
            await self.stage_tick(rescan=True)
        else:
            self.reactor.reconcile("new_folder")

    # ----------------------------------------------------------------- staging

    def _staged(self, name: str) -> None:
        """A file's copy is in the staging folder, whole: the coordinator hears of it."""
        with self.bound():
            self.reactor.on_fs_event(FsEvent(Area.INPUT, Change.CLOSED, name, time.monotonic()))

    def _done(self, name: str) -> bool:
        return self.reactor.state.state_of(name) in (FileState.DONE, FileState.QUARANTINED)

    def _kick_stager(self) -> None:
        if self.stager is not None and (self._stage_task is None or self._stage_task.done()):
            self._stage_task = asyncio.create_task(
                self.stager.run_once(self._done), name=f"reactor-stager-{self.key}"
            )

    async def stage_tick(self, *, rescan: bool) -> None:
        """Staging's turn: (rescan: the run's POD5 folders listed again, for files no
        event told of) copy what waits, remove the copies of done files."""
        stager = self.stager
        if stager is None:
            return
        if rescan:
            sources = self.sources

            def listed() -> list[tuple[str, Path]]:
                return [(entry.name, Path(entry.path)) for entry in sources.scan()]

            for name, path in await asyncio.to_thread(listed):
                if not self._done(name):
                    stager.offer(name, path)
        await stager.run_once(self._done)
        done = {name for name in self.reactor.state.files if self._done(name)}
        await stager.remove_done(done)

    # -------------------------------------------------------------- parameters

    @property
    def params(self) -> dict[str, str]:
        """The run's basecall parameters: pinned, or as the rules (and a person's
        override) choose them now."""
        if self.pinned is not None:
            return self.pinned
        return {**self.choice.params, **self.override}

    async def learn(self) -> None:
        """Read what the run says it is (off the loop): its sample sheet, and the run info
        of the file at the front of its queue; the rules choose again."""
        if self.pinned is not None:
            return
        front = next(self.reactor.state.ready_names(), None)
        path = None if front is None else self.inputs.path(front)
        kit, aliases = await asyncio.to_thread(read_sample_sheet, self.found.folder)
        info = None if path is None else await asyncio.to_thread(read_run_info, path)
        facts = RunFacts(
            path=str(self.found.relative),
            sample_rate=info.sample_rate if info else None,
            flow_cell_product=info.flow_cell_product if info else None,
            sequencing_kit=info.sequencing_kit if info else None,
            barcoding_kit=kit,
            aliases=aliases,
        )
        self.facts = facts
        self.choice = choose(self._rules, facts)

    def _sheet_for_engines(self) -> str | None:
        """(On a worker thread.) A copy of the run's sample sheet in its output folder,
        where engines can read it (with staging they cannot see the run folder); its path
        below the root engines are given."""
        sheet = sample_sheet_of(self.found.folder)
        if sheet is None:
            return None
        try:
            shutil.copyfile(sheet, self.place.output_dir / SHEET_NAME)
        except OSError as exc:
            log.warning("sample_sheet_not_copied", sheet=str(sheet), detail=str(exc))
            return None
        return f"{self.output_prefix}/{SHEET_NAME}"

    async def pin(self) -> None:
        """Pin the run's parameters before its first assignment: recorded with the run
        (one run, one model), so a restart, or a rule changed later, keeps them."""
        async with self._pinning:
            if self.pinned is None:
                await self._pin()

    async def _pin(self) -> None:
        await self.learn()
        facts = self.facts
        said: dict[str, Any] = {
            "sample_rate": facts.sample_rate,
            "flow_cell_product": facts.flow_cell_product,
            "sequencing_kit": facts.sequencing_kit,
            "barcoding_kit": facts.barcoding_kit,
            "aliases": dict(facts.aliases),
        }
        chosen = {**self.choice.params, **self.override}
        # The barcodes' aliases, for the engines' outputs: only when the run's reads are
        # classified by barcode (a kit_name); otherwise a sheet means nothing to an
        # engine, and would keep the run from engines that cannot be told parameters.
        classified = facts.aliases and chosen.get("kit_name")
        sheet = await asyncio.to_thread(self._sheet_for_engines) if classified else None
        if sheet is not None:
            chosen["sample_sheet"] = sheet
        record = {
            "params": chosen,
            "rules": list(self.choice.rules),
            "override": self.override,
            "facts": said,
        }
        await self.reactor.write_run_record(PARAMS_RECORD, record)
        self.pinned = chosen
        log.info("run_params_pinned", run=str(self.key), params=self.pinned,
                 rules=list(self.choice.rules), **said)  # fmt: skip
        await self._rework()  # a rule on what the run said may name other folders

    async def change_params(self, values: dict[str, str], *, rebasecall: bool) -> bool:
        """A person sets parameters of the run (`reactor run params`). Before its first
        assignment they join the rules' choice. Once pinned, only as an explicit decision
        (`rebasecall`): the outputs made so far are set aside (`reactor.disk.rebasecall`)
        and every file is basecalled again with the new parameters. False: pinned, and
        not asked to. Raises Busy while batches are out with the old parameters."""
        if self.pinned is None:
            self.override.update(values)
            log.info("run_params_set", run=str(self.key), set=values, params=self.params)
            await self._rework()
            return True
        if not rebasecall:
            return False
        if self.reactor.run_end.complete:
            raise Busy(0, "the run is complete (its on_complete has run): basecall it again "
                       "as a new run, or from its POD5 files by hand")  # fmt: skip
        live = sum(1 for _ in self.reactor.state.live_jobs())
        if live or self.rebasecalling:
            raise Busy(live)
        self.rebasecalling = True  # no batch goes out while its outputs are set aside
        try:
            await self._rebasecall({**self.pinned, **values})
        finally:
            self.rebasecalling = False
        return True

    def _read_rules(self) -> ReadRules:
        """The run's reads are judged by its parameters: the pass threshold (its rules'
        min_qscore, else by its model), by barcode when they name a kit, with the
        sample sheet's aliases."""
        params = self.params
        return ReadRules(
            min_qscore(params, self.config.min_qscore),
            barcoded=bool(params.get("kit_name")),
            aliases=dict(self.facts.aliases),
            params=for_engines(params),
        )

    async def _rebasecall(self, after: dict[str, str]) -> None:
        before = dict(self.pinned or {})
        record = self.reactor.read_run_record(PARAMS_RECORD) or {}
        changes = list(record.get("changes", []))
        generation = len(changes) + 1
        done = self.reactor.count_fields()["done"]
        changes.append({"from": before, "to": after, "files_done_before": done})
        record.update(
            params=after,
            changes=changes,
            rebasecall={"generation": generation, "state": "started"},
        )
        await self.reactor.write_run_record(PARAMS_RECORD, record)  # the decision first
        self.pinned = after
        output_dir = self.place.output_dir
        moved = await self.reactor.write_chore(functools.partial(set_aside, output_dir, generation))
        record["rebasecall"]["state"] = "finished"
        await self.reactor.write_run_record(PARAMS_RECORD, record)
        self.reactor.reads = RunReads()  # the reads set aside count no more
        again = self.reactor.state.redo(self.clock(), forget=self.stager is not None)
        log.warning(
            "run_rebasecall",
            run=str(self.key),
            before=before,
            after=after,
            files=len(again),
            records_set_aside=moved,
            outputs_set_aside=str(output_dir / SUPERSEDED / str(generation)),
        )
        await self._rework(force=True)

    def _finish_rebasecall(self) -> None:
        """(At start, before recovery.) A re-basecall a crash cut short: finish it."""
        record = self.reactor.read_run_record(PARAMS_RECORD)
        step = record.get("rebasecall") if record else None
        if record is None or not isinstance(step, dict) or step.get("state") != "started":
            return
        generation = int(step.get("generation", 1))
        moved = set_aside(self.place.output_dir, generation)
        step["state"] = "finished"
        self.reactor.journal.state.write(RUN, PARAMS_RECORD, record)
        log.warning("run_rebasecall_finished", run=str(self.key), records_set_aside=moved)

    # ------------------------------------------------------------------ views

    @property
    def phase(self) -> str:
        return self.reactor.phase

    def identity(self) -> dict[str, Any]:
        """What names the run, where it is and how it is basecalled."""
        return {
            "run": str(self.key),
            "flow_cell": self.key.flow_cell,
            "protocol_run": self.key.protocol_run,
            "group": self.group,
            "sample": self.sample,
            "folder": str(self.found.folder),
            "output_dir": str(self.place.output_dir),
            "pooled": self.found.pooled,
            "params": self.params,
            "params_pinned": self.pinned is not None,
        }

    def view(self) -> dict[str, Any]:
        status = self.reactor.status()
        files = status["files"]
        total = sum(files.values())
        return {
            **self.identity(),
            "phase": self.phase,
            "files": files,
            "done": files.get("done", 0),
            "total": total,
            "eta_s": status.get("throughput", {}).get("eta_s"),
            "jobs_live": len(list(self.reactor.state.live_jobs())),
            "work": {"folders": list(self.work.folders), "reason": self.work.reason},
            "paused": self.reactor.paused,
            "output_hash": self.reactor.hash_check,
            "held": status["held"]["total"],
            "reads": {key: status["reads"][key] for key in RUN_READS},
            "backlog": status["backlog"],
            "end": status["end"],
            "yield": _sparkline(status["reads"]["yield"]["arrivals"]),
        }


# --------------------------------------------------------------------------- metrics


class _RunsCollector(Collector):
    """Each live run's metrics with a `run` label, one family per name."""

    HOST_ONLY = frozenset({"reactor_request_seconds", "reactor_loop_lag_seconds"})

    def __init__(self, units: Callable[[], Mapping[RunKey, RunUnit]]) -> None:
        self._units = units

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for key, unit in sorted(self._units().items()):
            for family in unit.reactor.metrics.registry.collect():
                if family.name in self.HOST_ONLY:
                    continue
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {"run": str(key), **sample.labels}
                    merged.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield from families.values()


class HostMetrics:
    """The host's own metrics (requests, the loop, the runs), and each run's, labelled."""

    def __init__(self, host: Host) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_seconds = Histogram(
            "reactor_request_seconds", "HTTP request latency, by route.", ["route"],
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.loop_lag_seconds = Histogram(
            "reactor_loop_lag_seconds",
            "How much later than asked a probe on the event loop woke up: how long the "
            "loop was held by something else.",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_RunsCollector(lambda: host.units))
        self.registry.register(_HostCollector(host))


class _HostCollector(Collector):
    def __init__(self, host: Host) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "reactor_runs", "Runs under the roots, by phase.", labels=["phase"]
        )
        counts: dict[str, int] = {}
        for unit in self._host.units.values():
            counts[unit.phase] = counts.get(unit.phase, 0) + 1
        counts["retired"] = len(self._host.finished)
        counts["left"] = len(self._host.left)
        for phase, count in sorted(counts.items()):
            runs.add_metric([phase], count)
        yield runs


# --------------------------------------------------------------------------- the host


@dataclass
class FinishedRun:
    """A run not served (any more): complete at start, or retired after its end."""

    key: RunKey
    folder: Path
    output_dir: Path
    files_done: int | None = None


@dataclass
class _Seen:
    """What discovery knows of one sample folder: its mtime when last read."""

    mtime_ns: int
    runs: set[RunKey] = field(default_factory=set)


class Host:
    """Every run under the watch roots (see the module docstring)."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        clock: Clock = time.monotonic,
        wall: Callable[[], float] = time.time,
        job_id_factory: Callable[[], str] = new_job_id,
        watch: bool = True,
    ) -> None:
        if not config.host_mode:
            msg = "host mode needs watch_root"
            raise ValueError(msg)
        self.config = config
        self.clock = clock
        self.wall = wall
        self._job_id_factory = job_id_factory
        self._watch = watch
        self.units: dict[RunKey, RunUnit] = {}
        self.finished: dict[RunKey, FinishedRun] = {}
        self.left: dict[RunKey, FoundRun] = {}
        self.failed: dict[RunKey, str] = {}
        self.share: FairShare[RunKey] = FairShare()
        self._jobs: dict[str, RunUnit] = {}
        self._starting: set[RunKey] = set()  # runs whose unit is being started
        self._samples: dict[Path, _Seen] = {}
        self._merging = asyncio.Lock()  # merge_samples: one sample merge at a time
        # Engines waiting for work in any run (`/assignwork?wait_s=`): each run's ready
        # files wake them.
        self.waiters = WorkWaiters()
        self.ready = False
        # Each run's unit scans its folders before it serves (`Reactor.start`): the host
        # never serves before a run's scan ends.
        self.scanning = False
        self.metrics = HostMetrics(self)
        self._watch_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reactor-watch")
        # Staging's copies, one at a time for every run (stage_to)
        self._stage_worker = (
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="reactor-stage",
                initializer=set_io_priority,  # copies only when nobody else needs the disk
                initargs=(IoClass.IDLE,),
            )
            if config.stage_to is not None
            else None
        )
        self._staging_scanned_at = clock()
        self._task: asyncio.Task[None] | None = None
        self.started_at = clock()
        self.folders: FolderWatch | None = None  # discovery's watches (with `watch`)
        self.poller: FolderPoller | None = None  # runs' folders, with observer = polling
        self._changed: dict[Path, set[str]] = {}  # folders with news, for _take_changes
        self._changes: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Find every run under the roots, adopt or skip each, start the adopted."""
        began = time.perf_counter()
        since = self.wall() - self.config.adopt_since
        if self._watch and self.config.observer == "polling":
            self.poller = FolderPoller(asyncio.get_running_loop(), self.config.poll_interval)
            self.poller.start()
        if self._watch:
            # Before the survey, so a group or sample folder made meanwhile is an event.
            self.folders = FolderWatch(
                new_observer(
                    polling=self.config.observer == "polling",
                    poll_interval_s=self.config.poll_interval,
                ),
                self._folder_changed,
                asyncio.get_running_loop(),
            )
            self.folders.start()
            for root in self.config.watch_root:
                self.folders.watch(root)
                for group in subfolders(root):
                    self.folders.watch(group)
        found: list[FoundRun] = []
        for root in self.config.watch_root:
            survey = find_runs(root)
            self._note_unreadable(survey)
            found.extend(survey.runs)
            self._remember_samples(root, survey)
        adopted: list[str] = []
        for run in found:
            if await self._consider(run, since) == "started":
                adopted.append(str(run.key))
        self._watch_recent_samples(since)
        self.ready = True
        log.info(
            "runs_adopted",
            adopted=len(adopted),
            runs=adopted,
            resumed_or_new=len(self.units),
            finished=len(self.finished),
            left=len(self.left),
            failed=len(self.failed),
            roots=[str(root) for root in self.config.watch_root],
            duration_s=round(time.perf_counter() - began, 3),
        )
        self._task = asyncio.create_task(self._discover_forever(), name="reactor-discovery")

    async def stop(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._changes is not None:
            self._changes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._changes
        if self.folders is not None:
            await asyncio.get_running_loop().run_in_executor(self._watch_worker, self.folders.stop)
        for unit in list(self.units.values()):
            with unit.bound():
                await unit.stop()
        if self.poller is not None:
            await asyncio.get_running_loop().run_in_executor(self._watch_worker, self.poller.stop)
        self._watch_worker.shutdown(wait=True)
        if self._stage_worker is not None:
            self._stage_worker.shutdown(wait=True)

    def _note_unreadable(self, survey: Survey) -> None:
        for folder, reason in survey.unreadable:
            log.warning("folder_unreadable", folder=str(folder), detail=reason)

    async def _consider(self, run: FoundRun, since: float, *, asked: bool = False) -> str:
        """Decide about a run found under a root: "started", "finished", "left", "failed"
        or "known" (already served)."""
        key = run.key
        if key in self.units:
            unit = self.units[key]
            with unit.bound():
                await unit.refresh(run)
            return "known"
        if key in self.finished or key in self._starting or (key in self.failed and not asked):
            return "known"  # (starting: discovery's event and its pass both found it)
        place = place_of(run, self.config.output_root)
        if marker_path(place.output_dir).exists():
            self.finished[key] = FinishedRun(key, run.folder, place.output_dir)
            self.left.pop(key, None)
            return "finished"
        has_state = (place.output_dir / STATE_NAME).is_dir()
        if not (has_state or asked):
            verdict = adoption(
                complete=run.complete, started=run.started, active=run.active(), since=since
            )
            if verdict is Adoption.LEAVE:
                self.left[key] = run
                return "left"
        self.left.pop(key, None)
        return await self._start_unit(run)

    async def _start_unit(self, run: FoundRun) -> str:
        # One unit per run: the run is claimed before the first await, so discovery's
        # events and its periodic pass, both finding a new run, cannot start it twice.
        self._starting.add(run.key)
        try:
            return await self._start_unit_claimed(run)
        finally:
            self._starting.discard(run.key)

    async def _start_unit_claimed(self, run: FoundRun) -> str:
        unit = RunUnit(
            run,
            self.config,
            clock=self.clock,
            job_id_factory=self._job_id_factory,
            watch_worker=self._watch_worker,
            watch=self._watch,
            poller=self.poller,
            on_foreign=self._foreign_file,
            stage_worker=self._stage_worker,
        )
        unit.reactor.state.ready_listener = self.waiters.notify
        try:
            with unit.bound():
                await unit.start()
        except (StartupError, OSError) as exc:
            reason = str(exc)
            self.failed[run.key] = reason
            log.error("run_failed", run=str(run.key), folder=str(run.folder), reason=reason)
            with contextlib.suppress(Exception):
                await unit.stop()
            return "failed"
        self.failed.pop(run.key, None)
        self.units[run.key] = unit
        self.waiters.notify()  # its files were ready before it could hand them out
        if self.folders is not None and not run.pooled:
            self.folders.watch(run.folder)  # pod5/ and the final summary appear there
        for job_id in unit.reactor.state.jobs:
            self._jobs[job_id] = unit
        unit.log_work()
        log.info(
            "run_started",
            run=str(run.key),
            flow_cell=run.key.flow_cell,
            folder=str(run.folder),
            output_dir=str(unit.place.output_dir),
            pooled=run.pooled,
            **unit.reactor.count_fields(),
        )
        return "started"

    # -------------------------------------------------------------- discovery

    def _remember_samples(self, root: Path, survey: Survey) -> None:
        for run in survey.runs:
            sample = run.folder if run.pooled else run.folder.parent
            mtime = _sample_mtime(sample)
            if mtime is not None:
                seen = self._samples.setdefault(sample, _Seen(mtime))
                seen.runs.add(run.key)

    async def _discover_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                await self.discover()
            except Exception:
                log.exception("discovery_failed")

    async def discover(self) -> None:
        """Find runs that appeared, POD5 folders that appeared in live runs, and retire
        runs complete for RETIRE_AFTER_S. Reads a sample folder again only when its
        modification time changed (an mtime equal to the last is read again as well,
        when it is within the last two seconds: one-second timestamps)."""
        since = self.wall() - self.config.adopt_since
        seen = {sample: known.mtime_ns for sample, known in self._samples.items()}
        live = [u.found for u in self.units.values() if not u.found.pooled]
        # The reading happens on a worker thread: the loop never waits on the disk.
        changed, again = await asyncio.to_thread(self._read_changes, seen, live)
        for sample, (mtime, runs) in changed.items():
            self._samples[sample] = _Seen(mtime, {run.key for run in runs})
            for run in runs:
                await self._consider(run, since)
        for found in again:
            unit = self.units.get(found.key)
            if unit is not None:
                with unit.bound():
                    await unit.refresh(found)
        now = self.clock()
        rescan = now - self._staging_scanned_at >= self.config.reconcile_interval > 0
        if rescan:
            self._staging_scanned_at = now
        for unit in list(self.units.values()):
            if unit.stager is not None:
                # rescan also once the final summary is there: files no event told of
                final = unit.reactor.run_end.stop_file is not None
                with unit.bound():
                    await unit.stage_tick(rescan=rescan or final)
            await self._maybe_retire(unit)

    def _read_changes(
        self, seen: Mapping[Path, int], live: list[FoundRun]
    ) -> tuple[dict[Path, tuple[int, list[FoundRun]]], list[FoundRun]]:
        """(On a worker thread.) The sample folders whose mtime changed (or is too recent
        to tell), read; and the live run folders, read again."""
        now_ns = time.time_ns()
        changed: dict[Path, tuple[int, list[FoundRun]]] = {}
        for root in self.config.watch_root:
            for sample in self._sample_folders(root):
                mtime = _sample_mtime(sample)
                if mtime is None:
                    continue
                fresh = now_ns - mtime < 2_000_000_000
                if seen.get(sample) == mtime and not fresh:
                    continue
                changed[sample] = (mtime, read_sample(root, sample))
        again = [
            found for run in live if (found := read_run_folder(run.root, run.folder)) is not None
        ]
        return changed, again

    def _watch_recent_samples(self, since: float) -> None:
        """Watch the sample folders changed since `since` (and those of live runs); the
        rest of the archive is left to the discovery pass."""
        if self.folders is None:
            return
        for root in self.config.watch_root:
            for sample in self._sample_folders(root):
                try:
                    recent = sample.stat().st_mtime >= since
                except OSError:
                    continue
                if recent or any(u.found.folder.parent == sample for u in self.units.values()):
                    self.folders.watch(sample)

    def _foreign_file(self, sample: Path, name: str) -> None:
        """(On the loop.) A pooled run saw a file of a run the host does not know: read
        the sample folder again (the run started there)."""
        parsed = parse_pod5_name(name)
        if parsed is None:
            return
        key = parsed.key
        if key in self.units or key in self.left or key in self.finished or key in self.failed:
            return
        self._folder_changed(sample, name)

    def _folder_changed(self, folder: Path, name: str) -> None:
        """(On the loop.) A watched folder got a new entry: look at it soon, once."""
        self._changed.setdefault(folder, set()).add(name)
        if self._changes is None or self._changes.done():
            self._changes = asyncio.create_task(self._take_changes(), name="reactor-folders")

    async def _take_changes(self) -> None:
        while self._changed:
            folder, names = self._changed.popitem()
            try:
                await self._folder_news(folder, names)
            except Exception:
                log.exception("discovery_failed", folder=str(folder))

    async def _folder_news(self, folder: Path, names: set[str]) -> None:
        """What a new entry in a watched folder means, by the folder's depth below its
        root: a group, a sample, a run (or a pooled POD5 folder), a run's POD5 folder or
        final summary."""
        root = next((r for r in self.config.watch_root if folder.is_relative_to(r)), None)
        if root is None or self.folders is None:
            return
        depth = len(folder.relative_to(root).parts)
        since = self.wall() - self.config.adopt_since
        if depth == 0:  # new group folders
            for name in names:
                group = folder / name
                if group.is_dir() and self.folders.watch(group):
                    for sample in subfolders(group):
                        await self._new_sample(root, sample, since)
        elif depth == 1:  # new sample folders
            for name in names:
                if (folder / name).is_dir():
                    await self._new_sample(root, folder / name, since)
        elif depth == 2:  # a run folder, or a pooled sample's POD5 folder
            await self._read_sample(root, folder, since)
        elif depth == 3:  # inside a run folder: a POD5 folder, the final summary
            for unit in list(self.units.values()):
                if unit.found.folder == folder and not unit.found.pooled:
                    again = await asyncio.to_thread(read_run_folder, root, folder)
                    with unit.bound():
                        if again is not None:
                            await unit.refresh(again)
                        unit.finisher.check()

    async def _new_sample(self, root: Path, sample: Path, since: float) -> None:
        if self.folders is not None:
            self.folders.watch(sample)
        await self._read_sample(root, sample, since)

    async def _read_sample(self, root: Path, sample: Path, since: float) -> None:
        def read() -> tuple[int, list[FoundRun]]:
            return _sample_mtime(sample) or 0, read_sample(root, sample)

        mtime, runs = await asyncio.to_thread(read)
        self._samples[sample] = _Seen(mtime, {run.key for run in runs})
        for run in runs:
            await self._consider(run, since)

    def _sample_folders(self, root: Path) -> Iterator[Path]:
        for group in subfolders(root):
            yield from subfolders(group)

    async def _maybe_retire(self, unit: RunUnit) -> None:
        if unit.phase != "complete":
            return
        state = unit.reactor.state
        if state.backlog()[0] or any(True for _ in state.live_jobs()):
            return  # files requeued after the end are basecalled before it leaves
        now = self.clock()
        if unit.completed_at is None:
            unit.completed_at = now
            self.share.forget(unit.key)
            if self.config.merge_samples:
                await self._merge_sample(unit)
            return
        if now - unit.completed_at < RETIRE_AFTER_S:
            return
        await self.retire(unit.key)

    async def _merge_sample(self, unit: RunUnit) -> None:
        """A run of the sample completed: its complete runs merged again, per barcode
        (`merge_samples`), on a worker thread; a failure is logged, the run unharmed."""
        group, sample = unit.group, unit.sample
        base = self.config.output_root or unit.found.root
        if not group or not sample:
            return

        def merge() -> tuple[Path, list[Path], MergedFiles]:
            (runs,) = sample_runs([base], sample, group)
            target = runs.sample_folder / MERGED_SAMPLE
            return target, runs.complete, merge_into(target, runs.complete)

        try:
            async with self._merging:  # one sample merge at a time: two runs may end together
                target, runs, merged = await asyncio.to_thread(merge)
        except Exception as exc:  # pysam raises SamtoolsError; the disk, OSError
            log.error("sample_merge_failed", run=str(unit.key), group=group, sample=sample,
                      detail=" ".join(str(exc).split()))  # fmt: skip
            return
        log.info("sample_merged", run=str(unit.key), group=group, sample=sample,
                 folder=str(target), runs=len(runs), files=merged.written)  # fmt: skip

    async def retire(self, key: RunKey) -> None:
        """A complete run leaves memory and /metrics; /status lists it as finished."""
        unit = self.units.pop(key)
        done = unit.reactor.count_fields()["done"]
        with unit.bound():
            await unit.stop()
        if self.folders is not None and not unit.found.pooled:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._watch_worker, self.folders.unwatch, unit.found.folder)
        for job_id in [j for j, u in self._jobs.items() if u is unit]:
            del self._jobs[job_id]
        self.finished[key] = FinishedRun(key, unit.found.folder, unit.place.output_dir, done)
        log.info("run_retired", run=str(key), files_done=done)

    # -------------------------------------------------------------- operators

    def find(self, name: str) -> RunKey:
        """A run by its name (`PAW12345_fd97ea7b`) or its folder (absolute, or relative
        to a root). Raises UnknownRun."""
        known: list[tuple[RunKey, Path]] = [
            *((key, unit.found.folder) for key, unit in self.units.items()),
            *((key, run.folder) for key, run in self.left.items()),
            *((key, run.folder) for key, run in self.finished.items()),
        ]
        for key, _folder in known:
            if name == str(key):
                return key
        candidates = {
            c.absolute() for c in [Path(name)] + [r / name for r in self.config.watch_root]
        }
        for key, folder in known:
            if folder.absolute() in candidates:
                return key
        raise UnknownRun(name)

    async def add(self, name: str) -> str:
        """Serve a run the adoption rule left (`reactor run add`), or one that failed to
        start, once more. Returns what happened: "started", "known", "finished", "failed"."""
        key = self.find(name)
        run = self.left.get(key)
        if run is None and key in self.failed:
            for root in self.config.watch_root:
                for found in find_runs(root).runs:
                    if found.key == key:
                        run = found
        if run is None:
            return "known" if key in self.units else "finished"
        return await self._consider(run, 0.0, asked=True)

    def close(self, name: str, reason: str) -> tuple[RunKey, bool]:
        """End a run now, with what is done (`reactor run close`); (its key, whether it
        was closed now: False when it had ended already or is not served)."""
        key = self.find(name)
        unit = self.units.get(key)
        if unit is None:
            return key, False
        with unit.bound():
            return key, unit.finisher.close(reason)

    async def set_params(
        self, name: str, values: dict[str, str], *, rebasecall: bool
    ) -> tuple[RunKey, dict[str, str], bool]:
        """(the run, its parameters now, whether they changed). Raises UnknownRun, and
        RuleError for a parameter that is not one."""
        (rule,) = parse_rules([{"set": values}])
        key = self.find(name)
        unit = self.units.get(key)
        if unit is None:
            return key, {}, False
        with unit.bound():
            changed = await unit.change_params(dict(rule.set), rebasecall=rebasecall)
        return key, unit.params, changed

    def prioritise(self, name: str, weight: float) -> RunKey:
        """Give a run `weight` files for each of a normal run's (`reactor run prioritise`)."""
        key = self.find(name)
        self.share.set_weight(key, weight)
        log.info("run_prioritised", run=str(key), weight=weight)
        return key

    # --------------------------------------------------------------- requests

    async def assign(
        self, engine_id: str, batch_size: int, *, takes_params: bool = False
    ) -> Job | None:
        """A batch of one run's files: the run whose turn it is by the fair share. An
        engine that cannot be told parameters (`takes_params` false: the seed's protocol)
        gets only runs whose parameters are the lab's `seed_params`."""
        seed = dict(self.config.seed_params)
        waiting: dict[RunKey, Backlog] = {}
        for key, unit in self.units.items():
            files, oldest = unit.reactor.state.backlog()
            # A complete run's files are handed out too (one requeued after the end, one
            # that arrived late): basecalled as in a single run, the run stays complete.
            if files > 0 and unit.reactor.ready and not unit.rebasecalling:
                waiting[key] = Backlog(files, oldest)
        for key in self.share.order(waiting):
            chosen = self.units.get(key)
            if chosen is None:
                continue
            with chosen.bound():
                if chosen.pinned is None:
                    await chosen.pin()
                if not takes_params and not (
                    self.config.seed_engines and seed_can_take(for_engines(chosen.params), seed)
                ):
                    continue
                job = await chosen.reactor.assign(engine_id, batch_size)
            if job is not None:
                self.share.served(key, len(job.files))
                self._jobs[job.job_id] = chosen
                return job
        return None

    def _unit_of(self, job_id: str) -> RunUnit:
        unit = self._jobs.get(job_id)
        if unit is None:
            raise UnknownJob(job_id)
        return unit

    def folders_of(self, job: Job) -> tuple[str, str]:
        """The job's folders as engines are given them: relative to the engine root."""
        unit = self._unit_of(job.job_id)
        input_dir = f"ASSIGNED_{job.job_id}_{job.engine_id}"
        output_dir = f"TMPOUTPUT_{job.job_id}_{job.engine_id}"
        return f"{unit.jobs_prefix}/{input_dir}", f"{unit.output_prefix}/{output_dir}"

    def params_of(self, job: Job) -> dict[str, str]:
        return for_engines(self._unit_of(job.job_id).params)

    def keepalive(self, job_id: str, engine_state: str) -> bool:
        unit = self._unit_of(job_id)
        with unit.bound():
            return unit.reactor.keepalive(job_id, engine_state)

    async def complete(self, job_id: str, job_state: str) -> CompletionPlan:
        unit = self._unit_of(job_id)
        with unit.bound():
            return await unit.reactor.complete(job_id, job_state)

    def hold_for_good(self, job_id: str) -> None:
        unit = self._unit_of(job_id)
        with unit.bound():
            unit.reactor.hold_for_good(job_id)

    async def requeue(self, folders: list[str] | None) -> dict[str, list[str]]:
        """Release quarantine folders of any run (all of every run when None)."""
        released: dict[str, list[str]] = {}
        wanted = None if folders is None else set(folders)
        if wanted is not None:
            known = {
                name for unit in self.units.values() for name in unit.reactor.quarantine_folders
            }
            unknown = sorted(wanted - known)
            if unknown:
                raise KeyError(unknown[0])
        for unit in list(self.units.values()):
            mine = (
                None
                if wanted is None
                else [n for n in wanted if n in unit.reactor.quarantine_folders]
            )
            if mine == []:
                continue
            with unit.bound():
                released.update(await unit.reactor.requeue(mine))
        return released

    @property
    def writer_broken(self) -> BaseException | None:
        for unit in self.units.values():
            if unit.reactor.writer.broken is not None:
                return unit.reactor.writer.broken
        return None

    # ------------------------------------------------------------------ views

    def heartbeat(self) -> dict[str, Any]:
        now = self.clock()
        last = max(
            (unit.reactor.state.last_activity for unit in self.units.values()),
            default=self.started_at,
        )
        idle = now - last
        status = "true" if idle >= self.config.shutdown_interval else "false"
        return {"status": status, "inactivity_interval": idle}

    def status(self) -> dict[str, Any]:
        runs = [unit.view() for _key, unit in sorted(self.units.items())]
        totals: dict[str, int] = {}
        for run in runs:
            for state, count in run["files"].items():
                totals[state] = totals.get(state, 0) + count
        for run in runs:
            run["weight"] = self.share.weight(RunKey(run["flow_cell"], run["protocol_run"]))
        now = self.clock()
        units = list(self.units.values())
        engines, engines_total = merged_engines(
            (unit.reactor.state.engines for unit in units),
            (unit.reactor.reads.engines for unit in units),
            now,
        )
        seen = [s for unit in units if (s := unit.reactor.engine_seen_s(now)) is not None]
        broken = self.writer_broken
        return {
            "mode": "host",
            "ready": self.ready,
            "roots": [str(root) for root in self.config.watch_root],
            "files": totals,
            "engines_waiting": len(self.waiters),
            "time_zone": HOST_TIME_ZONE,
            "engines": engines,
            "engines_total": engines_total,
            "alerts": alerts(
                waiting_files=sum(run["backlog"]["files"] for run in runs),
                waiting_s=max((run["backlog"]["waiting_s"] for run in runs), default=0.0),
                engine_seen_s=min(seen, default=None),
                quarantined=totals.get("quarantined", 0),
                held=sum(run["held"] for run in runs),
                paused=[run["run"] for run in runs if run["paused"]],
                storage=None if broken is None else str(broken),
                hash_problems=[run["run"] for run in runs if hash_trouble(run["output_hash"])],
            ),
            "runs": runs,
            **self._not_served(),
        }

    def _not_served(self) -> dict[str, Any]:
        """The runs not served, RUNS_LISTED of each kind at most (newest first: see
        `_newest_first`; failed ones by name), each with its total."""
        finished = heapq.nlargest(RUNS_LISTED, self.finished.values(), key=_newest_first)
        left = heapq.nlargest(RUNS_LISTED, self.left.values(), key=_newest_first)
        failed = heapq.nsmallest(RUNS_LISTED, self.failed.items())
        return {
            "finished": [
                {"run": str(f.key), "folder": str(f.folder), "files_done": f.files_done}
                for f in finished
            ],
            "finished_total": len(self.finished),
            "left": [
                {"run": str(r.key), "folder": str(r.folder), "complete": r.complete} for r in left
            ],
            "left_total": len(self.left),
            "failed": [{"run": str(key), "reason": reason} for key, reason in failed],
            "failed_total": len(self.failed),
        }

    def run_status(self, name: str) -> dict[str, Any]:
        """One served run in detail: its /status as a single run's (`GET /status?run=`),
        with `run` saying which run it is. Raises UnknownRun if it is not served."""
        key = self.find(name)
        unit = self.units.get(key)
        if unit is None:
            raise UnknownRun(name)
        body = unit.reactor.status()
        body["run"] = {**unit.identity(), "weight": self.share.weight(key)}
        return body

    def engine_work(self) -> EngineWork:
        """Every run's work together, as the fleet sizes engines by it."""
        states = [unit.reactor.state for unit in self.units.values()]
        return EngineWork(
            waiting_files=sum(state.backlog()[0] for state in states),
            files_known=sum(len(state.files) for state in states),
            batch_size=self.config.batch_size,
            engines=engines_seen((state.engines for state in states), self.clock()),
        )

    def when_scanned(self, action: Callable[[], None]) -> None:
        """`action()` now: each run's unit scans before the host serves it."""
        action()

    def status_line(self) -> str:
        live = sum(1 for unit in self.units.values() if unit.phase != "complete")
        done = sum(unit.reactor.count_fields()["done"] for unit in self.units.values())
        return f"{live} runs live, {len(self.finished)} finished, {done} files done"


def _newest_first(run: FinishedRun | FoundRun) -> tuple[str, str]:
    """MinKNOW names a run's folder after its start (`YYYYMMDD_HHMM_…`): the largest
    name is the newest run (a pooled run's folder is its sample's: they sort by it)."""
    return run.folder.name, str(run.key)


SPARK_POINTS = 24  # slots of a run's yield in the host's /status (a sparkline)


def _sparkline(arrivals: dict[str, Any]) -> list[list[int]]:
    return coarsen(arrivals["bases"], arrivals["slot_s"], SPARK_POINTS)


def _sample_mtime(sample: Path) -> int | None:
    """When a sample folder last changed, its POD5 folders included (a pooled sample's
    new run shows first as files in them); None if it cannot be read."""
    try:
        latest = sample.stat().st_mtime_ns
    except OSError:
        return None
    for name in POD5_FOLDERS:
        with contextlib.suppress(OSError):
            latest = max(latest, (sample / name).stat().st_mtime_ns)
    return latest
