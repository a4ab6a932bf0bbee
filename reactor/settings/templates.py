"""The engine's command templates: {placeholders}, presets, and their checks.

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
parsed, which the engine's settings do once, at start.

`PRESETS` are ready-made templates (``--preset``): dorado writing FASTQ or BAM on stdout,
reactor's stand-in basecaller (into pass/ and fail/, or on stdout as dorado), and the
seed engine's supervisor line. The engine runs
the expanded command (`reactor.engine.command`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reactor.settings.parsing import shell_words
from reactor.settings.programs import FIX, find_program, program_missing

PLACEHOLDERS = (
    "input_dir", "output_dir", "model", "kit_name", "sample_sheet", "job_id", "engine_id",
    "batch_size", "python",
)  # fmt: skip


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
        "{python} -m reactor fake-basecaller {input_dir} {output_dir}",
        None,
        "reactor's stand-in basecaller, one FASTQ record per read, no GPU: for trials",
    ),
    # No {model}: a template that names it needs the model setting, which a trial need
    # not set; the stand-in names its default model in the read groups. {kit_name}: the
    # run's barcoding kit in host mode (its rules'), empty otherwise (no barcodes).
    "fake-dorado-bam": Preset(
        "{python} -m reactor fake-basecaller --dorado {input_dir} --kit-name {kit_name}",
        "{output_dir}/pass/{job_id}.bam",
        "reactor's stand-in writing BAM on stdout as dorado does, into the job's pass/",
    ),
    "fake-dorado-fastq": Preset(
        "{python} -m reactor fake-basecaller --dorado {input_dir} --kit-name {kit_name} "
        "--emit-fastq",
        "{output_dir}/pass/{job_id}.fastq",
        "reactor's stand-in writing FASTQ on stdout as dorado does, into the job's pass/",
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
        words = shell_words(text)
    except ValueError as exc:
        raise TemplateError(str(exc)) from None
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
    if program.fields or find_program(program.expand({})) is not None:
        return None
    return f"{program_missing(program.expand({}))}; {FIX}"


def command_fields(command: Sequence[Template]) -> frozenset[str]:
    """Every placeholder a parsed command uses."""
    return frozenset().union(*(word.fields for word in command))


def expand_command(command: Sequence[Template], values: Mapping[str, str]) -> list[str]:
    """The argument list for one batch: each argument expanded on its own."""
    return [word.expand(values) for word in command]
