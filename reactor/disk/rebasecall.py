"""Setting a run's outputs aside to basecall it again with new parameters.

A person changes a run's pinned parameters and asks for its files to be basecalled
again (`reactor run params RUN --set … --rebasecall`). So that `pass/` and `fail/` end
with every read once, with the new parameters, the old outputs and the records of the
jobs that made them go aside first, under a generation number:

    OUTPUTDIR/superseded/<g>/pass, …/fail     the outputs of the old parameters (and
                                              fastq_pass/, … in MinKNOW's layout)
    OUTPUTDIR/.reactor/superseded-<g>/        the records of the jobs that made them

The decision is recorded first (`run/params.json`, `rebasecall.state = started`); then
`set_aside` (each step skipped when done already, so a start after a crash finishes
it); then the record says `finished`. Recovery never reads the records set aside, so
after a restart the files have no record and are basecalled again. Synchronous, on the
caller's thread (the service: its writer's).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from reactor.core.minknow import MINKNOW_OUTPUTS
from reactor.core.model import JobState
from reactor.core.names import RESULT_FOLDERS
from reactor.disk.durable import fsync_folder
from reactor.disk.state_dir import JOBS, STATE_NAME

SUPERSEDED = "superseded"


def set_aside(output_dir: Path, generation: int) -> int:
    """Move pass/ and fail/ under superseded/<generation>/ (fresh ones made) and the done
    jobs' records out of the state folder's jobs/; how many records. Idempotent."""
    target = output_dir / SUPERSEDED / str(generation)
    target.mkdir(parents=True, exist_ok=True)
    fsync_folder(target.parent)
    for kind in RESULT_FOLDERS:
        if not (target / kind).exists() and (output_dir / kind).is_dir():
            (output_dir / kind).rename(target / kind)
        (output_dir / kind).mkdir(exist_ok=True)
    for kind in MINKNOW_OUTPUTS:  # the outputs in MinKNOW's layout: made again by merges
        if not (target / kind).exists() and (output_dir / kind).is_dir():
            (output_dir / kind).rename(target / kind)
    fsync_folder(target)
    fsync_folder(output_dir)
    state = output_dir / STATE_NAME
    jobs = state / JOBS
    aside = state / f"{SUPERSEDED}-{generation}"
    aside.mkdir(mode=0o700, exist_ok=True)
    moved = 0
    for name in sorted(os.listdir(jobs)):
        path = jobs / name
        with contextlib.suppress(OSError, ValueError):
            if path.is_symlink() or not path.is_file():
                continue
            if json.loads(path.read_text()).get("state") == str(JobState.DONE):
                path.rename(aside / name)
                moved += 1
    fsync_folder(aside)
    fsync_folder(jobs)
    fsync_folder(state)
    return moved
