"""`reactor demo`: the whole live run as a person runs it, and the exactly-once check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reactor.sim.demo import check_exactly_once, fastq_names
from tests.support.exactly_once import recount_called
from tests.support.pod5files import write_pod5


def fastq(ids: list[str]) -> str:
    return "".join(f"@{rid} file=x.pod5\nACGT\n+\nIIII\n" for rid in ids)


def make_run(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    (output_dir / "pass").mkdir(parents=True)
    (output_dir / "fail").mkdir()
    a = write_pod5(input_dir / "a.pod5", 3, seed=1)
    b = write_pod5(input_dir / "b.pod5", 2, seed=2)
    return input_dir, output_dir, a, b


def test_check_accepts_every_read_exactly_once(tmp_path: Path) -> None:
    input_dir, output_dir, a, b = make_run(tmp_path)
    (output_dir / "pass" / "job_id_1_a.fastq").write_text(fastq(a))
    (output_dir / "fail" / "job_id_2_b.fastq").write_text(fastq(b))
    verdict = check_exactly_once(input_dir, output_dir)
    assert verdict.ok
    assert (verdict.files, verdict.reads, verdict.in_pass, verdict.in_fail) == (2, 5, 3, 2)


@pytest.mark.parametrize(
    ("damage", "field"),
    [("lose", "missing"), ("duplicate", "duplicated"), ("invent", "unexpected")],
)
def test_check_catches_lost_duplicated_and_invented_reads(
    tmp_path: Path, damage: str, field: str
) -> None:
    input_dir, output_dir, a, b = make_run(tmp_path)
    passed = {"lose": a[:-1], "duplicate": [*a, a[0]], "invent": [*a, "not-a-read"]}[damage]
    (output_dir / "pass" / "a.fastq").write_text(fastq(passed))
    (output_dir / "fail" / "b.fastq").write_text(fastq(b))
    verdict = check_exactly_once(input_dir, output_dir)
    assert not verdict.ok
    assert getattr(verdict, field) == 1


def test_fastq_names_reads_the_first_word_of_each_header() -> None:
    assert fastq_names(fastq(["r1", "r2"])) == ["r1", "r2"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_runs_a_live_run_and_proves_exactly_once(tmp_path: Path) -> None:
    """The demo command, as the README runs it (smaller): exit 0 and the proof printed."""
    result = subprocess.run(
        [
            sys.executable, "-m", "reactor", "demo",
            "--files", "8", "--reads-per-file", "5", "--engines", "2", "--interval", "0.1",
            "--workdir", str(tmp_path / "run"),
        ],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every read basecalled exactly once" in result.stdout
    assert "reads missing                0" in result.stdout
    assert "reads duplicated             0" in result.stdout
    assert "end of run                   complete (final_summary seen" in result.stdout
    marker = json.loads(
        (tmp_path / "run" / "output" / ".reactor" / "run-complete.json").read_text()
    )
    assert marker["state"] == "no_command"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_host_demo_serves_every_flow_cell_and_proves_each_run(tmp_path: Path) -> None:
    """`make demo` runs `reactor demo --flow-cells 4` (smaller here): one service for every
    run under the root, each run's reads once in its own outputs, counted again here."""
    result = subprocess.run(
        [
            sys.executable, "-m", "reactor", "demo", "--flow-cells", "4",
            "--files", "3", "--reads-per-file", "4", "--engines", "2", "--interval", "0.1",
            "--stagger", "0.5", "--workdir", str(tmp_path / "host"),
        ],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every read of every run basecalled exactly once, in its own run" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("PAW")]
    assert [row[1] for row in rows] == ["pod5/", "barcoded", "pooled", "pooled"]
    # the table's reads and records are each run's own (recounted below)
    shown = {row[0]: (int(row[3]), int(row[4])) for row in rows}
    # recount each run independently: its files under the root, its own outputs
    root = tmp_path / "host" / "data"
    own = sorted(root.glob("demo/sample*/*/reactor"))  # in a run folder of its own
    pooled = sorted(root.glob("demo/pooled0/reactor/PAW*"))  # in a shared sample folder
    assert (len(own), len(pooled)) == (2, 2)
    runs = [(output, sorted(output.parent.glob("pod5*/**/*.pod5"))) for output in own]
    for output in pooled:
        shared = sorted((output.parents[1] / "pod5").glob("*.pod5"))
        runs.append((output, [f for f in shared if f.name.startswith(output.name + "_")]))
    for output, files in runs:
        assert len(files) == 3, output
        counted = recount_called(files, output)
        assert counted.ok, (output, counted)
        assert counted.reads == 4 * 3
        # {fc}_{prid8}: a pooled run's output folder, else the end of its run folder's name
        key = (
            output.name
            if output.name != "reactor"
            else "_".join(output.parent.name.split("_")[-2:])
        )
        assert shown[key] == (counted.reads, counted.records), key
