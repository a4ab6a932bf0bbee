"""The end-of-run settings: `stop_file` and `on_complete`, parsed and checked.

`stop_file` is a file name pattern (MinKNOW's `final_summary_*.txt`); `on_complete` a
command line, split like a shell line and run without one. Both keys live in serve's
table (`reactor.settings.serve`); these are their parsers and checks. What the service
does with them at the end of a run is `reactor.serve.finisher`'s.
"""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path

from reactor.core.endrun import DEFAULT_STOP_FILE
from reactor.settings.parsing import Invalid, parse_text, shell_words


def stop_file_problem(value: str) -> str | None:
    """A file name pattern, matched in INPUTDIR and its parent: no folders, and it must
    not match .pod5 files (the run would end at its first file)."""
    if not value:
        return f"is empty: give a file name pattern such as {DEFAULT_STOP_FILE}"
    if "/" in value or "\x00" in value or value in (".", ".."):
        return (
            f"must be a file name pattern such as {DEFAULT_STOP_FILE}, without folders "
            f"(it is looked for in input_dir and its parent); got {value!r}"
        )
    if fnmatch.fnmatchcase("PAK00000_pass_abcdef12_0123abcd_0.pod5", value) or value.endswith(
        ".pod5"
    ):
        return f"{value!r} would match .pod5 files, so the run would end at its first file"
    return None


def parse_command_line(raw: object, from_text: bool) -> str | None:
    """A command line, split like a shell would (and run without one); blank means none."""
    text = parse_text(raw, from_text).strip()
    if not text:
        return None
    try:
        shell_words(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return text


def program_relative_to(command: str, folder: Path) -> str:
    """`command` with its program, if a relative path (`./align.sh`, `bin/align.sh`), put
    under `folder`: a command line from the config file names its program relative to
    the file's folder, like every other path there. A bare name is left to PATH."""
    program, *args = shlex.split(command)
    if "/" not in program or program.startswith("/"):
        return command
    return shlex.join([str(folder / program), *args])


def command_line_problem(value: str | None) -> str | None:
    """What is wrong with an `on_complete` command line, or None."""
    if value is None:
        return None
    try:
        words = shell_words(value)
    except ValueError as exc:
        return str(exc)
    return None if words else "is blank: give a command line, or leave it unset"
