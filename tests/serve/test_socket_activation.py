"""Socket activation, read by hand: the LISTEN_* variables (sd_listen_fds(3)) and the
sockets they name. Real processes started on a passed socket, and restarts, are in
tests/system/test_socket_activation.py."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from reactor.serve.socket_activation import (
    ACTIVATION_ENV,
    SD_LISTEN_FDS_START,
    UNNAMED,
    PassedFd,
    SocketActivationError,
    adopt,
    listen_backlog,
    listen_text,
    parse_listen_fds,
    socket_problem,
    take_passed_sockets,
)

PID = 4242


def env(**values: str) -> dict[str, str]:
    return {"PATH": "/bin", **values}


# ------------------------------------------------------------------ the variables


@pytest.mark.parametrize(
    "environ",
    [
        env(),
        env(LISTEN_FDS="1"),  # no LISTEN_PID: not for anyone
        env(LISTEN_PID=str(PID)),  # no LISTEN_FDS
        env(LISTEN_PID=str(PID + 1), LISTEN_FDS="1"),  # for another process
        env(LISTEN_PID=str(PID + 1), LISTEN_FDS="x", LISTEN_FDNAMES="a:b"),  # not ours to judge
        env(LISTEN_PID=str(PID), LISTEN_FDS="0"),
        env(LISTEN_PID=str(PID), LISTEN_FDS="0", LISTEN_FDNAMES=""),
    ],
    ids=["unset", "no-pid", "no-count", "other-pid", "other-pid-garbage", "zero", "zero-named"],
)
def test_nothing_is_passed_unless_the_variables_are_for_this_process(
    environ: dict[str, str],
) -> None:
    assert parse_listen_fds(environ, PID) == ()


def test_descriptors_start_at_3_with_their_names() -> None:
    environ = env(LISTEN_PID=str(PID), LISTEN_FDS="2", LISTEN_FDNAMES="reactor.socket:v6")
    assert SD_LISTEN_FDS_START == 3
    assert parse_listen_fds(environ, PID) == (PassedFd(3, "reactor.socket"), PassedFd(4, "v6"))


def test_without_names_every_descriptor_is_unknown() -> None:
    """As sd_listen_fds_with_names(3) names them when LISTEN_FDNAMES is unset."""
    environ = env(LISTEN_PID=f" {PID}\n", LISTEN_FDS="2")
    assert parse_listen_fds(environ, PID) == (PassedFd(3, UNNAMED), PassedFd(4, UNNAMED))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (env(LISTEN_PID="systemd", LISTEN_FDS="1"), "LISTEN_PID='systemd' is not a number"),
        (env(LISTEN_PID="-1", LISTEN_FDS="1"), "LISTEN_PID='-1' is not a number"),
        (env(LISTEN_PID="", LISTEN_FDS="1"), "LISTEN_PID='' is not a number"),
        (env(LISTEN_PID=str(PID), LISTEN_FDS="one"), "LISTEN_FDS='one' is not a number"),
        (env(LISTEN_PID=str(PID), LISTEN_FDS="-1"), "LISTEN_FDS='-1' is not a number"),
        (env(LISTEN_PID=str(PID), LISTEN_FDS="1.0"), "LISTEN_FDS='1.0' is not a number"),
        (env(LISTEN_PID=str(PID), LISTEN_FDS="\u0661"), "is not a number"),  # Arabic-Indic 1
        (env(LISTEN_PID=str(PID), LISTEN_FDS="99999999999"), "more sockets than any .socket"),
        (
            env(LISTEN_PID=str(PID), LISTEN_FDS="1", LISTEN_FDNAMES="a:b"),
            "LISTEN_FDNAMES='a:b' names 2 sockets but LISTEN_FDS=1",
        ),
        (
            env(LISTEN_PID=str(PID), LISTEN_FDS="2", LISTEN_FDNAMES="a"),
            "LISTEN_FDNAMES='a' names 1 sockets but LISTEN_FDS=2",
        ),
        (
            env(LISTEN_PID=str(PID), LISTEN_FDS="1", LISTEN_FDNAMES=""),
            "LISTEN_FDNAMES='' names 0 sockets but LISTEN_FDS=1",
        ),
    ],
    ids=[
        "pid-word", "pid-negative", "pid-empty", "count-word", "count-negative",
        "count-float", "count-not-ascii", "count-huge", "names-too-many", "names-too-few",
        "names-empty",
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SocketActivationError) as caught:
        parse_listen_fds(environ, PID)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        (env(LISTEN_PID=str(PID + 1), LISTEN_FDS="1", LISTEN_FDNAMES="x"), nullcontext()),
        (env(LISTEN_PID=str(PID), LISTEN_FDS="0", LISTEN_FDNAMES=""), nullcontext()),
        (env(LISTEN_PID="bad", LISTEN_FDS="1"), pytest.raises(SocketActivationError)),
    ],
    ids=["other-pid", "nothing", "error"],
)
def test_the_variables_are_removed_whatever_they_said(
    environ: dict[str, str], outcome: AbstractContextManager[object]
) -> None:
    """A child (on_complete) must not take them for its own, even after an error."""
    with outcome:
        assert take_passed_sockets(environ, pid=PID) == []
    assert environ == {"PATH": "/bin"}


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "reactor.socket")
    assert take_passed_sockets() == []
    assert not set(ACTIVATION_ENV) & set(os.environ)


# -------------------------------------------------------------------- the sockets


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield sock


def test_a_listening_tcp_socket_is_adopted_as_it_is(listener: socket.socket) -> None:
    """The very descriptor (not a copy), close-on-exec, with its address and backlog."""
    os.set_inheritable(listener.fileno(), True)  # as systemd passes it
    passed = adopt(PassedFd(listener.fileno(), "reactor.socket"))
    try:
        assert passed.sock.fileno() == passed.fd == listener.fileno()
        assert passed.name == "reactor.socket"
        assert passed.listen == f"127.0.0.1:{listener.getsockname()[1]}"
        assert passed.backlog == 1024
        assert not os.get_inheritable(passed.fd)
    finally:
        passed.sock.detach()  # the fixture closes it


def test_an_ipv6_socket_reads_as_a_bracketed_listen_value() -> None:
    if not socket.has_ipv6:
        pytest.skip("this host has no IPv6")
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"::1 cannot be bound here ({exc.strerror})")
        sock.listen()
        passed = adopt(PassedFd(sock.fileno(), UNNAMED))
        assert passed.listen == f"[::1]:{sock.getsockname()[1]}"
        passed.sock.detach()


def test_listen_text_of_socket_addresses() -> None:
    assert listen_text(("0.0.0.0", 40765)) == "0.0.0.0:40765"  # noqa: S104 - nothing bound
    assert listen_text(("::", 40765, 0, 0)) == "[::]:40765"


def test_the_backlog_is_what_listen_last_set(listener: socket.socket) -> None:
    """Linux's TCP_INFO reads it back; listening again replaces it (what asyncio does)."""
    assert listen_backlog(listener) == 1024
    listener.listen(128)
    assert listen_backlog(listener) == 128
    with socket.socket() as idle:
        assert listen_backlog(idle) is None  # not listening


def _refused(sock: socket.socket) -> str:
    fd = sock.fileno()
    with pytest.raises(SocketActivationError) as caught:
        adopt(PassedFd(fd, "reactor.socket"))
    assert sock.fileno() == fd, "a refused descriptor must be left open, as it came"
    message = str(caught.value)
    assert message.startswith(f"socket 'reactor.socket' (fd {fd}) passed by systemd ")
    assert "\n" not in message
    assert "ListenStream=HOST:PORT" in message  # what to fix
    return message


def test_a_datagram_socket_is_refused() -> None:
    with socket.socket(type=socket.SOCK_DGRAM) as sock:
        assert "is not a stream socket" in _refused(sock)


def test_a_unix_socket_is_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "reactor.sock"))
        sock.listen()
        assert "is not a TCP socket" in _refused(sock)


def test_a_socket_that_does_not_listen_is_refused(listener: socket.socket) -> None:
    """What Accept=yes passes: one connection."""
    with socket.create_connection(listener.getsockname()) as connection:
        assert "is a connection, not a listening socket (Accept=yes?)" in _refused(connection)
    with socket.socket() as unbound:
        assert "not a listening socket" in _refused(unbound)


def test_a_descriptor_that_is_no_socket_is_refused() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(SocketActivationError, match="is not an open socket"):
            adopt(PassedFd(read_end, UNNAMED))
        os.fstat(read_end)  # still open
    finally:
        os.close(read_end)
        os.close(write_end)
    closed, other = os.pipe()
    os.close(closed)
    os.close(other)
    with pytest.raises(SocketActivationError, match=r"is not an open socket \(Bad file"):
        adopt(PassedFd(closed, UNNAMED))


def test_socket_problem_is_none_only_for_a_listening_tcp_stream() -> None:
    assert socket_problem(socket.AF_INET, socket.SOCK_STREAM, True) is None
    assert socket_problem(socket.AF_INET6, socket.SOCK_STREAM, True) is None
    assert socket_problem(socket.AF_INET, socket.SOCK_STREAM, False) is not None
    assert socket_problem(socket.AF_UNIX, socket.SOCK_STREAM, True) is not None
    assert socket_problem(socket.AF_INET, socket.SOCK_DGRAM, True) is not None
