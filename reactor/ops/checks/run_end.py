"""`reactor check`'s checks of the end of run: the on_complete program and the run folder.

Like those of `reactor.ops.checks.folders`, each returns a `CheckResult` and neither prints nor
raises. `on_complete` is checked as serve checks it at start (`reactor.settings.programs`), so
a command serve would refuse fails here too. The run folder is INPUTDIR's parent, where
MinKNOW writes `final_summary_*.txt` (`reactor.disk.stop_file`): if this user cannot list it,
serve still runs, but only a stop file inside INPUTDIR ends the run.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from reactor.ops.checks.result import CheckResult, Status, strerror
from reactor.settings.programs import FIX, find_program, program_missing
from reactor.settings.serve import ServeConfig


def check_on_complete(config: ServeConfig) -> CheckResult:
    """The on_complete program is found and executable, or no command is set."""
    name = "on_complete"
    if config.on_complete is None:
        return CheckResult(name, Status.OK, "not set: nothing is run when the run is complete")
    program = shlex.split(config.on_complete)[0]
    found = find_program(program)
    if found is None:
        return CheckResult(
            name,
            Status.FAIL,
            f"on_complete {program_missing(program)}: reactor serve refuses to start",
            FIX,
        )
    return CheckResult(name, Status.OK, f"runs {found} when the run is complete")


def check_run_folder(input_dir: Path, stop_file: str) -> CheckResult:
    """INPUTDIR's parent can be listed, so a stop file there is found."""
    name = "run folder"
    folder = input_dir.absolute().parent
    try:
        with os.scandir(folder):
            pass
    except OSError as err:
        return CheckResult(
            name,
            Status.WARN,
            f"{folder}, input_dir's parent, cannot be listed by this user (uid "
            f"{os.geteuid()}): {strerror(err)}; a {stop_file} there (where MinKNOW "
            "writes it) would not be seen, only one inside input_dir",
            f"give this user read access (setfacl -m u:USER:rx {folder})",
        )
    return CheckResult(name, Status.OK, f"{folder} can be listed: {stop_file} is looked for there")
