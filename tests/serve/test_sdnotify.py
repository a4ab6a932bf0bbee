"""sd_notify: a real AF_UNIX datagram socket stands in for systemd.

The Notifier on its own (paths, abstract names, the watchdog environment, failures),
the app through `aiohttp_client` (READY=1 after start-up, pings, STOPPING=1 first thing
at shutdown), and one real `reactor serve` process told to stop with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from reactor.serve import sdnotify
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR
from reactor.serve.sdnotify import Notifier, SystemdLifecycle
from tests.support.pod5files import write_pod5
from tests.support.runs import RunDirs
from tests.support.served import ServedRun

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
WAIT_S = 10.0  # bound on every wait for a message
WATCHDOG_USEC = 100_000  # pings every 50 ms


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: one message is a list of assignments."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # what goes into NOTIFY_SOCKET

    def receive(self, timeout_s: float = WAIT_S) -> list[str]:
        """The next message, waiting at most `timeout_s` (for blocking callers)."""
        readable, _, _ = select.select([self.sock], [], [], timeout_s)
        if not readable:
            pytest.fail(f"no sd_notify message within {timeout_s} s")
        return self.sock.recv(4096).decode().split("\n")

    async def next(self, timeout_s: float = WAIT_S) -> list[str]:
        """The next message, waiting at most `timeout_s` on the event loop."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout_s)
        return data.decode().split("\n")

    async def until(self, key: str, timeout_s: float = WAIT_S) -> list[list[str]]:
        """Every message up to and including the first with `key` (such as STOPPING=1)."""
        seen: list[list[str]] = []
        async with asyncio.timeout(timeout_s):
            while not seen or key not in seen[-1]:
                seen.append(await self.next())
        return seen

    def pending(self) -> list[list[str]]:
        """Messages already queued, without waiting."""
        found: list[list[str]] = []
        while select.select([self.sock], [], [], 0)[0]:
            found.append(self.sock.recv(4096).decode().split("\n"))
        return found


def _bound(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    """A datagram socket at a path in tmp_path, as systemd makes for a unit."""
    path = tmp_path / "notify"
    with _bound(str(path)) as sock:
        yield FakeSystemd(sock, str(path))


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    """A datagram socket with an abstract name (NOTIFY_SOCKET=@name), as systemd's own."""
    name = f"reactor-test-{uuid.uuid4().hex}"
    with _bound(b"\0" + name.encode()) as sock:
        yield FakeSystemd(sock, f"@{name}")


def watchdog_env(systemd: FakeSystemd, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": str(WATCHDOG_USEC), **extra}


# ------------------------------------------------------------------ Notifier


async def test_without_notify_socket_every_call_is_a_no_op() -> None:
    """Not started by systemd: nothing is sent, nothing fails, no task is started."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready("x") is False
    assert notifier.watchdog("x") is False
    lifecycle = SystemdLifecycle(notifier, lambda: "x")
    lifecycle.start()
    assert lifecycle._task is None
    await lifecycle.stop()
    assert notifier.failures == 0


def test_messages_reach_a_socket_at_a_path(systemd: FakeSystemd) -> None:
    """One datagram per message, assignments separated by newlines."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": systemd.name})
    assert notifier.ready("ready 3") is True
    assert systemd.receive() == ["READY=1", "STATUS=ready 3"]


def test_messages_reach_an_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    """NOTIFY_SOCKET=@name is the abstract namespace, where systemd's own socket lives."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": abstract_systemd.name})
    assert notifier.stopping("bye") is True
    assert abstract_systemd.receive() == ["STOPPING=1", "STATUS=bye"]


def test_status_stays_on_one_line(systemd: FakeSystemd) -> None:
    """A newline in the status would start a new assignment: it becomes a space."""
    Notifier(systemd.name).status("ready 1\nREADY=1")
    assert systemd.receive() == ["STATUS=ready 1 READY=1"]


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_this_process(
    environ: dict[str, str], interval_s: float | None
) -> None:
    """Ping every WATCHDOG_USEC/2, and only when WATCHDOG_PID is unset or ours."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", **environ}, pid=4242)
    assert notifier.watchdog_interval_s == interval_s


def test_a_bad_watchdog_usec_is_logged() -> None:
    """A WATCHDOG_USEC that is not a positive number says so, then runs without pings."""
    with capture_logs() as logs:
        Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "-5"})
    assert [(e["event"], e["reason"]) for e in logs] == [("sd_notify_ignored", "bad_watchdog_usec")]


def test_watchdog_pid_default_is_this_process(systemd: FakeSystemd) -> None:
    """Without an explicit pid, WATCHDOG_PID is compared with os.getpid()."""
    mine = Notifier.from_environ(watchdog_env(systemd, WATCHDOG_PID=str(os.getpid())))
    other = Notifier.from_environ(watchdog_env(systemd, WATCHDOG_PID=str(os.getpid() + 1)))
    assert mine.watchdog_interval_s == WATCHDOG_USEC / 2 / 1e6
    assert other.watchdog_interval_s is None


def test_a_socket_nobody_listens_on_is_logged_once(tmp_path: Path) -> None:
    """Send errors never raise; the first is logged with what to check, the rest counted."""
    notifier = Notifier(str(tmp_path / "gone"))
    with capture_logs() as logs:
        assert notifier.ready("x") is False
        assert notifier.watchdog("x") is False
    assert [e["event"] for e in logs] == ["sd_notify_failed"]
    assert logs[0]["message"] == "READY=1"
    assert "NOTIFY_SOCKET" in logs[0]["hint"]
    assert notifier.failures == 2


def test_an_unsupported_socket_name_turns_notifications_off() -> None:
    """A relative or vsock: address is refused at start, once, instead of at each send."""
    with capture_logs() as logs:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "9"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready("x") is False
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("sd_notify_ignored", "unsupported_socket")
    ]


# ------------------------------------------------------------------ SystemdLifecycle


async def test_lifecycle_pings_with_the_status_until_stopped(systemd: FakeSystemd) -> None:
    """READY=1 with the status, then WATCHDOG=1 with a fresh status, then STOPPING=1."""
    counter = iter(range(100))
    lifecycle = SystemdLifecycle(
        Notifier.from_environ(watchdog_env(systemd)), lambda: f"tick {next(counter)}"
    )
    lifecycle.start()
    assert await systemd.next() == ["READY=1", "STATUS=tick 0"]
    assert await systemd.next() == ["WATCHDOG=1", "STATUS=tick 1"]
    await lifecycle.stop("bye")
    assert systemd.pending()[-1] == ["STOPPING=1", "STATUS=bye"]
    await lifecycle.stop("again")  # a second stop sends nothing
    assert systemd.pending() == []


async def test_ready_can_wait_for_the_caller_and_is_said_once(systemd: FakeSystemd) -> None:
    """start(announce_ready=False) pings at once; READY=1 comes with announce_ready(),
    only the first time, and never after STOPPING=1."""
    lifecycle = SystemdLifecycle(Notifier.from_environ(watchdog_env(systemd)), lambda: "up")
    lifecycle.start(announce_ready=False)
    assert await systemd.next() == ["WATCHDOG=1", "STATUS=up"]
    lifecycle.announce_ready()
    lifecycle.announce_ready()
    await lifecycle.stop("bye")
    messages = systemd.pending()  # sent synchronously: all queued by now
    assert [m for m in messages if m[0] == "READY=1"] == [["READY=1", "STATUS=up"]]
    assert messages[-1] == ["STOPPING=1", "STATUS=bye"]
    lifecycle.announce_ready()
    assert systemd.pending() == []


async def test_without_a_watchdog_for_us_only_the_status_is_refreshed(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCHDOG_PID of another process: no pings, but STATUS= still refreshed."""
    monkeypatch.setattr(sdnotify, "STATUS_REFRESH_S", 0.05)
    notifier = Notifier.from_environ(watchdog_env(systemd, WATCHDOG_PID=str(os.getpid() + 1)))
    lifecycle = SystemdLifecycle(notifier, lambda: "idle")
    lifecycle.start()
    try:
        assert await systemd.next() == ["READY=1", "STATUS=idle"]
        assert await systemd.next() == ["STATUS=idle"]
        assert await systemd.next() == ["STATUS=idle"]
    finally:
        await lifecycle.stop()


async def test_a_failing_status_line_does_not_stop_the_pings(systemd: FakeSystemd) -> None:
    """A bug in the status line is logged; the watchdog keeps being fed."""

    def broken() -> str:
        raise ZeroDivisionError

    lifecycle = SystemdLifecycle(Notifier.from_environ(watchdog_env(systemd)), broken)
    with capture_logs() as logs:
        lifecycle.start()
        try:
            assert await systemd.next() == ["READY=1", "STATUS=running"]
            assert await systemd.next() == ["WATCHDOG=1", "STATUS=running"]
        finally:
            await lifecycle.stop()
    assert "sd_notify_status_failed" in [e["event"] for e in logs]


# ------------------------------------------------------------------ the app


class RecordingNotifier(Notifier):
    """The real notifier, also noting whether /readyz would say ready at each send."""

    def __init__(self, environ: dict[str, str]) -> None:
        base = Notifier.from_environ(environ)
        super().__init__(base.socket_name, watchdog_interval_s=base.watchdog_interval_s)
        self.app: web.Application | None = None
        self.ready_at_send: list[tuple[str, bool]] = []

    def send(self, *assignments: str) -> bool:
        assert self.app is not None
        self.ready_at_send.append((assignments[0], self.app[REACTOR].ready))
        return super().send(*assignments)


def add_files(run_dirs: RunDirs, count: int) -> None:
    for i in range(count):
        write_pod5(run_dirs.input_dir / f"PAK00000_pass_abc_def_{i}.pod5", n_reads=1, seed=i)


async def test_app_says_ready_after_start_up_then_pings_with_counts(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, systemd: FakeSystemd
) -> None:
    """READY=1 + STATUS= once recovery and the scan are done and the observer's held
    events delivered (and /readyz is true), then WATCHDOG=1 with the queue counts as
    work moves. The observer started before the scan, so no reconcile is needed; its
    events are delivered while the scan goes on (the service serves meanwhile)."""
    add_files(run_dirs, 3)
    notifier = RecordingNotifier(watchdog_env(systemd))
    app = create_app(run_dirs.config(), sweep=False, notifier=notifier)
    notifier.app = app
    with capture_logs() as logs:
        client = await aiohttp_client(app)
    first = await systemd.next()
    assert first == [
        "READY=1",
        "STATUS=ready 3 · assigned 0 · done 0 · quarantined 0 · engines 0",
    ]
    assert notifier.ready_at_send[0] == ("READY=1", True)
    assert (await client.get("/readyz")).status == 200
    events = [e["event"] for e in logs]
    startup = [
        e
        for e in events
        if e in ("recovered", "held_events_delivered", "reconciled", "sd_notify_ready")
    ]
    assert startup == ["held_events_delivered", "recovered", "sd_notify_ready"]
    assert (await systemd.next())[0] == "WATCHDOG=1"

    reply = await client.get("/assignwork", params={"engineid": "gpu-0", "batchsize": "2"})
    assert reply.status == 200
    wanted = "STATUS=ready 1 · assigned 2 · done 0 · quarantined 0 · engines 1"
    async with asyncio.timeout(WAIT_S):
        while (message := await systemd.next()) != ["WATCHDOG=1", wanted]:
            assert message[0] == "WATCHDOG=1", message


async def test_app_says_stopping_first_thing_at_shutdown(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, systemd: FakeSystemd
) -> None:
    """STOPPING=1 goes out from on_shutdown, before the services unwind; no ping after."""
    notifier = RecordingNotifier(watchdog_env(systemd))
    app = create_app(run_dirs.config(), watch=False, sweep=False, notifier=notifier)
    notifier.app = app
    client = await aiohttp_client(app)
    assert (await systemd.next())[0] == "READY=1"
    await client.close()
    messages = await systemd.until("STOPPING=1")
    assert messages[-1] == ["STOPPING=1", "STATUS=stopping: finishing requests in flight"]
    # the reactor context had not unwound yet (it clears `ready` when it does)
    assert notifier.ready_at_send[-1] == ("STOPPING=1", True)
    assert systemd.pending() == []


async def test_app_without_notify_socket_sends_nothing(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs
) -> None:
    """The default notifier comes from the environment: none here, so no lifecycle."""
    with capture_logs() as logs:
        client = await aiohttp_client(create_app(run_dirs.config(), watch=False, sweep=False))
        assert (await client.get("/readyz")).status == 200
        await client.close()
    assert not [e for e in logs if str(e["event"]).startswith("sd_notify")]


# ------------------------------------------------------------------ real process


@pytest.mark.slow
def test_reactor_serve_notifies_ready_and_stopping(
    tmp_path: Path, systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reactor serve` under NOTIFY_SOCKET: READY=1 once it listens (a connection made
    the moment READY arrives succeeds); SIGTERM gives STOPPING=1 and exit code 0."""
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.name)
    (tmp_path / "run").mkdir()
    run = ServedRun(tmp_path / "run")
    run.start_server(wait=False)
    try:
        ready = systemd.receive()
        assert ready[0] == "READY=1"
        assert ready[1].startswith("STATUS=ready 0 ·")
        socket.create_connection(("127.0.0.1", run.port), timeout=WAIT_S).close()
        assert run.is_ready()
    finally:
        began = time.monotonic()
        code = run.stop_server()
    assert code == 0
    messages: list[list[str]] = []
    while not messages or messages[-1][0] != "STOPPING=1":
        messages.append(systemd.receive(timeout_s=max(0.1, WAIT_S - (time.monotonic() - began))))
    assert all(m[0].startswith("STATUS=") for m in messages[:-1]), messages  # refreshes
