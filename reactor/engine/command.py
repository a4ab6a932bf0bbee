"""The engine's command for one batch: its environment and its subprocess.

`RunningCommand` owns one batch's subprocess: it starts in a session (process group) of
its own, so stopping it reaches whatever it started (``sh -c`` pipelines, dorado's
helpers): SIGTERM to the group, SIGKILL after a grace period. The command line comes
from the engine's settings (`reactor.settings.templates`), expanded for the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from reactor.core.environment import child_environment
from reactor.runtime.processes import signal_group, start_in_session


def command_env(job: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: ours without secrets, plus REACTOR_JOB_* for scripts."""
    env = child_environment(os.environ)
    env.update(
        REACTOR_JOB_ID=job["job_id"],
        REACTOR_ENGINE_ID=job["engine_id"],
        REACTOR_JOB_INPUT_DIR=job["input_dir"],
        REACTOR_JOB_OUTPUT_DIR=job["output_dir"],
    )
    return env


class RunningCommand:
    """A batch's subprocess, in a process group of its own."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        args: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        stdout_path: Path | None,
        env: Mapping[str, str],
    ) -> RunningCommand:
        """Start `args` with stdout+stderr appended to `log_path` (stdout to `stdout_path`
        when given). The child writes to the files itself: nothing passes through us.
        Raises OSError when a file cannot be opened or the program cannot be started."""
        header = f"# reactor engine: {shlex.join(args)}\n".encode()
        # Opening can block on a network filesystem: not on the loop.
        log_file, out_file = await asyncio.to_thread(_open_outputs, log_path, stdout_path, header)
        try:
            process = await start_in_session(
                args, cwd=cwd, env=env, stdout=out_file or log_file, stderr=log_file
            )
        finally:  # the child holds its own copies
            log_file.close()
            if out_file is not None:
                out_file.close()
        return cls(process)

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, kill_grace_s: float) -> int:
        """SIGTERM the process group; SIGKILL it if the command is still there after
        `kill_grace_s`. Returns the exit code (negative: the signal that ended it)."""
        if self.process.returncode is not None:
            return self.process.returncode
        signal_group(self.process, signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.process.wait()), kill_grace_s)
        except TimeoutError:
            signal_group(self.process, signal.SIGKILL)
            return await self.process.wait()


def _open_outputs(
    log_path: Path, stdout_path: Path | None, header: bytes
) -> tuple[BinaryIO, BinaryIO | None]:
    with contextlib.ExitStack() as opened:
        log_file = opened.enter_context(open(log_path, "ab"))
        log_file.write(header)
        log_file.flush()
        out_file = None
        if stdout_path is not None:
            stdout_path.parent.mkdir(parents=True, exist_ok=True)
            out_file = opened.enter_context(open(stdout_path, "wb"))
        opened.pop_all()  # both stay open: the caller closes them once the child has them
    return log_file, out_file
