"""Finding the stop file: the watcher's predicate for its events, and the folder listing.

The stop file (`stop_file`, MinKNOW's `final_summary_*.txt` by default) says sequencing
has finished. It appears in INPUTDIR or, with MinKNOW's layout, in INPUTDIR's parent,
the run folder. `reactor.finisher` decides when to look; this module only looks.
"""

from __future__ import annotations

import os
from pathlib import Path

from reactor.endrun import stop_file_matcher
from reactor.watcher import Change, PathFilter


def stop_file_filter(pattern: str) -> PathFilter:
    """Watcher predicate: a stop file appeared (deletions are not interesting: once
    seen, the stop file counts even if a person moves it away)."""
    matcher = stop_file_matcher(pattern)

    def accept(change: Change, path: Path) -> bool:
        return change is not Change.GONE and matcher.match(path.name) is not None

    return accept


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
