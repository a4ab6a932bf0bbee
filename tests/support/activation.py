"""Socket activation without systemd: the test holds the listening socket, as systemd
holds reactor.socket's, and starts `reactor serve` processes on it.

sd_listen_fds(3) wants the socket at descriptor 3 and LISTEN_PID set to the pid of the
process that reads it, which Popen cannot do for its child before exec: the child runs
`ACTIVATE`, a few lines of Python that put the socket at 3, set the variables with its
own pid and exec the real command (so the pid stays the same).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tests.support.paths import REPO

ACTIVATE = """
import os, sys
fd, name, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=name)
os.execv(command[0], command)
"""


def listening_socket(host: str = "127.0.0.1", backlog: int = 1024) -> socket.socket:
    """A TCP socket listening on a free port of `host`, as a .socket unit opens it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as systemd does
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock


def start_activated(
    sock: socket.socket,
    module_args: Sequence[str],
    log: IO[bytes],
    *,
    name: str = "reactor.socket",
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m <module_args>` with `sock` passed to it as systemd passes a socket."""
    fd = sock.fileno()
    return subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(fd), name, sys.executable, "-m", *module_args],
        pass_fds=(fd,),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=None if env is None else dict(env),
    )


def queued(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (Linux's TCP_INFO:
    tcpi_unacked of a listening socket, Recv-Q in `ss -ltn`)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    waiting: int = struct.unpack_from("=I", info, 24)[0]
    return waiting


def send_get(client: socket.socket, path: str) -> None:
    """One HTTP/1.1 GET on a connected socket, asking the server to close after it."""
    host, port = client.getpeername()[:2]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    client.sendall(request.encode())


def read_answer(client: socket.socket, timeout_s: float) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of the answer to `send_get`, read until the server closes;
    fails with TimeoutError if it takes longer than `timeout_s` in all."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            msg = f"no whole answer within {timeout_s} s: {data!r}"
            raise TimeoutError(msg)
        client.settimeout(left)
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a server's output (other lines skipped)."""
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (what Popen gives by default) with `extra`."""
    return {**os.environ, **extra}
