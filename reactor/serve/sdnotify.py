"""Telling systemd how the service is doing: the sd_notify protocol (sd_notify(3)).

The protocol is small, documented and stable: one datagram per message, sent to the
AF_UNIX socket named by ``NOTIFY_SOCKET``, holding newline-separated ``KEY=VALUE``
assignments (``READY=1``, ``STATUS=…``, ``WATCHDOG=1``, ``STOPPING=1``). A name that
starts with ``@`` is in Linux's abstract namespace (the ``@`` stands for a NUL byte).
``WATCHDOG_USEC`` asks for a ``WATCHDOG=1`` at least that often; ``WATCHDOG_PID``, when
set, names the one process the request is for. It is written here by hand because the
only package on PyPI, ``sdnotify``, is unmaintained (no release since 2017), and
libsystemd's binding (``systemd-python``) is a C extension built against libsystemd's
headers: a compiler and -dev package on every sequencer host, for ~60 lines.

`Notifier` sends messages; without ``NOTIFY_SOCKET`` (not started by systemd, or by a
unit that is not ``Type=notify``) every call does nothing. Sending never raises: the
service must keep working whatever happens to its link with systemd, so the first
failure is logged (``sd_notify_failed``) and later ones are counted. `SystemdLifecycle` is the
service's side of the conversation: ``READY=1`` once, then ``WATCHDOG=1`` and a fresh
``STATUS=`` from a task on the event loop (so a stuck loop stops the pings and systemd
restarts the service), and ``STOPPING=1`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("reactor.sdnotify")

# Without a watchdog, STATUS= is still refreshed this often for `systemctl status`.
STATUS_REFRESH_S = 5.0


def socket_address(name: str) -> bytes | None:
    """The address to send to for a ``NOTIFY_SOCKET`` value; None if unsupported.

    Supported: an absolute path, or ``@name`` for the abstract namespace. Newer systemd
    (254+) also passes ``vsock:…`` addresses to virtual machines; a service on a host
    never gets one, so they are refused rather than half supported."""
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return os.fsencode(name)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings asked for by ``WATCHDOG_USEC`` (half the timeout, as
    sd_watchdog_enabled(3) advises), or None when there is no watchdog for `pid`."""
    usec_text = environ.get("WATCHDOG_USEC")
    if usec_text is None:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text is not None and pid_text.strip() != str(pid):
        return None  # the watchdog is for another process (a parent, or our parent's)
    try:
        usec = int(usec_text)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning(
            "sd_notify_ignored",
            reason="bad_watchdog_usec",
            value=usec_text,
            hint="WATCHDOG_USEC must be a positive number of microseconds; check WatchdogSec=",
        )
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """Sends sd_notify messages to one socket; a no-op when there is none."""

    def __init__(
        self, socket_name: str | None, *, watchdog_interval_s: float | None = None
    ) -> None:
        self.socket_name = socket_name or None
        self.address = None if self.socket_name is None else socket_address(self.socket_name)
        if self.socket_name is not None and self.address is None:
            log.warning(
                "sd_notify_ignored",
                reason="unsupported_socket",
                socket=self.socket_name,
                hint="NOTIFY_SOCKET must be an absolute path or an @abstract name",
            )
        # Pings make no sense without somewhere to send them.
        self.watchdog_interval_s = watchdog_interval_s if self.address is not None else None
        self.failures = 0

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """The notifier systemd set up for this process (`environ` defaults to os.environ)."""
        env = os.environ if environ is None else environ
        interval_s = watchdog_interval(env, os.getpid() if pid is None else pid)
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval_s=interval_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one message. True if it went out."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the event loop: a receiver that stopped reading makes
                # this fail (EAGAIN), and a missed ping is systemd's business.
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            self._failed(assignments, exc)
            return False
        return True

    def _failed(self, assignments: tuple[str, ...], exc: OSError) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning(
                "sd_notify_failed",
                socket=self.socket_name,
                message=assignments[0] if assignments else "",
                detail=str(exc),
                hint=(
                    "systemd does not hear from the service (readiness, watchdog); "
                    "check NOTIFY_SOCKET and that the unit has Type=notify and "
                    "NotifyAccess=main. Further failures are not logged."
                ),
            )

    def ready(self, status: str) -> bool:
        return self.send("READY=1", status_assignment(status))

    def status(self, status: str) -> bool:
        return self.send(status_assignment(status))

    def watchdog(self, status: str) -> bool:
        return self.send("WATCHDOG=1", status_assignment(status))

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", status_assignment(status))


def status_assignment(status: str) -> str:
    """``STATUS=`` with `status` on one line (a newline would start a new assignment)."""
    return "STATUS=" + " ".join(status.split())


class SystemdLifecycle:
    """READY=1 once, then WATCHDOG=1 (when asked for) and STATUS= on a timer, from a
    task on the event loop; STOPPING=1 when stopped. `status` gives the current line."""

    def __init__(self, notifier: Notifier, status: Callable[[], str]) -> None:
        self.notifier = notifier
        self._status = status
        self._task: asyncio.Task[None] | None = None
        self._announced = False
        self._stopped = False
        self._asked = False  # announce_ready() was called while held
        self._held = False  # READY=1 waits for `release()` too (the start-up scan)

    def start(self, *, announce_ready: bool = True) -> None:
        """Start the pings and, unless told to wait (`announce_ready=False`, then
        `announce_ready()` says it later), tell systemd the service is ready. Call on
        the loop."""
        if not self.notifier.enabled:
            return
        if announce_ready:
            self.announce_ready()
        self._task = asyncio.create_task(self._run(), name="reactor-sd-notify")

    def hold(self) -> None:
        """READY=1 waits for `release()` as well: systemd hears the service is ready when
        /readyz says so, once the start-up scan is over, as before the service served
        during it."""
        self._held = True

    def release(self) -> None:
        """What `hold()` waited for is over: READY=1 now if it was asked for meanwhile."""
        self._held = False
        if self._asked:
            self.announce_ready()

    def announce_ready(self) -> None:
        """READY=1 with the current status line; once, and never after stopping (after
        `release()`, when held)."""
        notifier = self.notifier
        if not notifier.enabled or self._announced or self._stopped:
            return
        if self._held:
            self._asked = True
            return
        self._announced = True
        status = self.status_line()
        notifier.ready(status)
        log.info(
            "sd_notify_ready",
            socket=notifier.socket_name,
            watchdog_interval_s=notifier.watchdog_interval_s,
            status=status,
        )

    async def _run(self) -> None:
        notifier = self.notifier
        interval_s = notifier.watchdog_interval_s
        while True:
            await asyncio.sleep(STATUS_REFRESH_S if interval_s is None else interval_s)
            if interval_s is None:
                notifier.status(self.status_line())
            else:
                notifier.watchdog(self.status_line())

    def status_line(self) -> str:
        """The status, or a stand-in: a failing status must not stop the pings."""
        try:
            return self._status()
        except Exception as exc:  # a bug in the status line must not cost a restart
            log.exception("sd_notify_status_failed", detail=str(exc))
            return "running"

    async def stop(self, status: str = "stopping") -> None:
        """STOPPING=1 (once), then end the pings. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self.notifier.stopping(status)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
