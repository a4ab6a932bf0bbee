"""Slurm's commands as the fleet runs them, and their answers read back.

Plain commands, not a library: `sbatch --parsable` (prints the job id), `squeue` with a
fixed `-o` format (`--json` needs a plugin the site may lack and changes between
versions), and `scancel --state=PENDING` (Slurm itself refuses to cancel a job that
started meanwhile, so the fleet never kills an engine that just took a batch). Each runs
locally or through `submit_via` (such as `ssh login-node`), which is handed the command as
one shell line, as ssh expects; the answers are read the same way.

The job script `exec`s the engine, so the engine is the batch shell: Slurm's
`--signal=B:TERM@drain_s` and scancel's signals reach it, not a shell that would ignore
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from reactor.core.fleet import JobPhase
from reactor.settings.fleet import FleetConfig

# id|state|node|time left|reason: the reason last, as the one field that is free text.
SQUEUE_FORMAT = "%i|%T|%N|%L|%r"
ENGINE_ID_PREFIX = "slurm-"

_PENDING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED"})
_RUNNING = frozenset({"RUNNING"})
_JOB_ID = re.compile(r"^\d+(_\d+)?$")
_TIME_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


class SlurmError(Exception):
    """A Slurm command failed or said something unexpected; the message says which and
    what it printed."""


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One line of squeue."""

    job_id: str
    state: str  # Slurm's state, such as PENDING or RUNNING
    node: str  # where it runs; empty while pending
    time_left_s: float | None  # None: no limit, or not known
    reason: str  # why it waits (Priority, Resources, ...); "None" when running

    def phase(self, drain_s: float) -> JobPhase:
        if self.state in _PENDING:
            return JobPhase.PENDING
        if self.state in _RUNNING:
            if self.time_left_s is not None and self.time_left_s <= drain_s:
                return JobPhase.DRAINING
            return JobPhase.RUNNING
        return JobPhase.ENDING


def engine_id_of(job_id: str) -> str:
    """The engine id a fleet job's engine reports as (the job script passes it)."""
    return ENGINE_ID_PREFIX + job_id


def parse_time_left(text: str) -> float | None:
    """Seconds from squeue's %L ([days-][hours:]minutes:seconds); None for UNLIMITED,
    NOT_SET, INVALID and anything else."""
    found = _TIME_LEFT.match(text.strip())
    if found is None:
        return None
    days, hours, minutes, seconds = (int(part) if part else 0 for part in found.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def parse_squeue(text: str) -> list[QueuedJob]:
    """The lines of `squeue --noheader -o SQUEUE_FORMAT`; a line that is not one raises
    SlurmError (a changed format must not read as "no jobs")."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 4)
        if len(fields) != 5 or _JOB_ID.match(fields[0].strip()) is None:
            msg = f"squeue printed a line that is not id|state|node|time left|reason: {line!r}"
            raise SlurmError(msg)
        job_id, state, node, left, reason = (field.strip() for field in fields)
        jobs.append(QueuedJob(job_id, state, node, parse_time_left(left), reason))
    return jobs


def parse_sbatch(text: str) -> str:
    """The job id from `sbatch --parsable` (``id`` or ``id;cluster``)."""
    first = text.strip().splitlines()[:1]
    job_id = first[0].split(";", 1)[0].strip() if first else ""
    if _JOB_ID.match(job_id) is None:
        msg = f"sbatch --parsable printed no job id: {text.strip()[:200]!r}"
        raise SlurmError(msg)
    return job_id


def sbatch_args(config: FleetConfig) -> list[str]:
    """sbatch's command line; the job script comes on its standard input."""
    args = ["sbatch", "--parsable", f"--job-name={config.name}", f"--time={config.time_limit}"]
    args.append(f"--signal=B:TERM@{round(config.drain_s)}")
    for option, value in (
        ("--partition", config.partition),
        ("--account", config.account),
        ("--gres", config.gres),
    ):
        if value is not None:
            args.append(f"{option}={value}")
    if config.log_dir is not None:
        args.append(f"--output={config.log_dir.rstrip('/')}/reactor-engine-%j.log")
    args.extend(config.sbatch_args)
    return args


def job_script(config: FleetConfig) -> str:
    """The batch script: source the environment file, then become the engine."""
    engine = [
        *shlex.split(config.engine_command),
        "--manager",
        config.manager_url,
        "--exit-when-idle",
        f"{config.idle_s:g}",
        "--release-after",
        f"{config.release_after_s:g}",
    ]
    lines = [
        "#!/bin/bash",
        f"# An engine of pod5-reactor's fleet {config.name}: it exits when idle for",
        f"# {config.idle_s:g} s; signalled {config.drain_s:g} s before its time limit, it",
        "# finishes or hands back its batch. Replaced by the fleet, never resubmitted.",
    ]
    if config.env_file is not None:
        lines += ["set -a", f". {shlex.quote(config.env_file)}", "set +a"]
    engine_id = f'--engine-id "{ENGINE_ID_PREFIX}${{SLURM_JOB_ID}}"'
    lines.append(f"exec {shlex.join(engine)} {engine_id}")
    return "\n".join(lines) + "\n"


def squeue_args(config: FleetConfig) -> list[str]:
    """squeue's command line: this fleet's jobs, one line each, in SQUEUE_FORMAT."""
    return ["squeue", "--noheader", f"--name={config.name}", "-o", SQUEUE_FORMAT]


def through(config: FleetConfig, args: Sequence[str]) -> list[str]:
    """The command line that runs `args` here, or through `submit_via` as one shell line."""
    if not config.submit_via:
        return list(args)
    return [*config.submit_via, shlex.join(args)]


class Slurm:
    """Runs Slurm's commands (locally or through `submit_via`), never on the event loop's
    time: each is a subprocess awaited with a bound."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config

    async def run(self, args: Sequence[str], stdin: str | None = None) -> str:
        """Standard output of `args`; SlurmError when it cannot start, fails or takes
        longer than `command_timeout`."""
        line = through(self.config, args)
        try:
            process = await asyncio.create_subprocess_exec(
                *line,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            msg = (
                f"{line[0]} cannot be started ({exc.strerror or exc}): is it installed and on PATH?"
            )
            raise SlurmError(msg) from None
        data = None if stdin is None else stdin.encode()
        try:
            out, err = await asyncio.wait_for(
                process.communicate(data), self.config.command_timeout
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            msg = f"{args[0]} took more than {self.config.command_timeout:g} s and was stopped"
            raise SlurmError(msg) from None
        if process.returncode != 0:
            said = (err or out).decode(errors="replace").strip().splitlines()
            last = said[-1] if said else "no message"
            msg = f"{args[0]} failed (exit {process.returncode}): {last}"
            raise SlurmError(msg)
        return out.decode(errors="replace")

    async def submit(self) -> str:
        """Submit one engine job; its id."""
        return parse_sbatch(await self.run(sbatch_args(self.config), job_script(self.config)))

    async def queue(self) -> list[QueuedJob]:
        """This fleet's jobs Slurm still has (queued, running, ending)."""
        return parse_squeue(await self.run(squeue_args(self.config)))

    async def cancel_pending(self, job_ids: Sequence[str]) -> None:
        """Cancel these jobs if they are still queued; Slurm leaves one that started."""
        if job_ids:
            await self.run(["scancel", "--state=PENDING", *job_ids])
