"""End of run, the pure part: when a run is complete, its phase and the command's env.

MinKNOW writes `final_summary_*.txt` into the run folder once every `.pod5` of the run
is written (docs/architecture.md, "End of run"); reactor calls that
"sequencing finished". The run is *complete* when, in addition, no file is incomplete,
ready or assigned and no job is live: every file is done or quarantined. At that point
reactor logs `run_complete` and runs the `on_complete` command once (the seed's users
started their alignment pipelines there, by hand or from a script polling /heartbeat).

This module decides; `reactor.serve.finisher` does the I/O (looking for the stop file,
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
  `on_complete` run at most once across restarts, is `reactor.disk.marker`.)
- `stop_file_matcher` and `stop_file_filter`: the `stop_file` pattern as a regex and as
  the watcher's predicate. (The checks of the `stop_file` and `on_complete` settings
  are `reactor.settings.run_end`'s.)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePath

from reactor.core.environment import child_environment
from reactor.core.events import Change, PathFilter

RUN_ENV_PREFIX = "REACTOR_RUN_"
DEFAULT_STOP_FILE = "final_summary_*.txt"  # what MinKNOW writes once a run's files are written


class Phase(StrEnum):
    STARTING = "starting"  # recovery and the start-up scan are not done
    # recovery is done and files known ready are handed out; the start-up scan goes on
    SCANNING = "scanning"
    RUNNING = "running"  # sequencing goes on: no stop file yet
    FINISHING = "finishing"  # the stop file is there, work remains
    COMPLETE = "complete"  # the stop file is there and every file is done or quarantined
    STALLED = "stalled"  # nothing happened for stall_after and nothing is waiting for an engine


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
    stalled: bool = False  # quiet too long (cleared when something happens again)
    closed: str | None = None  # closed by a person (`reactor run close`), with the reason


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


def phase_of(ready: bool, run_end: RunEnd, *, scanning: bool = False) -> Phase:
    """The run's phase for /status. A complete run stays complete while the service
    stops (ready goes false then), so a last /status does not say "starting"."""
    if run_end.complete:
        return Phase.COMPLETE
    if not ready:
        return Phase.SCANNING if scanning else Phase.STARTING
    if run_end.stalled:
        return Phase.STALLED
    return Phase.FINISHING if run_end.stop_file is not None else Phase.RUNNING


def is_stalled(*, quiet_s: float, stall_after_s: float, ready: int, live_jobs: int) -> bool:
    """A run is stalled when nothing happened to it for `stall_after_s` (no file event,
    no assignment, no report) while nothing waits for an engine: MinKNOW crashed (no
    final summary, reads left in queued_reads/), or a file stays incomplete for good (a
    truncated POD5 keeps a run finishing). 0 turns it off."""
    return stall_after_s > 0 and quiet_s >= stall_after_s and ready == 0 and live_jobs == 0


def stop_file_matcher(pattern: str) -> re.Pattern[str]:
    """`pattern` (shell-style, case-sensitive) as a compiled regex, for many names."""
    return re.compile(fnmatch.translate(pattern))


def stop_file_filter(pattern: str) -> PathFilter:
    """Watcher predicate: a stop file appeared (deletions are not interesting: once
    seen, the stop file counts even if a person moves it away)."""
    matcher = stop_file_matcher(pattern)

    def accept(change: Change, path: PurePath) -> bool:
        return change is not Change.GONE and matcher.match(path.name) is not None

    return accept


# --------------------------------------------------------------------------- env


def run_env(
    base: Mapping[str, str],
    *,
    input_dir: Path,
    output_dir: Path,
    stop_file: Path | None,
    marker: Path,
    counts: Mapping[str, int],
    run_dir: Path | None = None,
    end: str = "complete",
) -> dict[str, str]:
    """on_complete's environment: `base` without secrets and systemd's notify variables,
    plus REACTOR_RUN_* (absolute paths; counts as decimal text). A run closed by hand
    has no stop file: REACTOR_RUN_STOP_FILE is empty, REACTOR_RUN_END says why."""
    env = child_environment(base)
    output = output_dir.absolute()
    env.update(
        REACTOR_RUN_INPUT_DIR=str(input_dir.absolute()),
        REACTOR_RUN_OUTPUT_DIR=str(output),
        REACTOR_RUN_PASS_DIR=str(output / "pass"),
        REACTOR_RUN_FAIL_DIR=str(output / "fail"),
        REACTOR_RUN_DIR=str(
            (run_dir or (stop_file.parent if stop_file else input_dir.parent)).absolute()
        ),
        REACTOR_RUN_STOP_FILE="" if stop_file is None else str(stop_file.absolute()),
        REACTOR_RUN_END=end,
        REACTOR_RUN_FILES_DONE=str(counts.get("done", 0)),
        REACTOR_RUN_FILES_QUARANTINED=str(counts.get("quarantined", 0)),
        REACTOR_RUN_MARKER=str(marker.absolute()),
    )
    return env
