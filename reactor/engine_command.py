"""The engine's command: templates with {placeholders}, and the subprocess that runs one batch.

A command template is split like a shell would (`shlex.split`) but never run by one: each
argument is then expanded on its own, so a path with spaces stays one argument. A
template that wants a shell says so itself (``sh -c '...'``). Placeholders:

``{input_dir}``   this host's absolute path of the job's input folder (``ASSIGNED_…``)
``{output_dir}``  this host's absolute path of the job's output folder (``TMPOUTPUT_…``)
``{model}``       the ``model`` setting
``{job_id}``      the job id the manager handed out
``{engine_id}``   this engine's id
``{batch_size}``  how many files the batch holds
``{python}``      the Python interpreter running the engine (``sys.executable``)

``{{`` and ``}}`` are literal braces. Anything else in braces (an unknown name, ``{}``,
a conversion such as ``{job_id!r}`` or a format spec) is refused when the template is
parsed, which the engine does once, at start.

`PRESETS` are ready-made templates (``--preset``): dorado writing FASTQ or BAM on stdout,
reactor's fake basecaller, and the seed engine's supervisor line.

`RunningCommand` owns one batch's subprocess: it starts in a session (process group) of
its own, so stopping it reaches whatever it started (``sh -c`` pipelines, dorado's
helpers): SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import string
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PLACEHOLDERS = ("input_dir", "output_dir", "model", "job_id", "engine_id", "batch_size", "python")
# Settings a running command has no use for; the token above all.
_PRIVATE_ENV = ("REACTOR_ENGINE_TOKEN", "REACTOR_TOKEN")


@dataclass(frozen=True, slots=True)
class Preset:
    """A ready-made command line (and where its stdout goes)."""

    command: str
    stdout_to: str | None
    about: str


PRESETS: dict[str, Preset] = {
    "dorado-fastq": Preset(
        "dorado basecaller {model} {input_dir} --emit-fastq",
        "{output_dir}/pass/{job_id}.fastq",
        "dorado writing FASTQ on stdout, into the job's pass/",
    ),
    "dorado-bam": Preset(
        "dorado basecaller {model} {input_dir}",
        "{output_dir}/pass/{job_id}.bam",
        "dorado writing BAM on stdout, into the job's pass/",
    ),
    "fake": Preset(
        "{python} -m reactor.fakecaller {input_dir} {output_dir}",
        None,
        "reactor's stand-in basecaller, one FASTQ record per read, no GPU: for trials",
    ),
    "seed-supervisor": Preset(
        "ont_basecaller_supervisor --input_path {input_dir} --save_path {output_dir} "
        "--config {model} --port auto",
        None,
        "the seed engine's ont_basecaller_supervisor line; adjust to your install",
    ),
}


class TemplateError(ValueError):
    """A command or stdout_to template that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Template:
    """One string with placeholders, as (literal text, placeholder name or None) parts."""

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for _literal, name in self.parts if name is not None)

    def expand(self, values: Mapping[str, str]) -> str:
        return "".join(literal + (values[name] if name else "") for literal, name in self.parts)


def parse_template(text: str) -> Template:
    """Parse one template string; raise TemplateError for anything but known {names}."""
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:  # a lone { or }
        msg = f"{text!r} has an unmatched brace ({exc}); write {{{{ or }}}} for a literal one"
        raise TemplateError(msg) from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            msg = (
                f"{text!r} has an unknown placeholder {shown}; "
                f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
            raise TemplateError(msg)
        parts.append((literal, name))
    return Template(text, tuple(parts))


def parse_command(text: str) -> tuple[Template, ...]:
    """Split a command template like a shell (without running one) and parse each argument."""
    try:
        words = shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        msg = f"{text!r} cannot be split into arguments ({exc}); check its quotes"
        raise TemplateError(msg) from None
    if not words:
        msg = "is empty: give the program to run and its arguments"
        raise TemplateError(msg)
    parsed = []
    for word in words:
        try:
            parsed.append(parse_template(word))
        except TemplateError as exc:
            msg = f"argument {exc}"
            raise TemplateError(msg) from None
    return tuple(parsed)


def command_problem(text: str) -> str | None:
    """What is wrong with a command template, or None."""
    try:
        parse_command(text)
    except TemplateError as exc:
        return str(exc)
    return None


def path_template_problem(text: str) -> str | None:
    """What is wrong with a file path template (such as stdout_to), or None."""
    if not text.strip():
        return "is empty: give a file path such as {output_dir}/pass/{job_id}.fastq"
    try:
        parse_template(text)
    except TemplateError as exc:
        return str(exc)
    return None


def program_problem(command: Sequence[Template]) -> str | None:
    """None if the program to run is found (or is a placeholder, known only per batch)."""
    program = command[0]
    if program.fields or shutil.which(program.expand({})) is not None:
        return None
    return (
        f"program {program.expand({})!r} is not found on PATH or is not executable; "
        "install it, give its full path, or fix the command"
    )


def command_fields(command: Sequence[Template]) -> frozenset[str]:
    """Every placeholder a parsed command uses."""
    return frozenset().union(*(word.fields for word in command))


def expand_command(command: Sequence[Template], values: Mapping[str, str]) -> list[str]:
    """The argument list for one batch: each argument expanded on its own."""
    return [word.expand(values) for word in command]


def command_env(job: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: ours without secrets, plus REACTOR_JOB_* for scripts."""
    env = {key: value for key, value in os.environ.items() if key not in _PRIVATE_ENV}
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
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=subprocess.DEVNULL,
                stdout=out_file or log_file,
                stderr=log_file,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
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
        self._signal_group(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.process.wait()), kill_grace_s)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            return await self.process.wait()

    def _signal_group(self, signum: signal.Signals) -> None:
        # The group id is the child's pid (start_new_session); it may already be gone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


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
