"""Finding the stop file: the listing of INPUTDIR and its parent.

The stop file (`stop_file`, MinKNOW's `final_summary_*.txt` by default) says sequencing
has finished. It appears in INPUTDIR or, with MinKNOW's layout, in INPUTDIR's parent,
the run folder. `reactor.serve.finisher` decides when to look; this module only looks.
"""

from __future__ import annotations

import os
from pathlib import Path

from reactor.core.endrun import stop_file_matcher


def find_stop_file(input_dir: Path, pattern: str, *, in_input: bool = True) -> Path | None:
    """The first file matching `pattern` in INPUTDIR (unless `in_input` is False) or its
    parent (by name), or None. Listing INPUTDIR costs O(files) (a site may keep a million
    there), listing the run folder next to nothing."""
    matcher = stop_file_matcher(pattern)
    folder = input_dir.absolute()
    places = (folder, folder.parent) if in_input else (folder.parent,)
    for place in dict.fromkeys(places):
        try:
            with os.scandir(place) as entries:
                names = sorted(e.name for e in entries if matcher.match(e.name) and e.is_file())
        except OSError:  # the parent may not be readable: then only INPUTDIR counts
            continue
        if names:
            return place / names[0]
    return None
