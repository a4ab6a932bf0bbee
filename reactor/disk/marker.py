"""The run-complete marker, `OUTPUTDIR/.reactor/run-complete.json`: its format and its I/O.

It lives in reactor's own state folder (`reactor.disk.state_dir`), where engines do not
write: a marker an engine could remove would have `on_complete` run twice, one it could
plant would keep it from running. (Earlier versions kept it in OUTPUTDIR as
`reactor-run-complete.json`; `LEGACY_MARKER_NAME` is that name.)

The marker is the record that makes `on_complete` run at most once across restarts
(`reactor.serve.finisher` says when it is written and what each state means). This module
owns what is in it (`Marker`, `MarkerState`), how a file is judged to be one
(`Marker.from_json` checks every field's type: a marker someone edited by hand, or a
truncated one, is refused with a ValueError, never a crash at start), and how it is
written: atomically (write `….tmp`, then `os.replace`, as `reactor.disk.journal` does) and
durably (the temp file is fsynced before the rename, the folder after it), never
through a link left under its names. The claim
must be on disk before the command starts: after a power loss, a claim lost from the
page cache would have the next start run the command a second time. It is written
twice per run, so the two fsyncs cost nothing that matters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from reactor.disk.state_dir import STATE_NAME

MARKER_NAME = "run-complete.json"
LEGACY_MARKER_NAME = "reactor-run-complete.json"  # in OUTPUTDIR, before the state folder
MARKER_VERSION = 1
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def marker_path(output_dir: Path) -> Path:
    """Where a run's marker is: in its state folder."""
    return output_dir / STATE_NAME / MARKER_NAME


class MarkerState(StrEnum):
    CLAIMED = "claimed"  # on_complete is about to start or running: no result yet
    FINISHED = "finished"  # on_complete ran to its end: exit_code, duration_s
    NOT_STARTED = "not_started"  # on_complete could not be started: detail says why
    STOPPED = "stopped"  # the service stopped on_complete while shutting down
    NO_COMMAND = "no_command"  # no on_complete configured


# States after which a person may have to run the command by hand.
INTERRUPTED_STATES = frozenset({MarkerState.CLAIMED, MarkerState.STOPPED})


@dataclass(slots=True)
class Marker:
    """The content of `run-complete.json` (times are ISO 8601, UTC)."""

    state: MarkerState
    completed_at: str
    stop_file: str
    files_done: int
    files_quarantined: int
    command: list[str] | None = None
    env: dict[str, str] | None = None  # the REACTOR_RUN_* variables the command gets
    log: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    detail: str | None = None
    version: int = field(default=MARKER_VERSION)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Marker:
        """Parse a marker; ValueError, saying which field is wrong, if it is not one."""
        raw: Any = json.loads(text)
        if not isinstance(raw, dict):
            msg = "not a JSON object"
            raise ValueError(msg)
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            msg = f"unknown field(s) {', '.join(map(repr, unknown))}"
            raise ValueError(msg)
        for name, (kind, accept, required) in _FIELDS.items():
            if name not in raw:
                if required:
                    msg = f"{name} is missing"
                    raise ValueError(msg)
                continue
            if not accept(raw[name]):
                msg = f"{name} must be {kind}, got {json.dumps(raw[name])[:60]}"
                raise ValueError(msg)
        values = dict(raw, state=MarkerState(raw["state"]))
        if values.get("duration_s") is not None:
            values["duration_s"] = float(values["duration_s"])
        return cls(**values)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _words(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


def _table(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _state(value: object) -> bool:
    return isinstance(value, str) and value in {state.value for state in MarkerState}


def _or_null(accept: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or accept(value)


# name -> (what it must be, for the message; its check; required): what `from_json` takes.
_FIELDS: dict[str, tuple[str, Callable[[object], bool], bool]] = {
    "state": ("one of " + ", ".join(MarkerState), _state, True),
    "completed_at": ("a string", _text, True),
    "stop_file": ("a string", _text, True),
    "files_done": ("a whole number", _whole, True),
    "files_quarantined": ("a whole number", _whole, True),
    "command": ("a list of strings or null", _or_null(_words), False),
    "env": ("a table of strings or null", _or_null(_table), False),
    "log": ("a string or null", _or_null(_text), False),
    "started_at": ("a string or null", _or_null(_text), False),
    "finished_at": ("a string or null", _or_null(_text), False),
    "exit_code": ("a whole number or null", _or_null(_whole), False),
    "duration_s": ("a number or null", _or_null(_number), False),
    "detail": ("a string or null", _or_null(_text), False),
    "version": ("a whole number", _whole, False),
}


def read_marker(path: Path) -> Marker | None:
    """The marker at `path`, None if there is none. Raises ValueError if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NO_FOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"cannot read it ({exc.strerror})"
        raise ValueError(msg) from None
    try:
        with os.fdopen(fd, "rb") as file:
            data = file.read(1 << 20)
    except OSError as exc:
        msg = f"cannot read it ({exc.strerror})"
        raise ValueError(msg) from None
    try:
        return Marker.from_json(data.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError too
        msg = f"it is not a marker reactor wrote ({exc})"
        raise ValueError(msg) from None


def write_marker(path: Path, marker: Marker) -> None:
    """Replace the marker atomically and durably: a crash or a power loss leaves the old
    one or the new one, and once this returns the new one survives either."""
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover, or a link left there: never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(marker.to_json())
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself is in the folder's entry
    finally:
        os.close(folder)
