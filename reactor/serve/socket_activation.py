"""Listening sockets passed by systemd: socket activation (sd_listen_fds(3)).

With `systemd/reactor.socket` enabled, systemd (PID 1) opens the listening socket and
keeps it open whatever happens to the service. Connections that arrive while no
`reactor serve` runs (a `systemctl restart`, a crash and `Restart=on-failure`) wait in
the socket's backlog and are accepted by the next process, so an engine's connect is
never refused; seed-protocol engines take a refused connection as fatal.

The protocol is small, documented and stable: ``LISTEN_PID`` names the process the
sockets are for, ``LISTEN_FDS`` says how many there are, starting at file descriptor 3
(``SD_LISTEN_FDS_START``), and ``LISTEN_FDNAMES``, when set, names each one, separated by
``:`` (``FileDescriptorName=``, by default the .socket unit's name). Like
`reactor.serve.sdnotify`, it is written here by hand rather than taken from libsystemd's
C binding. As ``sd_listen_fds()`` does, the three variables are removed from the
environment once read, whatever they said, so that a child (``on_complete``) does not
take sockets meant for reactor; the descriptors get close-on-exec.

`parse_listen_fds` is the pure reading of the variables; `take_passed_sockets` adopts
the descriptors (`adopt`) and accepts only what `reactor serve` can serve: a TCP stream
socket that listens. Anything else is a `SocketActivationError`, one line that says what
to fix in the .socket unit.

What becomes of the socket at shutdown, measured rather than assumed: aiohttp's site
closes its asyncio server, which closes the socket object it was given: the descriptor
itself (wrapped here, not duplicated), with close(2), never shutdown(2). The listening
socket lives on in systemd, which holds its own descriptor, and keeps queueing; a
`kill -9` closes the descriptor the same way. Only a connection the process had already
accepted and not yet answered goes with it.

One more thing aiohttp does: asyncio's ``create_server`` calls ``listen(backlog)`` again
on a socket it is given, and on Linux that replaces the socket's backlog (aiohttp's
default, 128) for every holder, systemd included, until something sets it again. So
`listen_backlog` reads the backlog the socket has (``Backlog=``) and serve listens with
the same number.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

SD_LISTEN_FDS_START = 3
ACTIVATION_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
UNNAMED = "unknown"  # sd_listen_fds_with_names(3)'s name for a descriptor without one
MAX_FDS = 1024  # far beyond any .socket unit; a larger count is a broken variable

_SOCKET_FIX = "in the .socket unit, use ListenStream=HOST:PORT with Accept=no (the default)"
_TCP_LISTEN = 10  # tcp_info.tcpi_state of a listening socket (include/net/tcp_states.h)


class SocketActivationError(Exception):
    """The sockets systemd passed cannot be served; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PassedFd:
    """One descriptor named by LISTEN_FDS, with its LISTEN_FDNAMES name."""

    fd: int
    name: str


@dataclass(frozen=True, slots=True)
class PassedSocket:
    """A listening TCP socket systemd passed, adopted: what serve serves on."""

    sock: socket.socket
    fd: int
    name: str
    listen: str  # its bound address as a `listen` value: 0.0.0.0:40765, [::1]:40765
    backlog: int | None  # its listen(2) backlog, None where it cannot be read


def _number(environ: Mapping[str, str], key: str) -> int:
    text = environ[key].strip()
    if not text.isascii() or not text.isdecimal():
        msg = f"{key}={environ[key]!r} is not a number (not started by systemd as it says?)"
        raise SocketActivationError(msg)
    return int(text)


def parse_listen_fds(environ: Mapping[str, str], pid: int) -> tuple[PassedFd, ...]:
    """The descriptors `environ` passes to process `pid`, as sd_listen_fds(3) reads them.

    None when ``LISTEN_PID`` or ``LISTEN_FDS`` is unset, or when ``LISTEN_PID`` names
    another process (the variables were inherited from a parent). A value that is not a
    number, a count beyond reason, or a ``LISTEN_FDNAMES`` that does not name every
    descriptor once is a `SocketActivationError`."""
    if "LISTEN_PID" not in environ or "LISTEN_FDS" not in environ:
        return ()
    if _number(environ, "LISTEN_PID") != pid:
        return ()  # meant for another process
    count = _number(environ, "LISTEN_FDS")
    if count > MAX_FDS:
        msg = f"LISTEN_FDS={count} is more sockets than any .socket unit passes"
        raise SocketActivationError(msg)
    names_text = environ.get("LISTEN_FDNAMES")
    if names_text is None:
        names = [UNNAMED] * count
    else:
        names = names_text.split(":") if names_text else []
        if len(names) != count:
            msg = f"LISTEN_FDNAMES={names_text!r} names {len(names)} sockets but LISTEN_FDS={count}"
            raise SocketActivationError(msg)
    return tuple(PassedFd(SD_LISTEN_FDS_START + i, name) for i, name in enumerate(names))


def socket_problem(family: int, kind: int, accepting: bool) -> str | None:
    """Why a passed socket cannot be served, or None: reactor serves HTTP, on TCP, from
    a socket that listens (``Accept=yes`` would pass one connection instead)."""
    if kind != socket.SOCK_STREAM:
        return f"is not a stream socket (ListenDatagram=?): {_SOCKET_FIX}"
    if family not in (socket.AF_INET, socket.AF_INET6):
        return f"is not a TCP socket (a path or another family): {_SOCKET_FIX}"
    if not accepting:
        return f"is a connection, not a listening socket (Accept=yes?): {_SOCKET_FIX}"
    return None


def listen_text(address: Sequence[object]) -> str:
    """A TCP socket's address (`getsockname()`) as a `listen` value."""
    host, port = str(address[0]), int(str(address[1]))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_backlog(sock: socket.socket) -> int | None:
    """The backlog a listening TCP socket was given, or None where it cannot be read.

    Linux's TCP_INFO of a listening socket holds it in ``tcpi_sacked`` (and the queue's
    length in ``tcpi_unacked``), as `ss -ltn` shows them in Send-Q and Recv-Q."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return None
    if len(info) < 32 or info[0] != _TCP_LISTEN:
        return None
    backlog: int = struct.unpack_from("=I", info, 28)[0]
    return backlog or None


def adopt(passed: PassedFd) -> PassedSocket:
    """The passed descriptor as a `PassedSocket`, if it is a listening TCP socket; its
    descriptor is left as it came (neither closed nor adopted) otherwise."""
    where = f"socket {passed.name!r} (fd {passed.fd}) passed by systemd"
    try:
        sock = socket.socket(fileno=passed.fd)  # this very descriptor, not a copy
    except OSError as exc:
        msg = f"{where} is not an open socket ({exc.strerror}): {_SOCKET_FIX}"
        raise SocketActivationError(msg) from None
    try:
        problem = socket_problem(
            sock.family,
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
            bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)),
        )
        address = sock.getsockname()
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror}): {_SOCKET_FIX}"
    if problem is not None:
        sock.detach()  # not ours to close
        msg = f"{where} {problem}"
        raise SocketActivationError(msg)
    sock.set_inheritable(False)  # sd_listen_fds(3) sets FD_CLOEXEC too
    return PassedSocket(sock, passed.fd, passed.name, listen_text(address), listen_backlog(sock))


def take_passed_sockets(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
) -> list[PassedSocket]:
    """The listening sockets systemd passed to this process (none outside socket
    activation), with the activation variables removed from `environ` (os.environ by
    default) in every case. Raises `SocketActivationError` for anything else."""
    env = os.environ if environ is None else environ
    try:
        passed = parse_listen_fds(env, os.getpid() if pid is None else pid)
    finally:
        for key in ACTIVATION_ENV:
            env.pop(key, None)
    adopted: list[PassedSocket] = []
    try:
        for fd in passed:
            adopted.append(adopt(fd))
    except SocketActivationError:
        for done in adopted:
            done.sock.detach()  # serve exits: leave every descriptor as it came
        raise
    return adopted
