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
