"""Recovery's look at INPUTDIR: listed when nothing else lists it (host mode's folder of
job folders), looked up by name when the start-up scan lists it anyway (docs/journal.md,
"Recovery at start")."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.core.names import INPUT_STAGING_NAME
from reactor.disk.journal import Journal
from reactor.disk.recovery import recover
from tests.support.runs import RunDirs


def a_stray_and_leftovers(dirs: RunDirs) -> Path:
    """A folder of links no record names, and staging leftovers of both kinds."""
    (dirs.input_dir / "f.pod5").write_bytes(b"")
    stray = dirs.input_dir / "ASSIGNED_5150_nobody"
    stray.mkdir()
    (stray / "f.pod5").symlink_to("../f.pod5")
    (dirs.input_dir / INPUT_STAGING_NAME / "9").mkdir(parents=True)
    (dirs.input_dir / ".reactor-staging-8").mkdir()
    return stray


@pytest.mark.parametrize("scan_lists_inputs", [False, True])
def test_recovery_settles_what_it_lists_and_leaves_the_rest_to_the_scan(
    run_dirs: RunDirs, *, scan_lists_inputs: bool
) -> None:
    """Listing INPUTDIR, recovery reports the stray and removes every staging leftover;
    leaving the listing to the scan, it empties only its own staging folder (by name)
    and reports nothing it has not looked at."""
    config = run_dirs.config()
    for start in ("first", "again"):  # the first makes the state folder: no take-over
        if start == "again":
            stray = a_stray_and_leftovers(run_dirs)
        journal = Journal(config.input_dir, config.output_dir)
        try:
            recovered = recover(journal, 0.0, 60.0, scan_lists_inputs=scan_lists_inputs)
        finally:
            journal.close()
    staged = ("staging_removed", f"{INPUT_STAGING_NAME}/9")
    if scan_lists_inputs:
        assert recovered.repairs == [staged]
        assert (run_dirs.input_dir / ".reactor-staging-8").is_dir()
    else:
        older = ("staging_removed", ".reactor-staging-8")
        stray_found = ("links_without_record", stray.name)
        assert sorted(recovered.repairs) == sorted([staged, older, stray_found])
        assert not (run_dirs.input_dir / ".reactor-staging-8").exists()
    assert (stray / "f.pod5").is_symlink()
    assert list((run_dirs.input_dir / INPUT_STAGING_NAME).iterdir()) == []
