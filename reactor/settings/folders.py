"""Is a folder setting a folder? One answer for serve, the engine and `reactor check`.

Each names what is wrong and what to do about it, so that `serve`, `reactor engine` and
`reactor check` word the same problem the same way.
"""

from __future__ import annotations

import stat
from pathlib import Path


def folder_problem(path: Path, key: str, *, fix: str | None = None) -> tuple[str, str] | None:
    """(what is wrong, what to do) when `path`, the value of `key`, is not a folder this
    user can reach; None when it is one. `fix` replaces the advice for a missing path or
    one that is not a folder (an engine's folders are the manager's, mounted here)."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return f"{path} does not exist", fix or f"create it, or point {key} at an existing folder"
    except OSError as err:
        return (
            f"{path} cannot be reached ({err.strerror or err})",
            "check the permissions of its parent folders",
        )
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder", fix or f"point {key} at a folder"
    return None
