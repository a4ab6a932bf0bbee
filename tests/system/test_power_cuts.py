"""Power cuts of a real `reactor serve`, on a filesystem that keeps only what was fsynced
(tests/support/powercut_fs.py): an answer an engine got is still true after the power
comes back, with `durability = fsync`; with `none`, a cut takes back what was answered.
Then the power-cut torture, quick setting (`make torture-power` runs 200 cuts).

Each cut kills the server with SIGKILL first (the host's processes die with the power),
then the filesystem drops everything not durable, strictly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.exactly_once import output_read_names
from tests.support.paths import REPO
from tests.support.pod5files import read_ids, write_pod5
from tests.support.powercut import PowercutMount, powercut_fs, require_powercut
from tests.support.served import ServedRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class PowerRun(ServedRun):
    """A served run whose folders are on the power-cut mount (its logs are not)."""

    settings: ClassVar[dict[str, object]] = {**ServedRun.settings, "report_back_interval": 60.0}

    def __init__(self, fs: PowercutMount, logs: Path, durability: str) -> None:
        super().__init__(fs.mount)
        self.fs = fs
        self.logs = logs
        logs.mkdir(exist_ok=True)
        self.settings = {**self.settings, "durability": durability}
        fs.sync()  # the run folders themselves exist before the service starts

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as reply:  # noqa: S310
            result: dict[str, Any] = json.load(reply)
            return result

    def power_cut(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server.wait(timeout=30)
        self.fs.cut()


@pytest.fixture(params=["fsync", "none"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PowerRun]:
    with powercut_fs(tmp_path) as fs:
        served = PowerRun(fs, tmp_path / "logs", request.param)
        try:
            yield served
        finally:
            served.stop_server()


def _inputs(run: PowerRun, count: int) -> dict[str, list[str]]:
    """`count` files in INPUTDIR, durable before the service starts; their read ids."""
    reads = {}
    for number in range(count):
        name = f"PAK00000_pass_abc_def_{number}.pod5"
        write_pod5(run.input_dir / name, n_reads=3, seed=number)
        reads[name] = read_ids(run.input_dir / name)
    run.fs.sync()
    return reads


def _basecall(run: PowerRun, job: dict[str, Any], reads: dict[str, list[str]]) -> None:
    """What an engine writes (without fsync, as basecallers do): a FASTQ per file."""
    out = run.output_dir / job["job_output_dir"] / "pass"
    for name in job["batch"]:
        records = "".join(f"@{read}\nACGT\n+\n!!!!\n" for read in reads[name])
        (out / f"{name.removesuffix('.pod5')}.fastq").write_text(records)


def test_an_assignment_answered_survives_a_power_cut(run: PowerRun) -> None:
    """The engine was told its job: after the cut, with fsync, the job is still its
    (live, with its folders), so its DONE is taken; with none the job is gone."""
    reads = _inputs(run, 4)
    run.start_server()
    job = run.get("/assignwork", engineid="gpu0", batchsize="2")
    assert len(job["batch"]) == 2
    run.power_cut()
    run.start_server()
    status = run.status()
    folders = [run.input_dir / job["job_input_dir"], run.output_dir / job["job_output_dir"]]
    if run.settings["durability"] == "none":
        assert status["files"]["assigned"] == 0
        assert not any(folder.exists() for folder in folders)
        return
    assert status["files"]["assigned"] == 2
    assert all(folder.is_dir() for folder in folders)
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(job["batch"])
    _basecall(run, job, reads)
    assert run.get("/completed", job_id=job["jobid"], job_state="DONE") == {"ok": True}


def test_a_done_answered_survives_a_power_cut_with_its_outputs_whole(run: PowerRun) -> None:
    """The engine was told its DONE was taken (and may delete its copy): after the cut,
    with fsync, its reads are in pass/ exactly once, whole, though the engine never
    fsynced them; with none the cut took the whole job back."""
    reads = _inputs(run, 2)
    run.start_server()
    job = run.get("/assignwork", engineid="gpu0", batchsize="2")
    run.fs.sync()  # only the DONE is under test here
    _basecall(run, job, reads)
    assert run.get("/completed", job_id=job["jobid"], job_state="DONE") == {"ok": True}
    run.power_cut()
    run.start_server()
    found = output_read_names(run.output_dir)
    if run.settings["durability"] == "none":
        assert found["pass"] == {}
        assert run.status()["files"]["done"] == 0
        return
    expected = sorted(read for name in job["batch"] for read in reads[name])
    assert sorted(found["pass"].elements()) == expected
    assert run.status()["files"]["done"] == 2


@pytest.mark.timeout(300)
def test_power_cuts_of_a_live_run_lose_and_duplicate_no_read(tmp_path: Path) -> None:
    """The power-cut torture, quick: 4 cuts (strict and random) of a live run with 3
    engines; every read exactly once."""
    figures_path = tmp_path / "power.json"
    require_powercut()
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.system.power_torture",
            "--rounds", "4", "--seed", "3", "--files", "8", "--reads-per-file", "4",
            "--workdir", str(tmp_path / "run"), "--json", str(figures_path),
        ],
        capture_output=True, text=True, timeout=280, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(figures_path.read_text())
    assert figures["ok"], figures
    assert (figures["lost"], figures["duplicated"], figures["not_in_any_pod5"]) == (0, 0, 0)
    assert figures["kills"]["server"] == 4
    assert figures["power_cuts"]["strict"] + figures["power_cuts"]["random"] == 4
    assert figures["reads"] == figures["files"] * 4
