"""A person's view of a running reactor, once or refreshed in place (`reactor status`).

It asks the service for `/status` and shows progress in files (done and quarantined out
of seen), the recent rate and ETA, the engines and the quarantined files
(`reactor.ops.status_view` renders them). `watch` refreshes every few seconds, in place
on a terminal and as separate blocks otherwise; with `as_json` the service's JSON is
printed as is. Which service, and with which token, is the command's business
(`reactor.commands.status`).
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from reactor.core.protocol import error_detail
from reactor.ops.status_view import Glyphs, render

DEFAULT_WATCH_S = 2.0
TIMEOUT_S = 10.0
NEEDED = frozenset(
    {"ready", "phase", "files", "files_total", "engines", "throughput", "quarantined"}
)
CURSOR_UP_AND_CLEAR = "\x1b[{lines}F\x1b[J"  # to the first line of the last frame, clear below


class StatusError(Exception):
    """The snapshot could not be had; the message is one line for a person."""

    def __init__(self, message: str, *, lasting: bool) -> None:
        super().__init__(message)
        self.lasting = lasting  # retrying will not help (a refused token, not a reactor)


def fetch_status(url: str, token: str | None, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """GET `url`/status; any failure is a StatusError saying what to do."""
    request = urllib.request.Request(f"{url}/status")  # noqa: S310 - http(s) checked above
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
            body = json.load(reply)
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc, token) from None
    except urllib.error.URLError as exc:
        raise _unreachable(url, exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:  # e.g. cut off mid-answer
        raise _unreachable(url, exc) from None
    except ValueError:
        body = None
    if not isinstance(body, dict) or "files" not in body:
        msg = f"reactor status: {url} did not answer like a reactor: is --url right?"
        raise StatusError(msg, lasting=True)
    missing = sorted(NEEDED - set(body))
    if missing:
        msg = (
            f"reactor status: {url} answered without {', '.join(missing)}: the service is "
            "older than this command; upgrade it"
        )
        raise StatusError(msg, lasting=True)
    return body


def _unreachable(url: str, reason: object) -> StatusError:
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    text = text[:1].lower() + text[1:]
    dash = Glyphs.for_encoding(sys.stderr.encoding).none
    msg = (
        f"reactor status: cannot reach {url}: {text} {dash} is `reactor serve` running? "
        "(give its address with --url)"
    )
    return StatusError(msg, lasting=False)


def _http_error(url: str, exc: urllib.error.HTTPError, token: str | None) -> StatusError:
    if exc.code == 401 and token is None:
        msg = (
            f"reactor status: {url} needs a token: set REACTOR_TOKEN or --token (without "
            "--url, serve's settings file, given with --config, is read for it too)"
        )
    elif exc.code == 401:
        msg = f"reactor status: {url} refused the token: check REACTOR_TOKEN or --token"
    elif exc.code == 403:
        msg = (
            f"reactor status: {url} refused this host (not in its allow list): run it on "
            "the service's host or an allowed one"
        )
    else:
        msg = f"reactor status: {url} answered {exc.code}: {_detail(exc)}"
    return StatusError(msg, lasting=exc.code in (401, 403, 404))


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        body = ""
    return error_detail(body) or str(exc.reason)


def show_once(url: str, token: str | None, *, as_json: bool) -> int:
    try:
        status = fetch_status(url, token)
    except StatusError as exc:
        print(exc, file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(_lines(status, url, sys.stdout)))
    return 0


def watch(url: str, token: str | None, interval_s: float, *, as_json: bool) -> int:
    """Refresh until Ctrl-C (exit 0). A service that cannot be reached at first is an
    error; one that goes away later (a restart) is shown and tried again."""
    screen = Screen(sys.stdout)
    shown = False
    while True:
        try:
            status = fetch_status(url, token)
        except StatusError as exc:
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
                screen.show(_lines(status, url, sys.stdout))
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
