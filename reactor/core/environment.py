"""What reactor's child processes inherit of its environment.

Both commands reactor starts, an engine's basecaller for each batch and serve's
`on_complete` at the end of a run, get the environment of the process that starts them
without the variables that are not theirs to see: the tokens (a command has no use for
them, and a script that logs its environment would leak them) and systemd's notify and
watchdog variables, which name the service: a command that used them (anything built on
sd_notify does) would speak for reactor, such as READY=1, STOPPING=1 or a watchdog ping
from a process that is not reactor. The same goes for socket activation's LISTEN_*
variables, which `reactor serve` also removes from its own environment once read.
"""

from __future__ import annotations

from collections.abc import Mapping

PRIVATE_ENV = frozenset(
    {
        "REACTOR_TOKEN",
        "REACTOR_ENGINE_TOKEN",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    }
)


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """`base` without `PRIVATE_ENV`: what a child process starts from."""
    return {key: value for key, value in base.items() if key not in PRIVATE_ENV}
