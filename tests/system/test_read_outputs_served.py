"""MinKNOW's layout from a real `reactor serve`, whatever protocol the engines speak.

The same `.pod5` files are basecalled twice, by two real services in MinKNOW's layout:
once by engines that speak only the seed's protocol, once by reference engines
(`reactor engine --preset fake-dorado-bam`), both running the stand-in basecaller as
dorado (BAM, reads split and dropped). The split happens in the service, so the two
runs must end with the same records in the same pass/fail folders, each read once
(recounted here from the BAM files with pysam), and `reactor verify` must agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pysam
import pytest

from tests.support.exactly_once import recount_called
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import SeedEngineRun, wait_for

pytestmark = pytest.mark.slow

FILES = 12
LAYOUT = ("--output-layout", "minknow")


def records(output_dir: Path) -> list[tuple[str, str, str, str]]:
    """(pass or fail, read id, pi parent or "", sequence) of every record, sorted."""
    found = []
    for verdict in ("pass", "fail"):
        for path in sorted((output_dir / f"bam_{verdict}").glob("*.bam")):
            with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
                for s in bam.fetch(until_eof=True):
                    parent = str(s.get_tag("pi")) if s.has_tag("pi") else ""
                    found.append((verdict, str(s.query_name), parent, str(s.query_sequence)))
    return sorted(found)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for number in range(FILES):
        write_pod5(folder / f"PAR00001_5eed0000_0123abcd_{number}.pod5", 25, seed=number + 50)
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[SeedEngineRun]]:
    made: list[SeedEngineRun] = []
    yield made
    for run in made:
        run.stop()


def serve(root: Path, corpus: Path, runs: list[SeedEngineRun]) -> SeedEngineRun:
    root.mkdir()
    run = SeedEngineRun(root)
    runs.append(run)
    for path in corpus.iterdir():
        shutil.copy(path, run.input_dir / path.name)
    run.start_server(*LAYOUT)
    return run


def test_seed_and_reference_engines_end_with_the_same_records_in_minknows_layout(
    tmp_path: Path, corpus: Path, runs: list[SeedEngineRun]
) -> None:
    seed = serve(tmp_path / "seed", corpus, runs)
    seed.start_engines(2, "--dorado")
    reference = serve(tmp_path / "reference", corpus, runs)
    for number in range(2):
        log = (reference.logs / f"engine-{number}.log").open("wb")
        reference.engines.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "reactor", "engine",
                    "--manager", reference.url, "--engine-id", f"ref{number}",
                    "--input-dir", str(reference.input_dir),
                    "--output-dir", str(reference.output_dir),
                    "--preset", "fake-dorado-bam", "--batch-size", "3",
                    "--poll-interval", "0.05", "--max-poll-interval", "0.5",
                ],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        )  # fmt: skip
        log.close()
    for run in (seed, reference):
        wait_for(lambda run=run: run.files_done() == FILES, 120, "every file done")

    got = records(seed.output_dir)
    assert got == records(reference.output_dir), "the same records, split the same way"
    assert {verdict for verdict, *_ in got} == {"pass", "fail"}
    for run in (seed, reference):
        recount = recount_called(run.input_dir.glob("*.pod5"), run.output_dir)
        assert recount.ok and recount.subreads > 0 and recount.dropped > 0, recount
        assert recount.records == len(got)
        verify = subprocess.run(
            [sys.executable, "-m", "reactor", "verify", str(run.output_dir),
             "--input-dir", str(run.input_dir)],
            capture_output=True, text=True, check=False, cwd=REPO,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        served = run.status()["reads"]
        assert served["reads"] == len(got) and served["accounting"]["exactly_once"]
        # batch numbers: one per merged job, none used twice
        jobs = (run.output_dir / ".reactor" / "jobs").glob("*.json")
        done = [r for r in (json.loads(p.read_text()) for p in jobs) if r["state"] == "done"]
        names = [p.name for p in run.output_dir.glob("bam_*/*.bam")]
        batches = {int(n.rsplit("_", 1)[1].removesuffix(".bam")) for n in names}
        assert batches == {r["batch"] for r in done} and len(batches) == len(done)
