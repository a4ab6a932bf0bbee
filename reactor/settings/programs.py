"""Is a program there to run? One answer for every command a setting names.

serve's `on_complete` and the engine's `command` each name a program. Both are looked
for when the settings are loaded, not when the command is first needed (at the end of
a two-day run, or at an engine's first batch), and both say the same thing when it is
missing. A bare name is looked up on PATH; a relative path (`./align.sh`) is taken from
the working directory; either way the program found is given by its absolute path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FIX = "install it, give its full path, or fix the command"


def find_program(program: str) -> str | None:
    """The absolute path of an executable `program`: a bare name is looked up on PATH, a
    relative path from the working directory. None if there is no such executable."""
    found = shutil.which(program)
    return None if found is None else str(Path(found).absolute())


def program_missing(program: str) -> str:
    """Why `find_program` found nothing, in words for a person (without the fix)."""
    if "/" not in program:
        return f"program {program!r} is not found on PATH or is not executable"
    where = f" ({Path(program).absolute()})" if not program.startswith("/") else ""
    return f"program {program!r}{where} is not found or is not executable"
