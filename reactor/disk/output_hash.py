"""MinKNOW's `output_hash_*.csv`: the list of a run's output files, read for the
end-of-run cross-check.

MinKNOW writes it at the end of a run, one row per output file
(`runid, protocol_group_id, flow_cell_id, sample_id, file_hash, file_path, barcode,
barcode_alias`; the hash is empty for POD5 rows). `listed_pod5(run_folder, key)` reads
the POD5 rows of a run's file, and `look(run_folder, paths)` what is on disk for each:
absent, or empty. The coordinator compares the rest with what it did (`reactor.serve.
finisher`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from reactor.core.minknow import RunKey

MAX_HASH_FILE_BYTES = 64 * 2**20  # a run of 100,000 outputs is ~20 MB of rows


@dataclass
class Listed:
    """What an output hash file lists of POD5 files, and what is on disk for each."""

    source: Path
    pod5: list[PurePosixPath] = field(default_factory=list)
    missing: list[PurePosixPath] = field(default_factory=list)
    empty: list[PurePosixPath] = field(default_factory=list)
    unreadable: str | None = None


def hash_files(run_folder: Path, key: RunKey) -> list[Path]:
    """A run's output hash files (a pooled folder holds other runs' too)."""
    prefix = f"output_hash_{key}"
    try:
        names = os.listdir(run_folder)
    except OSError:
        return []
    return sorted(run_folder / n for n in names if n.startswith(prefix) and n.endswith(".csv"))


def listed_pod5(run_folder: Path, key: RunKey) -> Listed | None:
    """The POD5 rows of the run's output hash file, each looked at on disk; None when the
    run has no such file."""
    files = hash_files(run_folder, key)
    if not files:
        return None
    listed = Listed(files[0])
    try:
        with files[0].open("rb") as raw:
            data = raw.read(MAX_HASH_FILE_BYTES + 1)
    except OSError as exc:
        listed.unreadable = exc.strerror or str(exc)
        return listed
    if len(data) > MAX_HASH_FILE_BYTES:
        listed.unreadable = f"larger than {MAX_HASH_FILE_BYTES // 2**20} MB"
        return listed
    rows = csv.DictReader(io.StringIO(data.decode("utf-8", errors="replace")))
    for row in rows:
        path = (row.get("file_path") or "").strip()
        if not path.endswith(".pod5"):
            continue
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            continue  # not a path inside the run folder: not looked at
        listed.pod5.append(relative)
        try:
            size = (run_folder / relative).stat().st_size
        except OSError:
            listed.missing.append(relative)
            continue
        if size == 0:
            listed.empty.append(relative)
    return listed
