"""The aiohttp application: `create_app(config)` and the lifecycle of its services.

Background services start as `cleanup_ctx` context managers, in this order, and are
cleaned up in reverse (aiohttp's "Background tasks" pattern):

1. observer - the watchdog observer (INPUTDIR, pass/, fail/: three watches, however
               many jobs are live), started first and holding its events (optional
               for tests)
2. reactor  - recovery from disk, then the input scan in the background: files known
               ready are handed out from the end of recovery; ready once the scan is done
3. finisher - end of run: reads the run-complete marker; its check runs after each
              sweep and on stop-file events (`reactor.serve.finisher`)
4. events   - the held events, then every later one, go to the reactor and finisher
5. sweeper  - lease expiry, settle timer, safety-net reconcile, end-of-run check
6. loop lag - a probe task measuring how long the event loop is held
              (`reactor.serve.loop_lag`)
7. systemd  - READY=1 once all of the above ran, then watchdog pings and STATUS= lines
              (`reactor.serve.sdnotify`)

The observer watches before the scan lists INPUTDIR, so a file written during start-up
is in the listing, or in an event, or both (handling is idempotent): no second scan is
needed to close a gap, which at 100,000 files saves ~0.4 s of start-up. (A scan child
`reactor serve` started before the app, `lister`, lists under a watch of its own and
reports what changed until the observer's watch was up: docs/journal.md.)

Shutdown (SIGTERM/SIGINT, handled by `web.run_app`): the server stops accepting (a
socket systemd passed is closed, not shut down: `reactor.serve.socket_activation`),
tells the finisher to claim nothing more and systemd STOPPING=1 (`on_shutdown`, before
anything waits), lets requests in flight finish (bounded by `shutdown_timeout`), then
the contexts unwind: the pings end, the sweeper is cancelled, the observers stopped,
and a running on_complete command is given a bounded time to end before it is stopped.
Every disk change is a completed journal step by then, so the folders are consistent
whenever the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import PurePath

import structlog
from aiohttp import web

from reactor.core.endrun import stop_file_filter
from reactor.core.events import Area, Change, FsEvent, input_filter
from reactor.core.model import Clock
from reactor.core.names import is_pod5_name
from reactor.disk.journal import Journal
from reactor.serve import api
from reactor.serve.app_keys import (
    CONFIG,
    FINISHER,
    FLEET,
    HELD_EVENTS,
    HOST,
    LISTENING,
    REACTOR,
    READY_WHEN_LISTENING,
    SERVED,
    STREAM,
    SWEEPER,
    SYSTEMD,
    WATCH_HEALTH,
)
from reactor.serve.finisher import Finisher, exit_by_sigterm
from reactor.serve.held_events import HeldEvents
from reactor.serve.loop_lag import LoopLagProbe
from reactor.serve.metrics import count_fleet
from reactor.serve.reconciles import DebouncedReconcile
from reactor.serve.sdnotify import Notifier, SystemdLifecycle
from reactor.serve.served import Served
from reactor.serve.service import Reactor, StartupError, new_job_id
from reactor.serve.start_scan import ChildLister
from reactor.serve.sweeper import Sweeper
from reactor.serve.watcher import Watcher
from reactor.settings.serve import ServeConfig

log = structlog.get_logger("reactor.app")


def create_app(
    config: ServeConfig,
    *,
    clock: Clock = time.monotonic,
    journal: Journal | None = None,
    watch: bool = True,
    sweep: bool = True,
    job_id_factory: Callable[[], str] | None = None,
    notifier: Notifier | None = None,
    ready_when_listening: bool = False,
    request_exit: Callable[[], None] = exit_by_sigterm,
    listening: Mapping[str, object] | None = None,
    lister: ChildLister | None = None,
) -> web.Application:
    """Build the application. Tests may inject a clock, a journal with crash points,
    a notifier (systemd's, from the environment, by default), and turn off the watcher
    or the background sweeper (calling `sweep_once` instead).

    aiohttp starts the app before it listens. `ready_when_listening` keeps READY=1 back
    until the caller, once the port is open, calls `app[SYSTEMD].announce_ready()`
    (`reactor serve` does, so engines started after reactor.service find it listening);
    otherwise READY=1 goes out as soon as the start-up work is done.

    `request_exit` is how `exit_on_complete` ends the service (SIGTERM to itself, which
    `web.run_app` turns into a graceful shutdown); tests pass their own. `listening` adds
    to the `serving` log where the socket came from (`reactor serve`: bound to `listen`,
    or passed by systemd). `lister`: the start-up scan's child, started before the app
    (and its watch), which the app then owns."""
    app = web.Application(
        middlewares=[api.error_middleware, api.metrics_middleware, api.access_middleware]
    )
    app[CONFIG] = config
    app[LISTENING] = dict(listening or {})
    reactor = Reactor(
        config,
        clock=clock,
        journal=journal,
        job_id_factory=job_id_factory or new_job_id,
        lister=lister,
    )
    app[REACTOR] = reactor
    app[SERVED] = reactor
    app[SWEEPER] = Sweeper(
        reactor,
        clock=clock,
        interval_s=config.sweep_interval,
        reconcile_interval_s=config.reconcile_interval,
    )
    app[FINISHER] = Finisher(reactor, request_exit=request_exit)
    reactor.on_storage_failed = request_exit  # a failed fsync: stop; `serve` exits 1
    api.add_routes(app)
    _add_stream(app)
    if watch:
        app.cleanup_ctx.append(_observer_ctx)
    app.cleanup_ctx.append(_reactor_ctx)
    app.cleanup_ctx.append(_finisher_ctx)
    if watch:
        app.cleanup_ctx.append(_events_ctx)
    if sweep:
        app.cleanup_ctx.append(_sweeper_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    notifier = Notifier.from_environ() if notifier is None else notifier
    app[SYSTEMD] = SystemdLifecycle(notifier, reactor.status_line)
    app[SYSTEMD].hold()  # READY=1 once the start-up scan is over (`Reactor.on_ready`)
    reactor.on_ready = app[SYSTEMD].release
    app.on_shutdown.append(_tell_finisher_stopping)
    app.on_shutdown.append(_tell_systemd_stopping)
    app.on_shutdown.append(_answer_waiting_engines)
    app[READY_WHEN_LISTENING] = ready_when_listening
    _add_fleet(app, reactor, clock)
    app.cleanup_ctx.append(_systemd_ctx)  # last: READY=1 only once everything runs
    # After every context: the scan's slices would otherwise take turns with the start-up
    # steps that wait for a thread, and hold back the opening of the port.
    app.on_startup.append(_start_scan)
    return app


async def _start_scan(app: web.Application) -> None:
    app[REACTOR].start_scan()


async def _reactor_ctx(app: web.Application) -> AsyncIterator[None]:
    reactor = app[REACTOR]
    # Recovery first, then serve what is known ready while the input scan goes on in
    # slices on the loop (docs/journal.md, "Serving during the start-up scan").
    reactor.begin()  # the scan starts once every context has (`_start_scan`)
    await reactor.check_space()  # before the first answer, not at the first sweep
    config = app[CONFIG]
    listening = app[LISTENING]
    log.info("serving", listen=config.listen, **listening, **reactor.count_fields())
    if "listen_setting" in listening:
        log.warning(
            "listen_differs",
            listen=config.listen,
            listen_setting=listening["listen_setting"],
            hint="reactor status and reactor check read the listen setting: make it the "
            "address of the socket systemd passes (ListenStream= in the .socket unit)",
        )
    if config.insecure and config.token is None and not config.allow:
        log.warning("insecure_listen", listen=config.listen, reason="no token, no allow list")
    yield
    await reactor.stop()
    log.info("stopped", **reactor.count_fields())
    reactor.journal.close()


async def _finisher_ctx(app: web.Application) -> AsyncIterator[None]:
    finisher = app[FINISHER]
    finisher.start()
    app[SWEEPER].end_of_run = finisher.check
    yield
    app[SWEEPER].end_of_run = None
    await finisher.stop()


async def _observer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    reactor = app[REACTOR]
    finisher = app[FINISHER]
    stop_file = stop_file_filter(config.stop_file)

    def accept_input(change: Change, path: PurePath) -> bool:
        return input_filter(change, path) or stop_file(change, path)

    def deliver(event: FsEvent) -> None:
        if event.area is Area.INPUT and not is_pod5_name(event.name):
            finisher.on_input_event(event)  # only stop-file names get this far
        else:
            reactor.on_fs_event(event)

    loop = asyncio.get_running_loop()
    losses = DebouncedReconcile(reactor.reconcile, loop)
    events = app[HELD_EVENTS] = HeldEvents(deliver, losses.report)
    watcher = Watcher(
        config.input_dir,
        config.output_dir,
        on_event=events.on_event,
        input_accept=accept_input,
        on_lost=events.on_lost,
        loop=loop,
        polling=config.observer == "polling",
        poll_interval_s=config.poll_interval,
    )
    # Restarting a dead observer joins watchdog's threads, each of which can take its
    # read timeout (~0.5 s, measured): never on the loop. After start, the watcher is
    # changed only on this one worker, so it has a single owner.
    watch_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reactor-watch")

    def check_health() -> None:
        future = watch_worker.submit(watcher.check_health)

        def report(done: Future[None]) -> None:
            if (error := done.exception()) is not None:
                log.warning("watcher_error", action="check_health", detail=str(error))

        future.add_done_callback(report)

    # The watches exist when start() returns (watchdog adds them before its threads
    # run): from here on, every change in the run folders is seen.
    # A scan child `reactor serve` started before the app watches the run folders until
    # this watch is up: at the per-user inotify limit, it goes, and the watch is tried
    # once more.
    for last in (False, True):
        try:
            watcher.start()
            break
        except OSError as exc:
            why = f"the service's watch could not start: {exc}"
            if last or not reactor.drop_early_lister(why):
                msg = f"cannot watch the run folders: {exc}"
                raise StartupError(msg) from exc
    app[WATCH_HEALTH] = check_health
    yield
    watch_worker.shutdown(wait=True)
    watcher.stop()
    losses.cancel()


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    """Recovery and the scan are done: deliver the held events, then every new one."""
    events = app[HELD_EVENTS]
    held = events.release()
    log.debug("held_events_delivered", events=held)
    app[SWEEPER].health_check = app[WATCH_HEALTH]
    yield
    app[SWEEPER].health_check = None
    events.hold()


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    probe = LoopLagProbe(app[SERVED].metrics.loop_lag_seconds)
    task = asyncio.create_task(probe.run(), name="reactor-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SWEEPER].run(), name="reactor-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _systemd_ctx(app: web.Application) -> AsyncIterator[None]:
    systemd = app[SYSTEMD]
    systemd.start(announce_ready=not app[READY_WHEN_LISTENING])
    yield
    await systemd.stop()  # a no-op when on_shutdown already said STOPPING=1


async def _tell_finisher_stopping(app: web.Application) -> None:
    """From here on the sweeper still runs (until the contexts unwind) but on_complete is
    not claimed, and a command that ends other than with code 0 is recorded as stopped
    (`reactor.serve.finisher`): systemd may signal it before reactor does."""
    app[FINISHER].begin_shutdown()


async def _tell_systemd_stopping(app: web.Application) -> None:
    """on_shutdown runs once the listening sockets are closed and before requests in
    flight are awaited: the earliest point aiohttp offers to say STOPPING=1."""
    await app[SYSTEMD].stop("stopping: finishing requests in flight")


def create_host_app(
    config: ServeConfig,
    *,
    clock: Clock = time.monotonic,
    wall: Callable[[], float] = time.time,
    job_id_factory: Callable[[], str] | None = None,
    notifier: Notifier | None = None,
    ready_when_listening: bool = False,
    listening: Mapping[str, object] | None = None,
    watch: bool = True,
) -> web.Application:
    """Host mode's application (`watch_root`): the same API, serving every run under the
    roots (`reactor.serve.host`). Each run's recovery, scan, watches, sweeper and
    end of run start with it; the host finds runs that appear later on its own."""
    from reactor.serve.host import Host  # host mode only: a single run never imports it

    app = web.Application(
        middlewares=[api.error_middleware, api.metrics_middleware, api.access_middleware]
    )
    app[CONFIG] = config
    app[LISTENING] = dict(listening or {})
    host = Host(
        config, clock=clock, wall=wall, job_id_factory=job_id_factory or new_job_id, watch=watch
    )
    app[HOST] = host
    app[SERVED] = host
    api.add_routes(app)
    _add_stream(app)
    app.cleanup_ctx.append(_host_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    notifier = Notifier.from_environ() if notifier is None else notifier
    app[SYSTEMD] = SystemdLifecycle(notifier, host.status_line)
    app.on_shutdown.append(_tell_systemd_stopping)
    app.on_shutdown.append(_answer_waiting_engines)
    app[READY_WHEN_LISTENING] = ready_when_listening
    _add_fleet(app, host, clock)
    app.cleanup_ctx.append(_systemd_ctx)
    return app


async def _host_ctx(app: web.Application) -> AsyncIterator[None]:
    host = app[HOST]
    await host.start()
    config = app[CONFIG]
    log.info(
        "serving",
        listen=config.listen,
        mode="host",
        runs=len(host.units),
        **app[LISTENING],
    )
    if config.insecure and config.token is None and not config.allow:
        log.warning("insecure_listen", listen=config.listen, reason="no token, no allow list")
    yield
    await host.stop()
    log.info("stopped", mode="host")


def _add_fleet(app: web.Application, served: Served, clock: Clock) -> None:
    """With a [fleet] table: engine jobs on Slurm, told at once when work comes, shown
    in /status and /metrics (`reactor.cluster.fleet`)."""
    fleet_config = app[CONFIG].fleet
    if fleet_config is None:
        return
    from reactor.cluster.fleet import Fleet  # Slurm's client: only with a [fleet] table

    fleet = Fleet(fleet_config, served.engine_work, clock=clock)
    app[FLEET] = fleet
    served.waiters.on_work.append(fleet.wake)
    count_fleet(served.metrics.registry, fleet)
    app.cleanup_ctx.append(_fleet_ctx)


async def _fleet_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the runs are recovered (the work is known), before READY=1. At shutdown
    the jobs are left running: their engines finish their batches and, with the service
    gone, wait for it within their grace; a restarted service adopts them."""
    task = asyncio.create_task(app[FLEET].run(), name="reactor-fleet")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _add_stream(app: web.Application) -> None:
    """The live status of `/status/stream` (`reactor.serve.stream`). Its streams end at
    shutdown's start: they never end on their own, and aiohttp waits for requests in
    flight before the contexts unwind."""
    app[STREAM] = api.new_broadcast(app)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_end_streams)  # an app that never served has no shutdown


async def _end_streams(app: web.Application) -> None:
    await app[STREAM].close()


async def _answer_waiting_engines(app: web.Application) -> None:
    """Shutdown: engines waiting for work (long-poll) are answered now, with no work, so
    the service does not wait out their `wait_s`."""
    app[SERVED].waiters.close()
