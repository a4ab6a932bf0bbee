"""End of run, the pure part: when a run is complete, its phase and the command's env.

Issue #5, part 4. MinKNOW writes `final_summary_*.txt` into the run folder once every
`.pod5` of the run is written (PRODUCT.md, "Facts of the field"); reactor calls that
"sequencing finished". The run is *complete* when, in addition, no file is incomplete,
ready or assigned and no job is live: every file is done or quarantined. At that point
reactor logs `run_complete` and runs the `on_complete` command once (the seed's users
started their alignment pipelines there, by hand or from a script polling /heartbeat).

This module decides; `reactor.finisher` does the I/O (looking for the stop file,
writing the marker, running the command). Nothing here reads a clock or the disk:

- `RunEnd` holds what is known so far (stop file seen? end-of-run reconcile done?
  complete?). The `Reactor` owns one; the finisher sets its flags.
- `next_step(run_end, pending_files, live_jobs)` says what to do next: wait, reconcile
  once (so a `.pod5` written just before the summary, whose event is still on its way,
  is counted before the run is judged), or declare the run complete.
- `phase_of(ready, run_end)` is what /status shows: starting, running, finishing,
  complete. A complete run stays complete (also while the service stops): files that
  arrive afterwards are basecalled, each logged `file_after_run_end`, but they do not
  reopen the run and `on_complete` is not run again.
- `run_env(...)` is the command's environment. (The marker, the record that makes
  `on_complete` run at most once across restarts, is `reactor.marker`.)
- `stop_file_problem`, `parse_command_line`, `command_line_problem`,
  `program_relative_to`: the checks of the `stop_file` and `on_complete` settings, used
  by `reactor.config`.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from reactor.settings import Invalid, parse_text

# Not passed on to the command: secrets it has no use for (it gets the run's folders and
# counts instead), and systemd's notify and watchdog variables, which name the service:
# a command that used them (anything built on sd_notify does) would speak for reactor,
# such as READY=1, STOPPING=1 or a watchdog ping from a process that is not reactor.
_PRIVATE_ENV = (
    "REACTOR_TOKEN",
    "REACTOR_ENGINE_TOKEN",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)
RUN_ENV_PREFIX = "REACTOR_RUN_"
DEFAULT_STOP_FILE = "final_summary_*.txt"  # what MinKNOW writes once a run's files are written


class Phase(StrEnum):
    STARTING = "starting"  # recovery and the start-up scan are not done
    RUNNING = "running"  # sequencing goes on: no stop file yet
    FINISHING = "finishing"  # the stop file is there, work remains
    COMPLETE = "complete"  # the stop file is there and every file is done or quarantined


class Step(StrEnum):
    WAIT = "wait"  # no stop file yet, or work remains
    RECONCILE = "reconcile"  # stop file just seen: scan INPUTDIR once before judging
    COMPLETE = "complete"  # declare the run complete (log, marker, on_complete)
    NOTHING = "nothing"  # already complete


@dataclass(slots=True)
class RunEnd:
    """What is known about the end of the run. Once set, a flag stays set."""

    stop_file: Path | None = None  # the stop file found (None: not seen yet)
    reconciled: bool = False  # the end-of-run reconcile ran (files after it are late)
    complete: bool = False


def next_step(run_end: RunEnd, *, pending_files: int, live_jobs: int) -> Step:
    """What the finisher does next. `pending_files`: incomplete + ready + assigned."""
    if run_end.complete:
        return Step.NOTHING
    if run_end.stop_file is None:
        return Step.WAIT
    if not run_end.reconciled:
        return Step.RECONCILE
    if pending_files or live_jobs:
        return Step.WAIT
    return Step.COMPLETE


def phase_of(ready: bool, run_end: RunEnd) -> Phase:
    """The run's phase for /status. A complete run stays complete while the service
    stops (ready goes false then), so a last /status does not say "starting"."""
    if run_end.complete:
        return Phase.COMPLETE
    if not ready:
        return Phase.STARTING
    return Phase.FINISHING if run_end.stop_file is not None else Phase.RUNNING


def stop_file_matcher(pattern: str) -> re.Pattern[str]:
    """`pattern` (shell-style, case-sensitive) as a compiled regex, for many names."""
    return re.compile(fnmatch.translate(pattern))


# --------------------------------------------------------------------------- settings
# Parsers and checks of the stop_file and on_complete keys (their table is reactor.config's).


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
        shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        msg = f"{text!r} cannot be split into arguments ({exc}); check its quotes"
        raise Invalid(msg) from None
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
    if value is None:
        return None
    try:
        words = shlex.split(value)
    except ValueError as exc:
        return f"{value!r} cannot be split into arguments ({exc}); check its quotes"
    return None if words else "is blank: give a command line, or leave it unset"


# --------------------------------------------------------------------------- env


def run_env(
    base: Mapping[str, str],
    *,
    input_dir: Path,
    output_dir: Path,
    stop_file: Path,
    marker: Path,
    counts: Mapping[str, int],
) -> dict[str, str]:
    """on_complete's environment: `base` without secrets and systemd's notify variables,
    plus REACTOR_RUN_* (absolute paths; counts as decimal text)."""
    env = {key: value for key, value in base.items() if key not in _PRIVATE_ENV}
    output = output_dir.absolute()
    env.update(
        REACTOR_RUN_INPUT_DIR=str(input_dir.absolute()),
        REACTOR_RUN_OUTPUT_DIR=str(output),
        REACTOR_RUN_PASS_DIR=str(output / "pass"),
        REACTOR_RUN_FAIL_DIR=str(output / "fail"),
        REACTOR_RUN_DIR=str(stop_file.absolute().parent),
        REACTOR_RUN_STOP_FILE=str(stop_file.absolute()),
        REACTOR_RUN_FILES_DONE=str(counts.get("done", 0)),
        REACTOR_RUN_FILES_QUARANTINED=str(counts.get("quarantined", 0)),
        REACTOR_RUN_MARKER=str(marker.absolute()),
    )
    return env
