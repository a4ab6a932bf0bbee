"""Crash torture, quick setting: the server is `kill -9`ed every round while files arrive
and engines work (and some engines are killed too); every read must still come out exactly
once. `make torture` runs the long version (500 rounds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.system.torture import quarantined_names

ROUNDS = 6


def test_quarantined_names_lists_the_files_of_failed_and_unknown_folders(tmp_path: Path) -> None:
    """FAILED_ and UNKNOWN_ folders hold quarantined files; ASSIGNED_ ones do not."""
    for folder, name in [
        ("FAILED_3_gpu0", "a.pod5"),
        ("UNKNOWN_4_gpu1", "b.pod5"),
        ("ASSIGNED_5_gpu2", "c.pod5"),
    ]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).symlink_to(Path("..") / name)
    assert quarantined_names(tmp_path) == ["a.pod5", "b.pod5"]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_of_the_server_every_round_loses_and_duplicates_no_read(tmp_path: Path) -> None:
    """6 rounds of kill -9 + restart during a live run with 3 engines: verdict good."""
    figures_path = tmp_path / "torture.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.system.torture",
            "--rounds", str(ROUNDS), "--seed", "7",
            "--files", "20", "--reads-per-file", "5", "--engines", "3",
            "--engine-kill-rate", "0.5",
            "--workdir", str(tmp_path / "run"), "--json", str(figures_path),
        ],
        capture_output=True, text=True, timeout=140, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(figures_path.read_text())
    assert figures["ok"], figures
    assert figures["verdict"] == "good"
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
    assert figures["not_in_any_pod5"] == 0
    assert figures["quarantined"]["unaccounted"] == 0
    assert figures["rounds"] == ROUNDS
    assert figures["kills"]["server"] == ROUNDS, "every round must really kill the server"
    assert figures["files"] >= 20
    assert figures["reads"] == figures["files"] * 5
    assert "every read exactly once" in result.stdout


HOSTILE_ROUNDS = 4


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_kill_9_with_a_hostile_engine_merges_no_spoiled_folder_and_loses_no_read(
    tmp_path: Path,
) -> None:
    """The quick hostile setting: 4 rounds of kill -9 with 2 engines and a hostile one
    that mishandles every batch it takes (pass/ a link to INPUTDIR, a link leading out,
    its folder removed, a DONE long after its lease, in turn). No spoiled folder is
    merged, the refused files are basecalled by the others, every read exactly once,
    and nothing outside the run's job folders is touched."""
    figures_path = tmp_path / "torture.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.system.torture",
            "--rounds", str(HOSTILE_ROUNDS), "--seed", "3",
            "--files", "12", "--reads-per-file", "3", "--engines", "2",
            "--hostile-every", "1", "--drain-timeout", "15",
            "--workdir", str(tmp_path / "run"), "--json", str(figures_path),
        ],
        capture_output=True, text=True, timeout=27, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(figures_path.read_text())
    assert figures["ok"], figures
    assert (figures["lost"], figures["duplicated"], figures["not_in_any_pod5"]) == (0, 0, 0)
    assert figures["kills"]["server"] == HOSTILE_ROUNDS
    assert figures["outside_touched"] == []
    hostile = figures["hostile"]
    assert hostile["spoiled_merged"] == 0
    assert hostile["batches"].get("pass-link", 0) >= 1, hostile
    assert hostile["answers"].get("refused", 0) >= 1, hostile
    assert hostile["refused"]["jobs"] >= 1
    assert hostile["refused"]["reads_not_exactly_once"] == 0
    assert hostile["held_at_end"] >= hostile["refused"]["jobs"]
    assert "every read exactly once" in result.stdout
