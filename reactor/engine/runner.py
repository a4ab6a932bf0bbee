"""The engine's work loop: ask for a batch, run its command under a lease, report.

`Engine` owns the loop and the signals' meaning; the protocol is `EngineClient`'s, the
subprocess `RunningCommand`'s. Everything runs on one event loop. While a batch is in
hand three things race: the command, the keepalive task (which ends only when the lease
is lost: late, forgotten, or the manager away past `grace`) and the order to hand the
batch back (a second signal, or `release_after` seconds after the first). The first to
finish decides what happens to the batch (see `reactor.engine.process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import structlog

from reactor.engine.client import (
    Assignment,
    BadAnswer,
    EngineClient,
    ManagerError,
    ManagerRefused,
    ManagerUnavailable,
    backoff_delay,
)
from reactor.engine.command import RunningCommand, command_env
from reactor.settings.engine import EngineConfig
from reactor.settings.templates import expand_command, parse_command, parse_template

# Lazy, as in the other modules: the real logger is made at first use, after
# configure_logging.
log = structlog.get_logger("reactor.engine")

EXIT_OK = 0
EXIT_ABORTED = 1
EXIT_CANNOT_GO_ON = 3
ENGINE_LOG = "engine.log"
FOLDER_POLL_S = 0.2
T = TypeVar("T")


class BatchOutcome(StrEnum):
    """How a batch ended, from the engine's side."""

    DONE = "done"  # command exited 0, DONE reported
    FAILED = "failed"  # command exited non-zero, FAILED reported
    LATE = "late"  # the manager said late: stopped, not reported
    FORGOTTEN = "forgotten"  # 4xx to a keepalive: stopped, not reported
    ABANDONED = "abandoned"  # the manager away past grace: stopped, not reported
    RELEASED = "released"  # a second signal or release_after: stopped, RELEASED reported
    BROKEN = "broken"  # could not run the command here: FAILED reported, engine exits


@dataclass(slots=True)
class Tally:
    """Batches by outcome, for the final log line."""

    counts: dict[BatchOutcome, int]

    def add(self, outcome: BatchOutcome) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def fields(self) -> dict[str, int]:
        return {f"jobs_{outcome}": count for outcome, count in self.counts.items()}


class Engine:
    """One engine: the loop over batches, and what the signals mean to it."""

    def __init__(
        self,
        config: EngineConfig,
        client: EngineClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self._held = False  # the last empty answer was held by the manager (long-poll)
        self.command = parse_command(config.command)
        self.stdout_to = None if config.stdout_to is None else parse_template(config.stdout_to)
        self.input_dir = config.input_dir.absolute()
        self.output_dir = config.output_dir.absolute()
        self.stopping = asyncio.Event()  # first signal: finish the batch in hand, then exit
        self.aborting = asyncio.Event()  # second signal: hand the batch in hand back, exit 1
        # Stop the batch in hand and report RELEASED: the second signal, or release_after
        # seconds after the first.
        self.handing_back = asyncio.Event()
        self._release_timer: asyncio.TimerHandle | None = None
        self.tally = Tally({})

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.stopping.is_set():
            after = self.config.release_after
            if after is None:
                log.info("stopping", signal=name, reason="finish the batch in hand, take no more")
            else:
                reason = (
                    f"finish the batch in hand within {after:g} s or hand it back; take no more"
                )
                log.info("stopping", signal=name, reason=reason, release_after_s=after)
                loop = asyncio.get_running_loop()
                self._release_timer = loop.call_later(after, self._release_due)
            self.stopping.set()
        elif not self.aborting.is_set():
            log.warning("stopping", signal=name, reason="stop the batch in hand, report RELEASED")
            self.aborting.set()
            self.handing_back.set()

    def _release_due(self) -> None:
        """`release_after` seconds after the first signal: the batch in hand, if any, is
        stopped and handed back; the engine then exits 0 as it would have."""
        self._release_timer = None
        if not self.handing_back.is_set():
            log.warning("release_due", release_after_s=self.config.release_after)
            self.handing_back.set()

    # ------------------------------------------------------------------ loop

    async def run(self) -> int:
        """Batches until told to stop; returns the exit code."""
        try:
            return await self._run()
        finally:
            if self._release_timer is not None:  # the batch ended in time, or none was in hand
                self._release_timer.cancel()
                self._release_timer = None

    async def _run(self) -> int:
        idle = 0
        idle_since = self.clock()  # the start, or the end of the last batch
        while not self.stopping.is_set():
            try:
                assignment = await self._ask()
            except ManagerError as exc:
                log.error("engine_gave_up", reason="no_work_from_manager", detail=str(exc))
                return EXIT_CANNOT_GO_ON
            if assignment is None:  # stopped while asking
                break
            if assignment.empty:
                if self.config.until_empty:
                    log.info("no_work_left")
                    break
                idle_s = self.clock() - idle_since
                if self.config.exit_when_idle is not None and idle_s >= self.config.exit_when_idle:
                    log.info("idle_exit", idle_s=round(idle_s, 3))
                    break
                if self._held:
                    idle = 0
                    continue  # the manager held the request: ask again at once
                delay_s = backoff_delay(
                    idle, self.config.poll_interval, self.config.max_poll_interval
                )
                idle += 1
                log.debug("no_work", wait_s=delay_s)
                await self._sleep_unless_stopping(delay_s)
                continue
            idle = 0
            outcome = await self.run_batch(assignment)
            self.tally.add(outcome)
            idle_since = self.clock()
            if self.aborting.is_set():
                return EXIT_ABORTED
            if outcome is BatchOutcome.BROKEN:
                log.error("engine_gave_up", reason="cannot_run_command_here")
                return EXIT_CANNOT_GO_ON
            if self.config.once:
                break
        return EXIT_OK

    async def _ask(self) -> Assignment | None:
        """/assignwork, given up (None) if the first signal comes before its answer.

        A job the manager assigned in the very moment of that signal is never seen here;
        its lease expires and its files go to another engine."""
        config = self.config
        wait_s = 0.0 if config.until_empty else config.wait_for_work
        if config.exit_when_idle is not None:
            wait_s = min(wait_s, config.exit_when_idle)
        began = self.clock()
        ask = asyncio.create_task(self.client.assignwork(config.batch_size, wait_s))
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({ask, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if ask.done():
            # An empty answer that took a while: the manager held it (long-poll); one at
            # once is a seed manager's, and the engine backs off before asking again.
            self._held = wait_s > 0 and self.clock() - began >= wait_s / 2
            return ask.result()
        ask.cancel()
        with contextlib.suppress(asyncio.CancelledError, ManagerError):
            await ask
        return None

    async def _sleep_unless_stopping(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay_s)

    # ----------------------------------------------------------------- batch

    async def run_batch(self, assignment: Assignment) -> BatchOutcome:
        """Run one batch under its lease; the outcome says what was reported."""
        structlog.contextvars.bind_contextvars(job_id=assignment.job_id)
        log.info(
            "job_received",
            files=len(assignment.batch),
            report_back_interval_s=assignment.report_back_interval_s,
        )
        keeper = asyncio.create_task(self._keep_alive(assignment))
        try:
            return await self._work(assignment, keeper)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, ManagerError):
                await keeper
            structlog.contextvars.unbind_contextvars("job_id")

    async def _keep_alive(self, assignment: Assignment) -> None:
        """Keepalives every half lease; returns when the manager says late, raises
        ManagerError when the lease is lost otherwise."""
        while True:
            await asyncio.sleep(assignment.keepalive_period_s)
            if await self.client.keepalive(assignment.job_id):
                return
            log.debug("keepalive")

    async def _work(self, assignment: Assignment, keeper: asyncio.Task[None]) -> BatchOutcome:
        job_in = self.input_dir / assignment.job_input_dir
        job_out = self.output_dir / assignment.job_output_dir
        found = await self._race(self._folders_exist(job_in, job_out), keeper)
        if found is None:
            return await self._interrupted(assignment, keeper)
        if not found.result():
            log.error(
                "job_folder_missing",
                input_folder=str(job_in),
                output_folder=str(job_out),
                reason="input_dir/output_dir must be this host's paths of the run's folders",
            )
            return await self._report(assignment, keeper, "FAILED", BatchOutcome.BROKEN)
        values = self._values(assignment, job_in, job_out)
        args = expand_command(self.command, values)
        stdout_path = None if self.stdout_to is None else Path(self.stdout_to.expand(values))
        began = self.clock()
        try:
            command = await RunningCommand.start(
                args,
                cwd=job_out,
                log_path=job_out / ENGINE_LOG,
                stdout_path=stdout_path,
                env=command_env(values),
            )
        except OSError as exc:
            log.error("command_not_started", args=args, detail=str(exc))
            return await self._report(assignment, keeper, "FAILED", BatchOutcome.BROKEN)
        log.info("command_started", pid=command.pid, args=args)
        try:
            exited = await self._race(command.wait(), keeper)
        except BaseException:  # a bug or a cancellation: never leave the command behind
            await command.stop(self.config.kill_grace)
            raise
        if exited is None:
            exit_code = await command.stop(self.config.kill_grace)
            log.info("command_stopped", exit_code=exit_code, duration_s=self._since(began))
            return await self._interrupted(assignment, keeper)
        exit_code = exited.result()
        log.info("command_exited", exit_code=exit_code, duration_s=self._since(began))
        if exit_code == 0:
            return await self._report(assignment, keeper, "DONE", BatchOutcome.DONE)
        return await self._report(assignment, keeper, "FAILED", BatchOutcome.FAILED)

    def _values(self, assignment: Assignment, job_in: Path, job_out: Path) -> dict[str, str]:
        return {
            "input_dir": str(job_in),
            "output_dir": str(job_out),
            # the run's model when the manager chose one by its rules, else this engine's
            "model": assignment.params.get("model") or self.config.model or "",
            "kit_name": assignment.params.get("kit_name", ""),
            # the run's sample sheet (its barcodes' aliases), below the manager's root
            "sample_sheet": (
                str(self.config.output_dir / assignment.params["sample_sheet"])
                if "sample_sheet" in assignment.params
                else ""
            ),
            "job_id": assignment.job_id,
            "engine_id": self.config.engine_id,
            "batch_size": str(len(assignment.batch)),
            "python": sys.executable,
        }

    async def _folders_exist(self, *folders: Path) -> bool:
        """Wait (up to `grace`) for the job's folders: a network filesystem may show
        the manager's new folders here a little later."""
        deadline = self.clock() + self.config.grace
        while True:
            if await asyncio.to_thread(_all_folders, folders):
                return True
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(FOLDER_POLL_S)

    async def _race(
        self, work: Coroutine[Any, Any, T], keeper: asyncio.Task[None]
    ) -> asyncio.Task[T] | None:
        """Run `work` until it ends (its task is returned) or the lease is lost or the
        batch must be handed back (None; `work` is cancelled)."""
        task = asyncio.create_task(work)
        abort = asyncio.create_task(self.handing_back.wait())
        try:
            await asyncio.wait({task, keeper, abort}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            abort.cancel()
        if task.done():
            return task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _interrupted(
        self, assignment: Assignment, keeper: asyncio.Task[None]
    ) -> BatchOutcome:
        """The lease was lost, or the batch must be handed back: say which, report if we
        must."""
        if not keeper.done():  # a second signal, or release_after
            return await self._report(assignment, keeper, "RELEASED", BatchOutcome.RELEASED)
        error = keeper.exception()
        if error is None:
            log.warning("job_late", reason="the manager expired the job; not reporting DONE")
            return BatchOutcome.LATE
        if not isinstance(error, ManagerError):
            raise error  # a bug, not the manager's doing
        if isinstance(error, ManagerRefused):
            log.warning("job_forgotten", status=error.status, detail=error.detail)
            return BatchOutcome.FORGOTTEN
        reason = "manager_unavailable" if isinstance(error, ManagerUnavailable) else "bad_answer"
        log.error("job_abandoned", reason=reason, detail=str(error))
        return BatchOutcome.ABANDONED

    async def _report(
        self, assignment: Assignment, keeper: asyncio.Task[None], state: str, outcome: BatchOutcome
    ) -> BatchOutcome:
        """/completed with `state` (keepalives stop first). A 409 is final; so is giving up."""
        keeper.cancel()
        try:
            not_merged = await self.client.completed(assignment.job_id, state)
        except ManagerRefused as exc:
            event = "completion_rejected" if exc.status == 409 else "completion_refused"
            log.warning(event, state=state, status=exc.status, detail=exc.detail)
        except (ManagerUnavailable, BadAnswer) as exc:
            log.error("report_abandoned", state=state, detail=str(exc))
        else:
            if not_merged is None:
                log.info("job_reported", state=state, files=len(assignment.batch))
            else:
                log.warning("job_not_merged", state=state, detail=not_merged)
        return outcome

    def _since(self, began: float) -> float:
        return round(self.clock() - began, 3)


def _all_folders(folders: tuple[Path, ...]) -> bool:
    try:
        return all(folder.is_dir() for folder in folders)
    except OSError:  # no permission to look: as good as missing, and said so in the log
        return False
