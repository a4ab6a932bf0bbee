"""End of run, the I/O part: find the stop file, write the marker, run `on_complete`.

`reactor.core.endrun` decides; the `Finisher` here carries it out, on the event loop:

Detection. `check()` runs after every sweep (every `sweep_interval`) and on every input
event whose name matches `stop_file`. Until the stop file is seen, it lists INPUTDIR's
parent (MinKNOW writes `.pod5` into `<run>/pod5/` and `final_summary_*.txt` into
`<run>/`), a handful of entries, at every check: it is not watched (a watch there would
see a whole run folder's churn), so a summary there is noticed within a sweep. INPUTDIR
is watched, so a summary there comes with its event; listing it is O(files) (~0.9 s at
a million), so it is listed at the first check (a summary from before the start has no
event), then every `reconcile_interval` as a safety net, never again if that is 0.
The first time the stop file is seen, INPUTDIR is reconciled once, so `.pod5` files
written just before the summary are counted even if their events are still on the way;
then the run is complete as soon as nothing is incomplete, ready or assigned and no job
is live.

At most once, visibly. On completion the finisher writes `OUTPUTDIR/.reactor/run-complete.json`
(`reactor.disk.marker`) *before* it starts the command, atomically and fsynced: state
`claimed`, the time, the counts, the stop file and the command (paths absolute). When
the command ends, the marker is rewritten with its exit code and duration (`finished`),
or why it could not start (`not_started`), or that the service stopped it (`stopped`).
With no command configured the marker says `no_command`. On start, a marker means the
run is already complete and nothing is run again; a `claimed` or `stopped` marker means
the command may have been cut short (a crash, a kill, a shutdown), so the service logs
`on_complete_interrupted` with the marker's path, the command and what to do: check
the command's log and run it by hand (or remove the marker: the next start runs
`on_complete` again as soon as the run is complete).

Why at most once rather than exactly once: claiming after the command started, or
re-running a claimed command on restart, would run it twice whenever a crash fell
between the command's start and the marker's update. A `sbatch` submitted twice
aligns a run twice, which costs more than a person re-running one line after a crash.
Exactly once across a crash *inside* the command needs the command's own cooperation
(an idempotent submit, a job name it checks): the command gets `REACTOR_RUN_MARKER` so
it can, but reactor cannot make that promise for it.

Running (`reactor.serve.oncomplete`): split with `shlex`, run without a shell, in a session
of its own, cwd OUTPUTDIR, output appended to `OUTPUTDIR/reactor-on-complete.log`;
`on_complete_finished` carries its last lines. Its environment is the service's, without
tokens or systemd's variables, plus the `REACTOR_RUN_*` of `reactor.core.endrun.run_env`.

Shutdown. From aiohttp's `on_shutdown` (`begin_shutdown()`) on, `check()` claims nothing
(the next start does), and a command that ends with a non-zero code or by a signal from
anyone (systemd signals the whole cgroup) is recorded `stopped`. If it still runs when
the contexts unwind, `stop()` waits for it up to `stop_grace_s` (10 s), then SIGTERMs
its process group, SIGKILLs it `kill_grace_s` later, and records `stopped`. It does not
leave the command running detached: under systemd the unit's cgroup is killed when the
service ends anyway, and a command killed without a record would look finished. Long
pipelines belong in a scheduler: make `on_complete` submit them (`sbatch`) and return.

`exit_on_complete`: once the run is complete and the command has ended (or at once,
with none), the finisher logs `exiting` and calls `request_exit`; for `reactor serve`
that sends SIGTERM to the process itself, which `web.run_app` turns into its graceful
shutdown (exit code 0). A service started again on a complete run exits too, once any
files that arrived late are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from reactor.core.endrun import RUN_ENV_PREFIX, Step, next_step, run_env, stop_file_matcher
from reactor.core.events import FsEvent
from reactor.core.minknow import RunKey, final_summary_key
from reactor.core.state import FileState
from reactor.disk.marker import (
    INTERRUPTED_STATES,
    LEGACY_MARKER_NAME,
    Marker,
    MarkerState,
    marker_path,
    read_marker,
    write_marker,
)
from reactor.disk.merged import MERGED, merge_run
from reactor.disk.output_hash import listed_pod5
from reactor.disk.stop_file import find_stop_file
from reactor.runtime.processes import signal_group
from reactor.serve.oncomplete import LogUnavailable, spawn, start_problem, tail
from reactor.serve.service import Reactor

log = structlog.get_logger("reactor.finisher")

LOG_NAME = "reactor-on-complete.log"


def exit_by_sigterm() -> None:
    """Ask `web.run_app` for its graceful shutdown, as systemd would."""
    os.kill(os.getpid(), signal.SIGTERM)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Finisher:
    """Watches for the end of the run and runs on_complete at most once (see above)."""

    def __init__(
        self,
        reactor: Reactor,
        *,
        request_exit: Callable[[], None] = exit_by_sigterm,
        stop_grace_s: float = 10.0,
        kill_grace_s: float = 5.0,
        run_vars: Mapping[str, str] | None = None,
        run_dir: Path | None = None,
        work_folders: Callable[[], tuple[Path, ...]] | None = None,
    ) -> None:
        self.reactor = reactor
        # The run's folders of work, for the output hash cross-check: the coordinator's
        # own, or (staging) the run's POD5 folders its copies come from
        self.work_folders = work_folders or (lambda: self.reactor.inputs.folders)
        # Where the stop file is, when not beside INPUTDIR (staging: INPUTDIR is the
        # run's staging folder, the final summary is in the run folder)
        self.run_dir = run_dir
        # More of on_complete's REACTOR_RUN_* variables (host mode: the flow cell, sample…)
        self.run_vars = dict(run_vars or {})
        self.config = reactor.config
        # Absolute: they go into the marker and the command's environment, and the
        # command runs in OUTPUTDIR, where a relative output_dir would point elsewhere.
        self.marker_path = marker_path(self.config.output_dir.absolute())
        self.log_path = self.config.output_dir.absolute() / LOG_NAME
        self.request_exit = request_exit
        self.stop_grace_s = stop_grace_s
        self.kill_grace_s = kill_grace_s
        self._matcher = stop_file_matcher(self.config.stop_file)
        self._input_listed_at = -math.inf  # when INPUTDIR was last listed for the stop file
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._running = False  # on_complete started (or starting) and not ended
        self._merged = False  # merge_outputs: the run's outputs merged (or it failed)
        self._merging: asyncio.Task[None] | None = None
        self._stopping = False  # shutdown has begun: claim nothing; an end is "stopped"
        self._exit_reason: str | None = None  # set once the run is complete
        self._exit_requested = False
        self._hash_check: asyncio.Task[None] | None = None  # the end-of-run cross-check

    # ------------------------------------------------------------- start

    def start(self) -> None:
        """After recovery: a marker says the run was completed by an earlier start."""
        self._take_over_legacy_marker()
        try:
            marker = read_marker(self.marker_path)
        except ValueError as exc:
            self._mark_complete(None)
            log.error(
                "run_complete_marker_unreadable",
                marker=str(self.marker_path),
                detail=str(exc),
                action="on_complete is not run again; remove the marker to run it at next start",
            )
            return
        if marker is None:
            return
        self._show(marker)
        self._mark_complete(Path(marker.stop_file) if marker.stop_file else None)
        if marker.state in INTERRUPTED_STATES:
            command = shlex.join(marker.command or [])
            log.error(
                "on_complete_interrupted",
                marker=str(self.marker_path),
                state=str(marker.state),
                command=command,
                log=str(self.log_path),
                action=(
                    f"on_complete may have been cut short and is not run again: check "
                    f"{self.log_path}, then run it by hand ({command}) with the REACTOR_RUN_* "
                    f"variables the marker lists under env, or remove {self.marker_path} to "
                    "have reactor run it at the next start"
                ),
            )
        else:
            log.info("run_already_complete", marker=str(self.marker_path), state=str(marker.state))

    def _take_over_legacy_marker(self) -> None:
        """A run completed by a version that kept the marker in OUTPUTDIR: move it into
        the state folder, so that run stays complete. Only at the start that made the
        state folder (the first start of this version on the run): later, a file of that
        name in OUTPUTDIR, where engines write, is not reactor's and could otherwise keep
        on_complete from ever running. Never a link."""
        legacy = self.config.output_dir.absolute() / LEGACY_MARKER_NAME
        if not self.reactor.state_folder_new or self.marker_path.exists():
            return
        if legacy.is_symlink() or not legacy.is_file():
            return
        try:
            legacy.replace(self.marker_path)
        except OSError as exc:
            log.error("run_complete_marker_failed", marker=str(legacy), detail=str(exc))
            return
        log.warning("run_complete_marker_moved", marker=str(self.marker_path), was=str(legacy))

    def _mark_complete(self, stop_file: Path | None) -> None:
        run_end = self.reactor.run_end
        run_end.stop_file = run_end.stop_file or stop_file
        run_end.reconciled = True
        run_end.complete = True
        self._exit_reason = "already_complete"

    # ------------------------------------------------------------- check

    def on_input_event(self, event: FsEvent) -> None:
        """An input event for a non-`.pod5` name (the watcher lets stop files through)."""
        if self.reactor.run_end.stop_file is None and self._matcher.match(event.name):
            path = self.config.input_dir.absolute() / event.name
            if path.is_file():
                self._seen(path)
        self.check()

    def check(self) -> None:
        """Look for the stop file until it is seen; then reconcile once, and declare the
        run complete when nothing is left. Also where `exit_on_complete` is carried out."""
        if self._stopping:
            return  # shutting down: claim nothing; the next start judges the run
        run_end = self.reactor.run_end
        if run_end.stop_file is None and not run_end.complete:
            in_input = self._list_input_now()
            if self.run_dir is not None:
                found = find_stop_file(self.run_dir / "-", self.config.stop_file, in_input=False)
            else:
                found = find_stop_file(
                    self.config.input_dir, self.config.stop_file, in_input=in_input
                )
            if found is not None:
                self._seen(found)
        step = self._step()
        if step is Step.RECONCILE:
            self.reactor.reconcile("run_end")
            run_end.reconciled = True
            step = self._step()
        if step is Step.COMPLETE:
            self._complete()
        self._maybe_exit()

    def _list_input_now(self) -> bool:
        """Whether this check lists INPUTDIR (see the module's docstring): at the first
        check, then every reconcile_interval, never again when that is 0. Not while the
        start-up scan goes on: the run cannot end before it does, and a listing of 10^6
        names would hold back the first answer (the first check after the scan lists)."""
        if self.reactor.scanning:
            return False
        now = self.reactor.clock()
        first = self._input_listed_at == -math.inf
        interval_s = self.config.reconcile_interval
        if first or (interval_s > 0 and now - self._input_listed_at >= interval_s):
            self._input_listed_at = now
            return True
        return False

    def _pending(self) -> int:
        """Files the run still waits for: incomplete, ready, assigned, or elsewhere (files
        still to be staged, or not seen yet by the start-up scan)."""
        counts = self.reactor.count_fields()
        waiting = counts["incomplete"] + counts["ready"] + counts["assigned"]
        # While the start-up scan goes on, files not seen yet may be waiting: never done.
        return waiting + self.reactor.pending_elsewhere() + int(self.reactor.scanning)

    def _step(self) -> Step:
        pending = self._pending()
        live = sum(1 for _ in self.reactor.state.live_jobs())
        return next_step(self.reactor.run_end, pending_files=pending, live_jobs=live)

    def _seen(self, stop_file: Path) -> None:
        self.reactor.run_end.stop_file = stop_file
        log.info("sequencing_finished", stop_file=str(stop_file), **self.reactor.count_fields())

    # ---------------------------------------------------------- complete

    def close(self, reason: str) -> bool:
        """A person ends the run (`reactor run close`): a stalled one, say. It completes
        now, with what is done; its on_complete runs with REACTOR_RUN_END `closed: …`.
        False if it had ended already."""
        run_end = self.reactor.run_end
        if run_end.complete or self._stopping:
            return False
        run_end.closed = reason
        left = self.reactor.count_fields()
        log.warning(
            "run_closed",
            reason=reason,
            files_left={k: left[k] for k in ("incomplete", "ready", "assigned") if left[k]},
        )
        self._complete()
        return run_end.complete

    def _complete(self) -> None:
        run_end = self.reactor.run_end
        stop_file = run_end.stop_file
        if stop_file is None and run_end.closed is None:
            return  # never: next_step says COMPLETE only after it is seen
        if self.config.merge_outputs and not self._merged:
            if self._merging is None:  # merged before the claim: on_complete sees them
                self._merging = asyncio.get_running_loop().create_task(
                    self._merge_then_complete(), name="reactor-merge-outputs"
                )
            return
        counts = self.reactor.count_fields()
        command = shlex.split(self.config.on_complete) if self.config.on_complete else None
        env = run_env(
            os.environ,
            input_dir=self.config.input_dir,
            output_dir=self.config.output_dir,
            stop_file=stop_file,
            marker=self.marker_path,
            counts=counts,
            run_dir=self.run_dir or self.config.input_dir.absolute().parent,
            end="complete" if run_end.closed is None else f"closed: {run_end.closed}",
        )
        env.update(self.run_vars)
        marker = Marker(
            state=MarkerState.CLAIMED if command else MarkerState.NO_COMMAND,
            completed_at=_utc_now(),
            stop_file="" if stop_file is None else str(stop_file),
            files_done=counts["done"],
            files_quarantined=counts["quarantined"],
            command=command,
            log=str(self.log_path) if command else None,
            # So a person can run it by hand with what reactor gave it.
            env={k: v for k, v in env.items() if k.startswith(RUN_ENV_PREFIX)} if command else None,
        )
        # The claim comes first: without it on disk, the command must not start.
        if not self._record(marker, retried=True):
            return  # the next sweep tries again
        run_end.complete = True
        self._exit_reason = "run_complete"
        reads = self.reactor.reads
        log.info(
            "run_complete",
            stop_file=str(run_end.stop_file or ""),
            closed=run_end.closed,
            files_done=counts["done"],
            files_quarantined=counts["quarantined"],
            marker=str(self.marker_path),
            reads=reads.total.reads,
            bases=reads.total.bases,
            reads_exactly_once=reads.reads.exactly_once,
            **{f"reads_{key}": value for key, value in reads.reads.accounting().items()},
        )
        if command:
            self._running = True
            self._task = asyncio.get_running_loop().create_task(
                self._run(marker, command, env), name="reactor-on-complete"
            )
        key = None if stop_file is None else final_summary_key(stop_file.name)
        if stop_file is not None and key is not None:
            self._hash_check = asyncio.get_running_loop().create_task(
                self._cross_check(stop_file.parent, key), name="reactor-output-hash"
            )

    async def _merge_then_complete(self) -> None:
        """The run's outputs merged per barcode (on the writer's thread), then the run is
        complete. A merge that fails is logged and the run completes without it."""
        output_dir = self.config.output_dir
        try:
            merged = await self.reactor.write_chore(functools.partial(merge_run, output_dir))
        except Exception as exc:  # pysam raises SamtoolsError; the disk, OSError
            log.error(
                "outputs_merge_failed",
                folder=str(output_dir / MERGED),
                detail=" ".join(str(exc).split()),
                action="the run completes without merged files; merge them by hand with "
                "reactor merge, or fix the cause and restart",
            )
        else:
            log.info(
                "outputs_merged",
                folder=str(output_dir / MERGED),
                files=merged.written,
                bytes=merged.bytes,
            )
        self._merged = True
        if not self._stopping:
            self._complete()

    async def _cross_check(self, run_folder: Path, key: RunKey) -> None:
        """MinKNOW's output hash file, if the run has one: every POD5 it lists must be
        there, not empty, and (in a folder that is work) done or quarantined. Reported,
        in the log and /status; the reading is on a worker thread."""
        listed = await asyncio.to_thread(listed_pod5, run_folder, key)
        if listed is None:
            return
        work = set(self.work_folders())
        not_done: list[str] = []
        for relative in listed.pod5:
            path = run_folder / relative
            if relative in listed.missing or not (
                path.parent in work or path.parent.parent in work
            ):
                continue
            state = self.reactor.state.state_of(path.name)
            if state not in (FileState.DONE, FileState.QUARANTINED):
                not_done.append(str(relative))
        problems = {
            "missing": [str(p) for p in listed.missing],
            "empty": [str(p) for p in listed.empty],
            "not_done": not_done,
        }
        result = {
            "file": listed.source.name,
            "pod5_listed": len(listed.pod5),
            **{kind: len(names) for kind, names in problems.items()},
            "unreadable": listed.unreadable,
        }
        self.reactor.hash_check = result
        if listed.unreadable is None and not any(problems.values()):
            log.info("output_hash_checked", **result)
            return
        log.error(
            "output_hash_mismatch",
            **result,
            first={kind: names[:10] for kind, names in problems.items() if names},
            action="a POD5 MinKNOW listed is missing or empty: look for it in queued_reads/ "
            "or tmp/, or repair it (pod5 recover), then reactor run add RUN; one not done: "
            "reactor status and the log say why (quarantined, or never complete)",
        )

    def _show(self, marker: Marker) -> None:
        """What /status says of on_complete (`end.on_complete`): the marker's outcome,
        not its command or environment."""
        self.reactor.on_complete = {
            "state": str(marker.state),
            "completed_at": marker.completed_at,
            "started_at": marker.started_at,
            "finished_at": marker.finished_at,
            "exit_code": marker.exit_code,
            "duration_s": marker.duration_s,
            "detail": marker.detail,
        }

    def _record(self, marker: Marker, *, retried: bool = False) -> bool:
        """Write the marker; False (logged) if it cannot be. `retried`: the caller tries
        again at the next sweep (the claim); results are not retried, so a restart
        reports the command as interrupted."""
        try:
            write_marker(self.marker_path, marker)
            self._show(marker)
        except OSError as exc:
            log.error(
                "run_complete_marker_failed",
                marker=str(self.marker_path),
                state=str(marker.state),
                detail=str(exc),
                action="make output_dir writable"
                + ("; reactor tries again at the next sweep" if retried else ""),
            )
            return False
        return True

    async def _run(self, marker: Marker, command: list[str], env: dict[str, str]) -> None:
        began = time.perf_counter()
        marker = replace(marker, started_at=_utc_now())
        try:
            process = await spawn(command, env, cwd=self.config.output_dir, log_path=self.log_path)
        except OSError as exc:
            detail = str(exc) if isinstance(exc, LogUnavailable) else start_problem(command[0], exc)
            self._record(replace(marker, state=MarkerState.NOT_STARTED, detail=detail))
            self._running = False
            log.error(
                "on_complete_failed",
                command=shlex.join(command),
                detail=detail,
                action=(
                    f"fix on_complete, then run it by hand with the REACTOR_RUN_* variables "
                    f"listed in {self.marker_path}"
                ),
            )
            self._maybe_exit()
            return
        self._process = process
        log.info(
            "on_complete_started",
            command=shlex.join(command),
            pid=process.pid,
            log=str(self.log_path),
        )
        exit_code = await process.wait()
        duration_s = round(time.perf_counter() - began, 3)
        # During shutdown any end but a clean one counts as stopped: systemd may have
        # signalled the command before reactor did (it signals the unit's cgroup).
        stopped = self._stopping and exit_code != 0
        state = MarkerState.STOPPED if stopped else MarkerState.FINISHED
        # Read before recording: the marker and the log event then land together, with
        # no await between them for anyone watching the marker to slip into.
        last_lines = await asyncio.to_thread(tail, self.log_path)
        self._record(
            replace(
                marker,
                state=state,
                exit_code=exit_code,
                duration_s=duration_s,
                finished_at=_utc_now(),
            )
        )
        self._running = False
        fields = {"exit_code": exit_code, "duration_s": duration_s, "log": str(self.log_path)}
        if state is MarkerState.STOPPED:
            log.warning(
                "on_complete_stopped",
                output_tail=last_lines,
                action="the service stopped it while shutting down: run it by hand",
                **fields,
            )
        elif exit_code == 0:
            log.info("on_complete_finished", **fields)
        else:
            log.error(
                "on_complete_finished",
                output_tail=last_lines,
                action=f"it failed: see {self.log_path}, then run it by hand once fixed",
                **fields,
            )
        self._maybe_exit()

    # --------------------------------------------------------------- exit

    def _maybe_exit(self) -> None:
        if not self.config.exit_on_complete or self._exit_requested or self._running:
            return
        if self._exit_reason is None:
            return  # not complete
        if self._pending() or any(True for _ in self.reactor.state.live_jobs()):
            return  # files that arrived after the end: basecall them first
        self._exit_requested = True
        log.info("exiting", reason=self._exit_reason)
        self.request_exit()

    @property
    def shutting_down(self) -> bool:
        return self._stopping

    def begin_shutdown(self) -> None:
        """The service has begun to shut down (aiohttp's on_shutdown): claim nothing from
        now on, and record an end of a running command other than exit 0 as stopped."""
        self._stopping = True
        self._exit_requested = True  # shutting down already: no second SIGTERM

    async def stop(self) -> None:
        """At shutdown: let a running on_complete end (bounded), then stop it."""
        if self._hash_check is not None and not self._hash_check.done():
            self._hash_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hash_check
        self.begin_shutdown()  # also when on_shutdown did not run (an app never served)
        if self._merging is not None and not self._merging.done():
            # the merge ends on the writer's thread; the run completes at the next start
            await asyncio.wait({self._merging}, timeout=self.stop_grace_s)
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=self.stop_grace_s)
        if not done:
            if self._process is None:  # still starting: nothing to signal yet
                task.cancel()
            else:
                log.warning(
                    "on_complete_stopping", pid=self._process.pid, waited_s=self.stop_grace_s
                )
                signal_group(self._process, signal.SIGTERM)
                done, _ = await asyncio.wait({task}, timeout=self.kill_grace_s)
                if not done:
                    signal_group(self._process, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await task
