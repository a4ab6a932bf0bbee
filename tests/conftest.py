"""Shared fixtures: run folders on tmp_path, configs pointing at them, and the app behind
a test client. The helpers they are built from live in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import pytest

# Helpers in tests/support assert too: pytest rewrites their asserts as it does those of
# test modules, so a failed check there shows its values. This must precede their import.
pytest.register_assert_rewrite("tests.support")

from reactor.serve.app import create_app  # noqa: E402
from reactor.serve.socket_activation import ACTIVATION_ENV  # noqa: E402
from reactor.settings.serve import ServeConfig  # noqa: E402
from tests.support.api import LEASE_S, AiohttpClient, Client, MakeClient  # noqa: E402
from tests.support.blocking import end_started  # noqa: E402
from tests.support.endrun import Run, StartRun, no_exit  # noqa: E402
from tests.support.fleet_run import FleetRun  # noqa: E402
from tests.support.runs import ManualClock, RunDirs  # noqa: E402
from tests.support.slurm import SlurmCluster, start_cluster  # noqa: E402
from tests.support.started import stop_all  # noqa: E402
from tests.support.tools import CI_HINT, in_ci, says_missing  # noqa: E402


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_a_skip_for_a_missing_tool(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Safety net of tests/support/tools.py: under CI=true, a skip whose reason says that
    a tool is missing is a failure, however it was made (skipif, pytest.skip, importorskip)."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if says_missing(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing tool: {reason}\n{CI_HINT}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_a_skip_for_a_missing_tool(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_a_skip_for_a_missing_tool(report)
    return report


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to a real systemd, even when pytest runs under one: apps built
    without a notifier read NOTIFY_SOCKET from the environment, and `reactor serve` takes
    the sockets LISTEN_* name."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", *ACTIVATION_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _blocking_reactors_end() -> Generator[None, None, None]:
    """Reactors a test drove without a loop (tests/support/blocking.py) have their
    writer's thread ended after it."""
    yield
    end_started()


@pytest.fixture
def run_dirs(tmp_path: Path) -> RunDirs:
    """An empty run: INPUTDIR and OUTPUTDIR (pass/ and fail/ are made by `config()`)."""
    input_dir = tmp_path / "input"
    output_dir = tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    return RunDirs(input_dir, output_dir)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock) -> MakeClient:
    """Builds the app on `run_dirs` with the manual clock, no watcher and no sweeper;
    keywords are settings (the lease is `LEASE_S` unless given)."""

    async def make(**overrides: Any) -> Client:
        overrides.setdefault("report_back_interval", LEASE_S)
        config: ServeConfig = run_dirs.config(**overrides)
        return await aiohttp_client(create_app(config, clock=clock, watch=False, sweep=False))

    return make


@pytest.fixture
def start_run(aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock) -> StartRun:
    """Builds the app on `run_dirs` with the manual clock, no watcher and no sweeper thread
    (`Run.sweep` sweeps); keywords are settings. The app may not ask to exit unless the
    test passes `request_exit`."""

    async def start(*, request_exit: Callable[[], None] | None = None, **overrides: Any) -> Run:
        config = run_dirs.config(**overrides)
        app = create_app(
            config,
            clock=clock,
            watch=False,
            sweep=False,
            request_exit=request_exit or no_exit,
        )
        return Run(await aiohttp_client(app), run_dirs, clock)

    return start


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Generator[SlurmCluster, None, None]:
    """A real single-node Slurm cluster, started once for the tests that ask for it
    (tests/support/slurm.py); each test cancels its own jobs."""
    cluster = start_cluster(Path(tmp_path_factory.mktemp("slurm")))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fleet_run(
    tmp_path: Path, slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> Generator[FleetRun, None, None]:
    """A served run whose engines a fleet starts on the session's Slurm; stopped and its
    jobs cancelled at the end (tests/support/fleet_run.py)."""
    the_run = FleetRun(tmp_path, slurm, monkeypatch)
    yield the_run
    the_run.stop()


@pytest.fixture
async def stop_started_reactors() -> AsyncIterator[None]:
    """Every reactor a test started by hand (tests/support/started.py) has its writer's
    thread ended after the test."""
    yield
    await stop_all()
