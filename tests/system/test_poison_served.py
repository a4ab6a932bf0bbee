"""A poison file among real processes: `reactor serve` and two engines running the
stand-in basecaller. The corrupt `.pod5` (valid signatures, garbage inside) ends alone in
quarantine, again after `reactor requeue`, and every other read comes out exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.exactly_once import recount_run
from tests.support.pod5files import write_corrupt_pod5, write_pod5
from tests.support.served import SeedEngineRun, wait_for

POISON = "PAK00000_pass_abc_def_7.pod5"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_corrupt_pod5_ends_alone_in_quarantine_with_real_engines(tmp_path: Path) -> None:
    """Real processes: reactor serve, two engines running the stand-in basecaller; one
    corrupt .pod5 among 24 ends alone in FAILED_, every other read exactly once."""
    run = SeedEngineRun(tmp_path)
    try:
        names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(24)]
        for i, name in enumerate(names):
            if name == POISON:
                write_corrupt_pod5(run.input_dir / name)
            else:
                write_pod5(run.input_dir / name, n_reads=3, seed=i)
        run.start_server("--max-attempts", "2")
        for i in range(2):
            log = (run.logs / f"engine-{i}.log").open("wb")
            run.engines.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "reactor",
                        "engine",
                        "--manager",
                        run.url,
                        "--engine-id",
                        f"gpu{i}",
                        "--input-dir",
                        str(run.input_dir),
                        "--output-dir",
                        str(run.output_dir),
                        "--preset",
                        "fake",
                        "--batch-size",
                        "8",
                        "--poll-interval",
                        "0.05",
                        "--max-poll-interval",
                        "0.2",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()

        def settled() -> bool:
            files = run.status()["files"]
            return files["done"] == 23 and files["quarantined"] == 1

        wait_for(settled, 150, "23 files done and the poison file quarantined")
        (first,) = run.input_dir.glob("FAILED_*")
        released = subprocess.run(
            [sys.executable, "-m", "reactor", "requeue", "--all", "--url", run.url],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert released.returncode == 0, released.stderr
        assert f"{first.name}: 1 file(s) back in the queue" in released.stdout
        # the corrupt file fails again, alone, and is quarantined again
        wait_for(
            lambda: len(list(run.input_dir.glob("FAILED_*"))) == 1 and not first.exists(),
            60,
            "the released file quarantined again",
        )
    finally:
        run.stop()
    (quarantine,) = run.input_dir.glob("FAILED_*")
    assert os.listdir(quarantine) == [POISON]
    (run.input_dir / POISON).unlink()  # its reads cannot be read: leave it out of the proof
    verdict = recount_run(run.input_dir, run.output_dir)
    assert verdict.ok
    assert verdict.reads == 23 * 3
