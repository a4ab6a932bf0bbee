"""Runs found under a watch root, on real folders laid out as MinKNOW lays them out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reactor.core.minknow import RunKey
from reactor.disk.runs import find_runs, read_run_folder, started_at

PRID = "fd97ea7b"
RUNID = "0f1d7e9e"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def run_folder(root: Path, group: str, sample: str, fc: str, prid: str, **kw: bool) -> Path:
    folder = root / group / sample / f"20261205_1412_1A_{fc}_{prid}"
    touch(folder / "pod5" / f"{fc}_{prid}_{RUNID}_0.pod5")
    touch(folder / "queued_reads" / "x.pod5")
    touch(folder / f"sample_sheet_{fc}_20261205_1412_{prid}.csv")
    if kw.get("older"):
        touch(folder / "pod5_pass" / "barcode01" / f"{fc}_pass_barcode01_{prid}_{RUNID}_0.pod5")
        touch(folder / "pod5_fail" / f"{fc}_fail_{prid}_{RUNID}_0.pod5")
    if kw.get("skip"):
        touch(folder / "pod5_skip" / f"{fc}_skip_{prid}_{RUNID}_0.pod5")
    if kw.get("complete"):
        touch(folder / f"final_summary_{fc}_{prid}_{RUNID}.txt")
    return folder


def test_runs_are_found_at_minknows_depth_with_their_pod5_folders(tmp_path: Path) -> None:
    live = run_folder(tmp_path, "grp", "s1", "PAW00001", "aaaaaaaa")
    old = run_folder(tmp_path, "grp", "s1", "PAW00002", "bbbbbbbb", older=True, complete=True)
    skip = run_folder(tmp_path, "grp2", "s2", "PAW00003", "cccccccc", skip=True)
    # what is not a run: hidden folders, a run folder at the wrong depth, odd names,
    # a file named like a run folder, a link to a run
    run_folder(tmp_path, ".trash", "s1", "PAW00009", "99999999")
    run_folder(tmp_path / "grp", "deep", "x", "PAW00008", "88888888")
    touch(tmp_path / "grp" / "s1" / "notes" / "pod5" / "PAW00007_77777777_0f1d7e9e_0.pod5")
    touch(tmp_path / "grp" / "s1" / "20261205_1412_1A_PAW00006_66666666")
    (tmp_path / "grp" / "s1" / "20261205_1412_1A_PAW00005_55555555").symlink_to(live)

    survey = find_runs(tmp_path)

    found = {str(run.key): run for run in survey.runs}
    assert sorted(found) == ["PAW00001_aaaaaaaa", "PAW00002_bbbbbbbb", "PAW00003_cccccccc"]
    assert found["PAW00001_aaaaaaaa"].folder == live
    assert str(found["PAW00001_aaaaaaaa"].relative) == f"grp/s1/{live.name}"
    assert found["PAW00001_aaaaaaaa"].pod5_folders == ("pod5",)
    assert not found["PAW00001_aaaaaaaa"].complete
    assert found["PAW00002_bbbbbbbb"].pod5_folders == ("pod5", "pod5_fail", "pod5_pass")
    assert found["PAW00002_bbbbbbbb"].complete
    assert found["PAW00003_cccccccc"].folder == skip
    assert found["PAW00003_cccccccc"].pod5_folders == ("pod5", "pod5_skip")
    assert not any(run.pooled for run in survey.runs)
    assert survey.unreadable == []
    assert old.name.startswith("20261205_1412")


def test_a_final_summary_of_another_run_does_not_complete_this_one(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "g", "s", "PAW00001", "aaaaaaaa")
    touch(folder / f"final_summary_PAW00001_bbbbbbbb_{RUNID}.txt")
    touch(folder / "final_summary_PAW00001_aaaaaaaa.txt.partial")
    run = read_run_folder(tmp_path, folder)
    assert run is not None and not run.complete


def test_a_pooled_sample_folder_holds_several_runs_told_apart_by_names(tmp_path: Path) -> None:
    sample = tmp_path / "g" / "pooled"
    touch(sample / "pod5" / f"PAW00001_aaaaaaaa_{RUNID}_0.pod5")
    touch(sample / "pod5" / f"PAW00001_aaaaaaaa_{RUNID}_1.pod5")
    touch(sample / "pod5" / "barcode02" / f"PAW00002_pass_barcode02_bbbbbbbb_{RUNID}_0.pod5")
    touch(sample / "pod5" / "unrelated.pod5")
    touch(sample / f"final_summary_PAW00002_bbbbbbbb_{RUNID}.txt")
    ordinary = run_folder(tmp_path, "g", "pooled", "PAW00003", "cccccccc")

    runs = find_runs(tmp_path).runs

    assert [(str(r.key), r.pooled, r.complete, r.folder) for r in runs] == [
        ("PAW00003_cccccccc", False, False, ordinary),
        ("PAW00001_aaaaaaaa", True, False, sample),
        ("PAW00002_bbbbbbbb", True, True, sample),
    ]
    assert runs[1].started is None  # pooled, not complete: nothing dates it
    summary = sample / f"final_summary_PAW00002_bbbbbbbb_{RUNID}.txt"
    assert runs[2].started == summary.stat().st_mtime  # pooled, complete: its summary does
    assert str(runs[1].relative) == "g/pooled"


def test_start_time_and_activity(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "g", "s", "PAW00001", "aaaaaaaa")
    run = read_run_folder(tmp_path, folder)
    assert run is not None
    assert run.key == RunKey("PAW00001", "aaaaaaaa")
    assert run.started == time.mktime((2026, 12, 5, 14, 12, 0, 0, 0, -1))
    assert started_at("20261205_1412") == run.started
    os.utime(folder, (1000.0, 1000.0))
    os.utime(folder / "pod5", (2000.0, 2000.0))
    assert run.active() == 2000.0
    # a date that does not exist gives no start time, not an error
    bad = tmp_path / "g" / "s" / "20261399_2599_1A_PAW00004_dddddddd"
    bad.mkdir()
    found = read_run_folder(tmp_path, bad)
    assert found is not None and found.started is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder, whatever its mode")
def test_a_folder_that_cannot_be_read_is_passed_over_with_its_reason(tmp_path: Path) -> None:
    run_folder(tmp_path, "g", "s", "PAW00001", "aaaaaaaa")
    locked = run_folder(tmp_path, "g", "locked", "PAW00002", "bbbbbbbb").parent
    locked.chmod(0)
    try:
        survey = find_runs(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [str(r.key) for r in survey.runs] == ["PAW00001_aaaaaaaa"]
    assert [path for path, _ in survey.unreadable] == [locked]
