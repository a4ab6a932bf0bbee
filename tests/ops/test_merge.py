"""`reactor merge SAMPLE` and the files it merges: one file per barcode, across runs.

Runs are laid out as host mode leaves them (a run folder's `reactor/` with reactor's
records, a pooled run's `reactor/{fc}_{prid8}/`), their outputs in MinKNOW's layout
written here with dnaio and pysam; the merged files are read back with the same
libraries and compared, record by record, with what was written.
"""

from __future__ import annotations

import random
from pathlib import Path

import dnaio
import pysam
import pytest

from reactor.cli import main
from reactor.disk.marker import marker_path

HEADER = {"HD": {"VN": "1.6", "SO": "unknown"}, "RG": [{"ID": "r"}]}


def run_output(folder: Path, complete: bool) -> Path:
    (folder / ".reactor" / "jobs").mkdir(parents=True)
    if complete:
        marker_path(folder).write_text("{}")
    return folder


def fastq(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with dnaio.open(path, mode="w") as out:
        for name in names:
            out.write(dnaio.SequenceRecord(f"{name}\tqs:f:12", "ACGT", "IIII"))


def bam(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with pysam.AlignmentFile(str(path), "wb", header=HEADER) as out:
        for name in names:
            segment = pysam.AlignedSegment(out.header)
            segment.query_name, segment.flag, segment.query_sequence = name, 4, "ACGT"
            out.write(segment)


def names_in(path: Path) -> list[str]:
    if path.name.endswith(".bam"):
        with pysam.AlignmentFile(str(path), "rb", check_sq=False) as data:
            return [str(s.query_name) for s in data.fetch(until_eof=True)]
    with dnaio.open(path) as reader:
        return [record.name.split("\t")[0] for record in reader]


def test_a_samples_runs_merge_into_one_file_per_barcode_and_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(1)
    ids = iter(f"read{n:04d}" for n in range(10_000))
    root = tmp_path / "data"
    sample = root / "grp" / "liver"
    first = run_output(sample / "20261201_1000_1A_PAW00001_aaaaaaaa" / "reactor", complete=True)
    washed = run_output(sample / "reactor" / "PAW00002_bbbbbbbb", complete=True)  # pooled
    going = run_output(sample / "20261205_0900_1B_PAW00003_cccccccc" / "reactor", complete=False)
    expected: dict[str, list[str]] = {}
    for output in (first, washed, going):
        for batch in range(3):
            for folder, merged in (
                ("fastq_pass/patient_a", "patient_a.pass.fastq.gz"),
                ("fastq_fail/patient_a", "patient_a.fail.fastq.gz"),
                ("fastq_pass/unclassified", "unclassified.pass.fastq.gz"),
            ):
                names = [next(ids) for _ in range(rng.randint(1, 5))]
                fastq(output / folder / f"PAW_x_{batch}.fastq.gz", names)
                if output is not going:
                    expected.setdefault(merged, []).extend(names)
    assert main(["merge", "liver", "--root", str(root)]) == 0
    said = capsys.readouterr().out
    assert "not complete: left out" in said and str(going) in said
    merged = sample / "reactor_merged"
    assert sorted(p.name for p in merged.iterdir()) == sorted(expected)
    for name, names in expected.items():
        assert sorted(names_in(merged / name)) == sorted(names), name
    # --all takes the run still going on too; a merge again replaces the files whole
    assert main(["merge", "liver", "--root", str(root), "--all"]) == 0
    total = sum(len(names_in(p)) for p in merged.iterdir())
    assert total == sum(len(names_in(p)) for p in sample.rglob("fastq_*/*/*.fastq.gz"))
    assert not [p for p in merged.iterdir() if p.name.startswith(".")]


def test_bam_outputs_merge_with_their_header_and_every_record(tmp_path: Path) -> None:
    root = tmp_path / "data"
    output = run_output(root / "g" / "s" / "run1" / "reactor", complete=True)
    written = []
    for batch in range(4):
        names = [f"r{batch}_{n}" for n in range(batch + 1)]
        bam(output / "bam_pass" / f"PAW_pass_x_{batch}.bam", names)
        written += names
    assert main(["merge", "s", "--root", str(root)]) == 0
    merged = root / "g" / "s" / "reactor_merged" / "pass.bam"
    assert sorted(names_in(merged)) == sorted(written)
    with pysam.AlignmentFile(str(merged), "rb", check_sq=False) as data:
        assert data.header.to_dict()["RG"] == HEADER["RG"]


def test_a_sample_with_no_run_is_exit_2_saying_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "grp" / "other").mkdir(parents=True)
    assert main(["merge", "liver", "--root", str(tmp_path)]) == 2
    assert "no run of sample 'liver'" in capsys.readouterr().err
