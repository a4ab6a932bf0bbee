"""The host's time zone, by its IANA name, so a dashboard in another zone shows the
sequencer's clock (a run's times are the instrument's times).

`TZ` when it names a zone, else what `/etc/localtime` links to (`…/zoneinfo/Europe/London`),
else `/etc/timezone`; None when none of them says (the browser's zone is used then).
Read once, at start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

_NAME = re.compile(r"^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+)+)$")


def host_time_zone(
    env: Mapping[str, str] = os.environ,
    localtime: Path = Path("/etc/localtime"),
    timezone_file: Path = Path("/etc/timezone"),
) -> str | None:
    """The IANA name of this host's zone, or None."""
    named = env.get("TZ", "").removeprefix(":")
    if _NAME.match(named):
        return named
    with contextlib.suppress(OSError):
        target = str(localtime.readlink())
        _, found, name = target.partition("zoneinfo/")
        if found and _NAME.match(name):
            return name
    with contextlib.suppress(OSError, UnicodeDecodeError):
        name = timezone_file.read_text().strip()
        if _NAME.match(name):
            return name
    return None
