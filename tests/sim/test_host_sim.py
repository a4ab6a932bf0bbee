"""The host simulator writes what MinKNOW writes on a host, and what reactor finds there
is what it wrote: four runs in three layouts, files moved in from tmp/, a final summary
and an output hash per run."""

from __future__ import annotations

import csv
from pathlib import Path

from reactor.cli import main
from reactor.core.minknow import final_summary_key, parse_pod5_name
from reactor.disk.runs import find_runs
from tests.support.exactly_once import pod5_read_ids


def test_a_simulated_host_is_found_as_four_runs_in_minknows_layouts(tmp_path: Path) -> None:
    root = tmp_path / "data"
    code = main([
        "simulate-run", str(root), "--flow-cells", "4", "--files", "5", "--reads-per-file",
        "3", "--interval", "0", "--stagger", "0", "--quiet",
    ])  # fmt: skip
    assert code == 0
    runs = {str(run.key): run for run in find_runs(root).runs}
    assert len(runs) == 4
    layouts = sorted((run.pooled, run.pod5_folders) for run in runs.values())
    assert layouts == [
        (False, ("pod5",)),
        (False, ("pod5_pass",)),
        (True, ("pod5",)),
        (True, ("pod5",)),
    ]
    assert all(run.complete for run in runs.values())
    for key, run in runs.items():
        files = [
            path
            for path in run.folder.glob("pod5*/**/*.pod5")
            if (parsed := parse_pod5_name(path.name)) is not None and str(parsed.key) == key
        ]
        assert len(files) == 5, key
        assert all(len(pod5_read_ids(path)) == 3 for path in files)
        (summary,) = [
            p
            for p in run.folder.glob("final_summary_*.txt")
            if final_summary_key(p.name) == run.key
        ]
        text = summary.read_text()
        assert "pod5_files_in_final_dest=5\n" in text
        (hashes,) = run.folder.glob(f"output_hash_{key}_*.csv")
        rows = list(csv.DictReader(hashes.read_text().splitlines()))
        assert sorted(run.folder / row["file_path"] for row in rows) == sorted(files)
        assert all(row["file_hash"] == "" for row in rows)  # empty for POD5 rows, as MinKNOW
        assert not list((run.folder / "tmp").iterdir()), "every file was moved out of tmp/"
    barcoded = next(run for run in runs.values() if run.pod5_folders == ("pod5_pass",))
    assert sorted(p.name for p in (barcoded.folder / "pod5_pass").iterdir()) == [
        "barcode01", "barcode02", "barcode03",
    ]  # fmt: skip


def test_a_second_play_on_the_same_root_and_seed_is_refused(tmp_path: Path) -> None:
    args = ["simulate-run", str(tmp_path), "--flow-cells", "1", "--files", "1",
            "--interval", "0", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 2
