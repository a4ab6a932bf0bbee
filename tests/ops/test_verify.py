"""`reactor verify`: a run's reads once, checked from its files alone.

A real run: `.pod5` files written with the pod5 library, a service in MinKNOW's layout,
the stand-in basecaller run as dorado (a real process writing BAM: reads split and
dropped). The figures `reactor verify --json` prints are recounted here from the
outputs with pysam, and tampering with the outputs or the inputs is caught.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

from reactor.cli import main
from reactor.core.names import Folder
from reactor.disk.journal import Journal
from reactor.serve.service import Reactor
from reactor.sim.pod5_files import RunIdentity, write_pod5
from tests.support.blocking import Blocking, started
from tests.support.exactly_once import recount_called
from tests.support.runs import ManualClock, RunDirs

RUN = RunIdentity(flow_cell_id="PAV00001", protocol_run_id="abcd1234-0000-4000-8000-0000")


def served_run(tmp_path: Path, files: int = 3, reads: int = 40) -> tuple[RunDirs, Blocking]:
    """A run basecalled to its end by the stand-in as dorado, in MinKNOW's layout."""
    dirs = RunDirs(tmp_path / "input", tmp_path / "output")
    dirs.input_dir.mkdir()
    dirs.output_dir.mkdir()
    for number in range(files):
        write_pod5(dirs.input_dir / f"PAV00001_abcd1234_0123abcd_{number}.pod5", reads,
                   seed=number + 10, run=RUN)  # fmt: skip
    config = dirs.config(output_layout="minknow")
    numbers = itertools.count(1)
    reactor = started(
        Reactor(
            config,
            clock=ManualClock(),
            journal=Journal(config.input_dir, config.output_dir),
            job_id_factory=lambda: str(next(numbers)),
        )
    )
    while (job := reactor.assign("gpu", 2)) is not None:
        links = dirs.input_dir / reactor.journal.input_folder(job, Folder.ASSIGNED).name
        out = dirs.output_dir / reactor.journal.output_folder(job, Folder.TMPOUTPUT).name
        with (out / "pass" / f"{job.job_id}.bam").open("wb") as bam:
            subprocess.run(
                [sys.executable, "-m", "reactor", "fake-basecaller", "--dorado", str(links)],
                stdout=bam, check=True, timeout=60,
            )  # fmt: skip
        reactor.complete(job.job_id, "DONE")
    return dirs, reactor


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()  # what the service logged while it served the run
    code = main(["verify", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_verify_says_every_read_once_with_the_figures_a_recount_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, reactor = served_run(tmp_path)
    code, figures = verify(capsys, str(dirs.output_dir), "--input-dir", str(dirs.input_dir))
    recount = recount_called(dirs.input_dir.glob("*.pod5"), dirs.output_dir)
    assert recount.ok and code == 0
    assert figures["exactly_once"] is True
    assert figures["files_done"] == figures["files_found"] == 3
    assert figures["pod5_reads"] == recount.reads
    assert figures["records"] == recount.records
    assert figures["subreads"] == recount.subreads > 0
    assert figures["dropped"] == recount.dropped > 0
    bases = 0
    for path in dirs.output_dir.rglob("*.bam"):
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
            bases += sum(segment.query_length for segment in bam.fetch(until_eof=True))
    assert figures["bases"] == bases
    # the service's own counts, kept merge by merge, say the same
    served = reactor.status()["reads"]
    assert (served["reads"], served["bases"]) == (figures["records"], figures["bases"])
    assert served["accounting"]["dropped"] == figures["dropped"]


def test_verify_catches_a_read_written_twice_and_a_done_file_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _ = served_run(tmp_path, files=2)
    inputs = ["--input-dir", str(dirs.input_dir)]
    first = sorted(dirs.output_dir.glob("bam_pass/*.bam"))[0]
    shutil.copy(first, first.with_name(first.name.replace("_0.bam", "_99.bam")))
    code, figures = verify(capsys, str(dirs.output_dir), *inputs)
    assert code == 1 and figures["exactly_once"] is False
    with pysam.AlignmentFile(str(first), "rb", check_sq=False) as bam:
        assert figures["duplicates"] == sum(1 for _ in bam.fetch(until_eof=True))
    first.with_name(first.name.replace("_0.bam", "_99.bam")).unlink()
    gone = sorted(dirs.input_dir.glob("*.pod5"))[0]
    gone.unlink()
    code, figures = verify(capsys, str(dirs.output_dir), *inputs)
    assert code == 1 and figures["files_missing"] == [gone.name]


def test_a_folder_reactor_never_served_cannot_be_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path)]) == 2
    assert "has no records of reactor" in capsys.readouterr().err


def test_a_bam_twin_of_a_fastq_is_read_once_and_other_bams_always(tmp_path: Path) -> None:
    """output_format = both writes each batch twice: its BAM is left out. A run whose
    jobs wrote FASTQ and BAM (engines of both kinds) is read whole."""
    from reactor.disk.read_files import output_files

    names = {
        "fastq_pass/x_pass_a_b_0.fastq.gz": True,
        "bam_pass/x_pass_a_b_0.bam": False,  # the twin of batch 0
        "bam_pass/x_pass_a_b_1.bam": True,  # batch 1 was BAM only
        "fastq_fail/patient_a/x_fail_patient_a_a_b_2.fastq.gz": True,
        "bam_fail/patient_a/x_fail_patient_a_a_b_2.bam": False,
        "bam_fail/patient_b/x_fail_patient_a_a_b_2.bam": True,  # another folder: no twin
    }
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listed = {str(path.relative_to(tmp_path)) for _, _, path in output_files(tmp_path)}
    assert listed == {name for name, kept in names.items() if kept}
