"""A person's view of a running reactor, once or refreshed in place (`reactor status`).

It asks the service for `/status` and shows progress in files (done and quarantined out
of seen), the recent rate and ETA, the engines and the quarantined files
(`reactor.ops.status_view` renders them). `watch` refreshes every few seconds, in place
on a terminal and as separate blocks otherwise; with `as_json` the service's JSON is
printed as is. Which service, with which token, and how a failed request is told to a
person is `reactor.ops.service_client`'s, shared with `reactor requeue`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any, TextIO

from reactor.ops.service_client import ServiceClient, ServiceError
from reactor.ops.status_view import Glyphs, render

DEFAULT_WATCH_S = 2.0
TIMEOUT_S = 10.0
NEEDED = frozenset(
    {"ready", "phase", "files", "files_total", "engines", "throughput", "quarantined"}
)
HOST_NEEDED = frozenset({"ready", "files", "runs", "finished", "left", "failed"})
CURSOR_UP_AND_CLEAR = "\x1b[{lines}F\x1b[J"  # to the first line of the last frame, clear below


def fetch_status(service: ServiceClient) -> dict[str, Any]:
    """GET /status; any failure is a ServiceError saying what to do."""
    body = service.request("/status", timeout_s=TIMEOUT_S)
    if not isinstance(body, dict) or "files" not in body:
        raise service.not_a_reactor()
    needed = HOST_NEEDED if body.get("mode") == "host" else NEEDED
    missing = sorted(needed - set(body))
    if missing:
        msg = (
            f"{service.prog}: {service.url} answered without {', '.join(missing)}: the "
            "service is older than this command; upgrade it"
        )
        raise ServiceError(msg, lasting=True)
    return body


def show_once(service: ServiceClient, *, as_json: bool) -> int:
    try:
        status = fetch_status(service)
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(_lines(status, service.url, sys.stdout)))
    return 0


def watch(service: ServiceClient, interval_s: float, *, as_json: bool) -> int:
    """Refresh until Ctrl-C (exit 0). A service that cannot be reached at first is an
    error; one that goes away later (a restart) is shown and tried again."""
    screen = Screen(sys.stdout)
    shown = False
    while True:
        try:
            status = fetch_status(service)
        except ServiceError as exc:
            if exc.lasting or not shown:
                print(exc, file=sys.stderr)
                return 1
            if as_json:
                print(exc, file=sys.stderr)
            else:
                screen.show([str(exc), f"  trying again every {interval_s:g} s"])
        else:
            if as_json:
                print(json.dumps(status), flush=True)
            else:
                screen.show(_lines(status, service.url, sys.stdout))
            shown = True
        time.sleep(interval_s)


def _lines(status: dict[str, Any], url: str, out: TextIO) -> list[str]:
    width = shutil.get_terminal_size((80, 24)).columns if out.isatty() else 80
    glyphs = Glyphs.for_encoding(out.encoding)
    return render(status, url=url, width=width, glyphs=glyphs, at=time.strftime("%H:%M:%S"))


class Screen:
    """Shows frames: in place on a terminal (each replaces the last), else one after
    another with a blank line between, so a log or a pipe gets plain lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last_frame_lines = 0

    def show(self, lines: list[str]) -> None:
        if not self.tty:
            self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()
            return
        columns, rows = shutil.get_terminal_size((80, 24))
        # Moving up works only over lines that did not wrap and are still on screen.
        lines = [line[: columns - 1] for line in lines]
        if len(lines) > rows - 1:
            lines = [*lines[: rows - 2], "(a taller terminal shows the rest)"]
        if self.last_frame_lines:
            self.out.write(CURSOR_UP_AND_CLEAR.format(lines=self.last_frame_lines))
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.last_frame_lines = len(lines)
