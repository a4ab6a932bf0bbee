"""on_complete's program and subprocess: found at start, started in a session of its
own, its output in a log file.

`reactor.finisher` decides when to run it and records the outcome; this module only
finds its program, starts it, stops it and reads the end of its log.

The program is found when the settings are loaded (`resolve_on_complete`), not at the
end of a two-day run, and the command line then names it by its absolute path: a bare
name is looked up on PATH, a relative path is taken from serve's working directory (or,
in the config file, from the file's folder: `reactor.endrun.program_relative_to`),
since the command itself runs in OUTPUTDIR.

The command is an argument list (split with `shlex` by the caller) run without a shell,
with stdin from /dev/null and stdout+stderr appended to the log file: the child writes
there directly, so nothing it prints passes through the service or its memory. It runs
in a session (process group) of its own, so stopping it reaches whatever it started
(`sh -c` pipelines).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reactor.settings import ConfigError

if TYPE_CHECKING:
    from reactor.config import Config

TAIL_BYTES = 2048  # at most this much of the log's end is read back, for the logs


def find_program(program: str) -> str | None:
    """The absolute path of an executable `program`: a bare name is looked up on PATH, a
    relative path from the working directory. None if there is no such executable."""
    found = shutil.which(program)
    return None if found is None else str(Path(found).absolute())


def program_missing(program: str) -> str:
    """Why `find_program` found nothing, in words for a person."""
    if "/" not in program:
        return f"on_complete program {program!r} is not found on PATH or is not executable"
    where = f" ({Path(program).absolute()})" if not program.startswith("/") else ""
    return f"on_complete program {program!r}{where} is not found or is not executable"


def resolve_on_complete(config: Config) -> Config:
    """The on_complete program must be found now, not at the end of a two-day run, and
    is then run by its absolute path: the command runs in output_dir, not here."""
    if config.on_complete is None:
        return config
    program, *args = shlex.split(config.on_complete)
    found = find_program(program)
    if found is None:
        msg = f"{program_missing(program)}: install it, give its full path, or fix the command"
        raise ConfigError(msg)
    return replace(config, on_complete=shlex.join([found, *args]))


class LogUnavailable(OSError):
    """The command's log file cannot be opened, so the command is not started."""


async def spawn(
    command: Sequence[str], env: Mapping[str, str], *, cwd: Path, log_path: Path
) -> asyncio.subprocess.Process:
    """Start `command`; raises LogUnavailable, or the OSError of a failed start."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    header = f"# reactor on_complete at {stamp}: {shlex.join(command)}\n".encode()
    try:
        log_file = await asyncio.to_thread(_open_log, log_path, header)
    except OSError as exc:
        msg = f"its log {log_path} cannot be opened ({exc.strerror}): fix output_dir"
        raise LogUnavailable(msg) from None
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    finally:  # the child holds its own copy
        os.close(log_file)


def start_problem(program: str, exc: OSError) -> str:
    """Why `program` did not start, and what to do, in one line."""
    if isinstance(exc, FileNotFoundError):
        return f"program {program!r} is not found; install it or give its full path"
    if isinstance(exc, PermissionError):
        return f"program {program!r} is not executable by this user; fix its permissions"
    return f"program {program!r} cannot be started ({exc.strerror or exc})"


def signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    """Signal the command's process group (its pid: start_new_session); it may be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def tail(path: Path) -> list[str]:
    """The last lines of the command's log (at most `TAIL_BYTES`, 10 lines)."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES))
            data = file.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-10:]


def _open_log(path: Path, header: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, header)
    return fd
