"""on_complete's subprocess: started in a session of its own, its output in a log file.

`reactor.serve.finisher` decides when to run it, stops it and records the outcome; this
module only starts it, says why it did not start, and reads the end of its log.

The program was found when the settings were loaded (`reactor.settings.serve`), so the
command line names it by its absolute path: the command itself runs in OUTPUTDIR.

The command is an argument list (split with `shlex` by the caller) run without a shell,
with stdin from /dev/null and stdout+stderr appended to the log file: the child writes
there directly, so nothing it prints passes through the service or its memory. It runs
in a session (process group) of its own, so stopping it reaches whatever it started
(`sh -c` pipelines).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from reactor.runtime.processes import start_in_session

TAIL_BYTES = 2048  # at most this much of the log's end is read back, for the logs


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
        return await start_in_session(command, cwd=cwd, env=env, stdout=log_file)
    finally:  # the child holds its own copy
        os.close(log_file)


def start_problem(program: str, exc: OSError) -> str:
    """Why `program` did not start, and what to do, in one line."""
    if isinstance(exc, FileNotFoundError):
        return f"program {program!r} is not found; install it or give its full path"
    if isinstance(exc, PermissionError):
        return f"program {program!r} is not executable by this user; fix its permissions"
    return f"program {program!r} cannot be started ({exc.strerror or exc})"


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
