"""Commands reactor runs: each in a session of its own, stopped as a group.

serve runs `on_complete` at the end of a run, and the engine runs a basecaller for each
batch. Both start the command without a shell, with stdin from /dev/null and its output
going straight into files (nothing it prints passes through reactor or its memory), in
a new session, so that signalling its process group reaches whatever it started too
(`sh -c` pipelines, dorado's helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

Output = int | IO[bytes]


async def start_in_session(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Output,
    stderr: Output | None = None,
) -> asyncio.subprocess.Process:
    """Start `args` in a new session, stdout to `stdout` and stderr to `stderr` (to
    stdout when None). Raises the OSError of a failed start."""
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT if stderr is None else stderr,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )


def signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    """Signal the process group of a command started by `start_in_session` (its id is the
    command's pid); the group may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
