"""A real `reactor serve` starting on damaged run folders: one job's damage never stops
it (the job is held for a person), and what does stop it is named as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.launch import fetch_json, free_port, serve_args
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import wait_for

START_S = 20.0


def run_dirs(tmp_path: Path) -> tuple[Path, Path]:
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    return input_dir, output_dir


def test_a_state_folder_that_is_a_file_stops_serve_with_the_real_cause(tmp_path: Path) -> None:
    input_dir, output_dir = run_dirs(tmp_path)
    (output_dir / ".reactor").write_text("not a folder")
    done = subprocess.run(
        [sys.executable, "-m", *serve_args(input_dir, output_dir, free_port())],
        capture_output=True,
        text=True,
        timeout=START_S,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reactor serve: cannot start: reactor's state folder"), last
    assert "cannot listen" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_job_whose_folders_an_engine_broke_does_not_stop_the_restart(tmp_path: Path) -> None:
    """Before the restart an engine replaced its output folder with a file, after the
    service had decided its DONE: serve starts anyway, holds that job for a person with
    what it found, and hands out the other files."""
    input_dir, output_dir = run_dirs(tmp_path)
    for n in range(3):
        write_pod5(input_dir / f"f{n}.pod5", n_reads=1, seed=n)
    jobs = output_dir / ".reactor" / "jobs"
    jobs.mkdir(parents=True, mode=0o700)
    record = {
        "format": 2, "job_id": "7", "engine_id": "bad", "state": "done",
        "files": {"f0.pod5": 1}, "assigned_at": 0.0, "decided_at": 1.0,
        "outputs": [["pass", "f0.fastq"]],
    }  # fmt: skip
    (jobs / "7.json").write_text(json.dumps(record))
    (output_dir / "TMPOUTPUT_7_bad").write_text("an engine put a file here")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        [sys.executable, "-m", *serve_args(input_dir, output_dir, port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    ) as serve:
        try:
            wait_for(lambda: fetch_json(f"{url}/readyz") is not None, START_S, "serve ready")
            status = fetch_json(f"{url}/status")
            assert status is not None
            assert status["held"]["total"] == 1
            (held,) = status["held"]["jobs"]
            assert (held["job_id"], held["state"]) == ("7", "done")
            assert "TMPOUTPUT_7_bad" in held["reason"]
            assert status["files"]["done"] == 1
            assert status["files"]["ready"] == 2
        finally:
            serve.terminate()
            serve.wait(START_S)
    assert serve.returncode == 0
