"""Socket activation with real processes: `reactor serve` on a listening socket it
inherits, as systemd passes reactor.socket's, and what that buys at a restart.

The test holds the listening socket, as systemd does, and starts serve on it
(`tests/support/activation.py`). The restart test stops serve (SIGTERM, and separately
SIGKILL), connects and sends an engine's `GET /assignwork` while no serve runs, then
starts the next serve on the same socket: the connect succeeds (it waits in the
backlog) and the request is answered by the next process. Its twin with a plain
`--listen` serve shows the difference: there the connect in the gap is refused, which a
seed-protocol engine takes as fatal. One more test starts serve through systemd's own
launcher, `systemd-socket-activate` (skipped without it, failed under CI=true).
"""

from __future__ import annotations

import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.serve.socket_activation import listen_backlog
from tests.support.activation import (
    child_env,
    listening_socket,
    log_events,
    queued,
    read_answer,
    send_get,
    start_activated,
)
from tests.support.launch import free_port, serve_args
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import ServedRun, wait_for
from tests.support.tools import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
START_S = 30.0  # bound on each start of serve (recovery, scan, listening)
STOP_S = 30.0  # bound on each stop
ANSWER_S = 30.0  # bound on the answer to the request made in the gap
BACKLOG = 1024
FILES = 3
ASSIGN = f"/assignwork?engineid=gpu-node00&batchsize={FILES + 7}"


class ActivatedRun:
    """A run folder, the listening socket the test holds for it, and serve processes
    started on that socket one after another (logs in logs/server-N.jsonl)."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.input_dir, self.output_dir, self.logs = root / "input", root / "output", root / "logs"
        for folder in (self.input_dir, self.output_dir, self.logs):
            folder.mkdir(parents=True)
        self.sock = listening_socket(host, BACKLOG)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def args(self, **settings: object) -> list[str]:
        settings = {"sweep_interval": 0.5, "log_format": "json", **settings}
        return serve_args(self.input_dir, self.output_dir, self.port, **settings)

    def start(
        self, *, wait: bool = True, env: dict[str, str] | None = None, **settings: object
    ) -> subprocess.Popen[bytes]:
        self.starts += 1
        with self.log(self.starts).open("wb") as log:
            self.server = start_activated(self.sock, self.args(**settings), log, env=env)
        if wait:
            wait_for(self.is_ready, START_S, "serve to be ready on the passed socket")
        return self.server

    def log(self, start: int) -> Path:
        return self.logs / f"server-{start}.jsonl"

    def is_ready(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            pytest.fail(f"serve exited with {self.server.returncode}: {self.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        return self.log(self.starts).read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.server is not None
        self.server.send_signal(signum)
        return self.server.wait(timeout=STOP_S)

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(timeout=STOP_S)
        self.sock.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[ActivatedRun]:
    activated = ActivatedRun(tmp_path / "run")
    for i in range(FILES):
        write_pod5(activated.input_dir / f"PAK00000_pass_abc_def_{i}.pod5", n_reads=1, seed=i)
    yield activated
    activated.close()


def assigned_the_files(status: int, answer: dict[str, object]) -> None:
    assert status == 200, answer
    assert answer["jobid"] != "-1", answer
    assert answer["batch_size"] == FILES, answer


# ----------------------------------------------------------------- serving on it


def test_serve_answers_over_the_socket_it_inherits(run: ActivatedRun, tmp_path: Path) -> None:
    """/healthz and an engine's /assignwork over the passed socket; READY=1 once its site
    accepts; the `serving` log says the socket came from systemd; SIGTERM ends it with
    exit 0 and leaves the socket listening, with the backlog it had."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        run.start(wait=False, env=child_env(NOTIFY_SOCKET=str(tmp_path / "notify")))
        readable, _, _ = select.select([notify], [], [], START_S)
        assert readable, f"no READY=1 within {START_S} s: {run.output()}"
        assert notify.recv(4096).decode().split("\n")[0] == "READY=1"
    # READY=1 came once serve accepts: a request made now is answered at once.
    with socket.create_connection(("127.0.0.1", run.port), timeout=5) as client:
        send_get(client, "/healthz")
        assert read_answer(client, 5)[0] == 200
    with socket.create_connection(("127.0.0.1", run.port), timeout=5) as client:
        send_get(client, ASSIGN)
        assigned_the_files(*read_answer(client, 5))
    assert run.stop() == 0, run.output()
    serving = [event for event in log_events(run.log(1)) if event["event"] == "serving"]
    assert serving == [
        serving[0]
        | {
            "listen": f"127.0.0.1:{run.port}",
            "socket": "systemd",
            "sockets": [f"127.0.0.1:{run.port}"],
            "fd_names": ["reactor.socket"],
            "backlog": BACKLOG,
        }
    ]
    assert not any(event["event"] == "listen_differs" for event in log_events(run.log(1)))
    # Still listening after serve is gone, with systemd's backlog, not aiohttp's 128.
    assert run.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert listen_backlog(run.sock) == BACKLOG


# ------------------------------------------------------------------- the restart


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_a_connection_made_while_no_serve_runs_is_answered_by_the_next(
    run: ActivatedRun, signum: int
) -> None:
    """The restart, socket-activated: serve #1 stops (SIGTERM: exit 0; SIGKILL), an
    engine connects while no serve runs (the connect succeeds: the connection waits in
    the socket's backlog) and asks for work; serve #2, started on the same socket,
    answers it with the run's files."""
    first = run.start()
    code = run.stop(signum)
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), run.output()
    assert first.poll() is not None  # no serve runs from here

    with socket.create_connection(("127.0.0.1", run.port), timeout=5) as client:
        sent = time.monotonic()
        send_get(client, ASSIGN)
        assert queued(run.sock) == 1  # waiting in the backlog, for whoever accepts next
        second = run.start(wait=False)
        started = time.monotonic()
        status, answer = read_answer(client, ANSWER_S)
        answered = time.monotonic()
    assigned_the_files(status, answer)
    assert second.poll() is None, run.output()
    print(  # shown with -s: how long the engine's request waited, and for what
        f"gap request answered {answered - sent:.3f} s after it was sent, "
        f"{answered - started:.3f} s after serve #2 was started"
    )
    assert run.stop() == 0, run.output()
    assert listen_backlog(run.sock) == BACKLOG


def test_without_socket_activation_a_restart_refuses_connections(tmp_path: Path) -> None:
    """The twin of the test above, with serve binding `--listen` itself: once it has
    stopped, an engine's connect is refused, until the next serve listens."""
    (tmp_path / "run").mkdir()
    plain = ServedRun(tmp_path / "run")
    plain.start_server()
    assert plain.stop_server() == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", plain.port), timeout=5)


# ---------------------------------------------------------------------- mistakes


def test_a_socket_beyond_loopback_without_a_token_or_allow_is_refused(tmp_path: Path) -> None:
    """The access rule of `listen` holds for the passed socket's real address."""
    wide = ActivatedRun(tmp_path / "run", host="0.0.0.0")  # noqa: S104 - the point of the test
    try:
        server = wide.start(wait=False)
        assert server.wait(timeout=STOP_S) == 2
        lines = wide.output().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(
            f"reactor serve: the socket systemd passed listens on 0.0.0.0:{wide.port}, "
            "reachable from other hosts, but neither token nor allow is set"
        )
        wide.start(allow="10.0.0.0/8")  # with a rule, it serves
        assert wide.stop() == 0
    finally:
        wide.close()


def test_a_socket_that_cannot_be_served_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A datagram socket (ListenDatagram=) is not served: say what to fix, exit 2."""
    args = serve_args(tmp_path, tmp_path / "out", free_port())
    with (
        socket.socket(type=socket.SOCK_DGRAM) as datagram,
        (tmp_path / "serve.log").open("wb") as log,
    ):
        datagram.bind(("127.0.0.1", 0))
        server = start_activated(datagram, args, log)
        assert server.wait(timeout=STOP_S) == 2
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert lines == [
        "reactor serve: socket 'reactor.socket' (fd 3) passed by systemd is not a stream "
        "socket (ListenDatagram=?): in the .socket unit, use ListenStream=HOST:PORT with "
        "Accept=no (the default)"
    ]


# ------------------------------------------------------- systemd's own launcher


def test_systemd_socket_activate_starts_serve_on_the_first_connection(tmp_path: Path) -> None:
    """`systemd-socket-activate` listens, waits for a connection, then execs serve with
    LISTEN_FDS: serve answers the connection that started it, and the next ones."""
    require_tool(
        shutil.which("systemd-socket-activate") is not None,
        "systemd-socket-activate is not installed (Debian: package systemd)",
    )
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    port = free_port()
    args = serve_args(input_dir, output_dir, port, log_format="json")
    with (tmp_path / "serve.log").open("wb") as log:
        launcher = subprocess.Popen(
            ["systemd-socket-activate", "--listen", f"127.0.0.1:{port}",
             "--fdname", "reactor.socket", sys.executable, "-m", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )  # fmt: skip
    try:
        client: socket.socket | None = None

        def connected() -> bool:
            nonlocal client
            assert launcher.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
            except ConnectionRefusedError:
                return False  # the launcher does not listen yet
            return True

        wait_for(connected, START_S, "systemd-socket-activate to listen")
        assert client is not None
        with client:
            send_get(client, "/healthz")
            assert read_answer(client, START_S)[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=5) as again:
            send_get(again, "/assignwork?engineid=gpu-node00")
            status, answer = read_answer(again, 5)
        assert (status, answer["jobid"]) == (200, "-1")  # served; nothing to do yet
        launcher.send_signal(signal.SIGTERM)  # serve is the launcher's process now
        assert launcher.wait(timeout=STOP_S) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=STOP_S)
    output = tmp_path / "serve.log"
    serving = [event for event in log_events(output) if event["event"] == "serving"]
    assert len(serving) == 1, output.read_text()
    assert serving[0]["socket"] == "systemd"
    assert serving[0]["fd_names"] == ["reactor.socket"]
