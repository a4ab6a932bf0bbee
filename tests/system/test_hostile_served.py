"""A real `reactor serve` with a hostile engine among well-behaved ones.

The hostile engine (`tests/support/hostile_engine.py`) basecalls each batch it gets, then
replaces its `pass/` with a link to INPUTDIR and reports DONE: merging through that link
would move the run's `.pod5` files (and the other jobs' folders) into `pass/`. Every such
DONE must be refused and held, the service restarted meanwhile must come back with the
jobs still held and their reasons, and the seed-protocol engines must finish the run with
every read exactly once and nothing outside the job folders touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.exactly_once import recount_run
from tests.support.hostile import Untouched, make_canary
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import SeedEngineRun, wait_for

FILES = 24
READS = 3
RUN_S = 90.0  # bound on the run's end


def hostile_batches(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def held_jobs(run: SeedEngineRun) -> dict[str, str]:
    """job id -> reason of every held job (/status lists the first 100)."""
    held = run.status()["held"]
    assert held["total"] == len(held["jobs"])
    return {job["job_id"]: job["reason"] for job in held["jobs"]}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_hostile_engine_among_good_ones_changes_nothing_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    (tmp_path / "run").mkdir()
    run = SeedEngineRun(tmp_path / "run")
    for i in range(FILES):
        write_pod5(run.input_dir / f"PAK00000_pass_served_{i:03d}.pod5", n_reads=READS, seed=i)
    canary = make_canary(tmp_path)
    outside = Untouched(roots=(canary, *sorted(run.input_dir.glob("*.pod5"))))
    before = outside.take()
    hostile_log = run.logs / "hostile.jsonl"
    run.start_server()
    with hostile_log.open("wb") as log:
        hostile = subprocess.Popen(
            [
                sys.executable, "-m", "tests.support.hostile_engine",
                "--url", run.url, "--engine-id", "rogue",
                "--input-dir", str(run.input_dir), "--output-dir", str(run.output_dir),
                "--canary", str(canary / "secret.fastq"),
                "--batch-size", "5", "--every", "1", "--mischief", "pass-link",
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    try:
        wait_for(lambda: len(hostile_batches(hostile_log)) >= 1, 30, "a hostile batch")
        (first, *_) = hostile_batches(hostile_log)
        reason = f"TMPOUTPUT_{first['job_id']}_rogue/pass is a link or a file, not a folder"
        assert first["answer"] == {"ok": True, "merged": False, "detail": reason}
        held = held_jobs(run)
        assert held[first["job_id"]] == reason
        for job_id, why in held.items():
            assert why == f"TMPOUTPUT_{job_id}_rogue/pass is a link or a file, not a folder"

        # a restart while hostile jobs are held: it must not fail, and they stay held
        assert run.stop_server() == 0
        run.start_server()
        assert held_jobs(run).items() >= held.items()

        run.start_engines(2)
        wait_for(lambda: run.files_done() == FILES, RUN_S, "every file done")
    finally:
        hostile.kill()
        hostile.wait(timeout=10)
        assert run.stop() == 0

    batches = hostile_batches(hostile_log)
    assert batches, "the hostile engine took no batch"
    for batch in batches:
        assert batch["mischief"] == "pass-link"
        assert batch["answer"] == {
            "ok": True,
            "merged": False,
            "detail": f"TMPOUTPUT_{batch['job_id']}_rogue/pass is a link or a file, not a folder",
        }
    # every read exactly once: the refused jobs' files were basecalled by the good engines
    verdict = recount_run(run.input_dir, run.output_dir)
    assert verdict.ok, verdict
    assert verdict.reads == FILES * READS
    # nothing outside the job folders touched: the inputs, the canary; only merged outputs
    outside.assert_same(before)
    for kind in ("pass", "fail"):
        for path in (run.output_dir / kind).iterdir():
            assert path.is_file() and not path.is_symlink(), path
            assert path.name.startswith("job_id_") and path.suffix == ".fastq", path
    refused = {batch["job_id"] for batch in batches}
    for job_id in refused:
        kept = run.output_dir / f"REFUSEDOUTPUT_{job_id}_rogue"
        assert (kept / "pass").is_symlink()

    # and once more after the run: every refused job is still held, with its reason
    run.start_server()
    try:
        final = held_jobs(run)
        assert set(final) == refused
        assert run.files_done() == FILES
    finally:
        assert run.stop_server() == 0
