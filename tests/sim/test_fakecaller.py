"""`reactor fake-basecaller`: a stand-in for dorado that turns real `.pod5` files into FASTQ."""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import reactor.sim
from reactor.commands.fake_basecaller import add_arguments, run
from reactor.core.names import POD5_SIGNATURE
from reactor.sim.fake_basecaller import (
    CRASH_EXIT_CODE,
    ResultFolder,
    fastq_record,
    fastq_records,
    mean_qscore,
    result_folder,
    sequence_length,
)
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5

NAMES = ("PAK00000_pass_abcdef12_0123abcd_0.pod5", "PAK00000_pass_abcdef12_0123abcd_1.pod5")


def _args(*argv: str | Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([str(arg) for arg in argv])


def _fake_basecaller(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reactor", "fake-basecaller", *map(str, argv)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def _records(folder: Path) -> list[tuple[str, str, str]]:
    """`(read id, its POD5 (fn:Z), output file name)` of every FASTQ record under `folder`."""
    found = []
    for path in sorted(folder.iterdir()):
        lines = path.read_text().splitlines()
        assert len(lines) % 4 == 0, path
        for header in lines[::4]:
            read_id, *tags = header.removeprefix("@").split("\t")
            (source,) = [tag.removeprefix("fn:Z:") for tag in tags if tag.startswith("fn:Z:")]
            found.append((read_id, source, path.name))
    return found


@pytest.fixture
def run_input(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """An input folder with two real `.pod5` files of 16 reads; their read ids by name."""
    folder = tmp_path / "in"
    folder.mkdir()
    ids = {name: write_pod5(folder / name, 16, seed=seed) for seed, name in enumerate(NAMES)}
    return folder, ids


# --- the pure core ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_digit", "expected"),
    [("0", ResultFolder.FAIL), ("1", ResultFolder.FAIL)]
    + [(digit, ResultFolder.PASS) for digit in "23456789abcdef"],
)
def test_a_read_fails_when_its_id_starts_with_hex_0_or_1(
    first_digit: str, expected: ResultFolder
) -> None:
    assert result_folder(f"{first_digit}e9958d8-9499-440c-83f9-39f34c0e31e0") is expected


@pytest.mark.parametrize(
    ("n_samples", "bases"), [(0, 1), (9, 1), (10, 1), (19, 1), (20, 2), (4000, 400)]
)
def test_sequence_length_is_one_base_per_ten_samples_at_least_one(
    n_samples: int, bases: int
) -> None:
    assert sequence_length(n_samples) == bases


def test_fastq_record_is_four_lines_named_by_the_read_id_with_doradoes_tags() -> None:
    read_id = "de9958d8-9499-440c-83f9-39f34c0e31e0"
    record = fastq_record(read_id, 1234, "x.pod5")
    header, bases, plus, quality = record.splitlines()
    assert record.endswith("\n")
    name, *tags = header.split("\t")
    assert name == f"@{read_id}"
    fields = dict(tag.rsplit(":", 1) for tag in tags)
    assert fields["fn:Z"] == "x.pod5"
    assert fields["RG:Z"] == "fake-basecaller"
    assert 1 <= int(fields["ch:i"]) <= 3000
    qs = float(fields["qs:f"])
    assert 10 <= qs <= 25, "a pass read (its id does not start with 0 or 1)"
    assert plus == "+"
    assert len(bases) == len(quality) == 123
    assert set(bases) <= set("ACGT")
    assert {ord(char) - 33 for char in quality} == {round(qs)}
    assert record == fastq_record(read_id, 1234, "x.pod5")


def test_reads_that_go_to_fail_have_a_qs_below_10_and_the_rest_above() -> None:
    for read_id in ("0a000000-0000-4000-8000-00000000000f", "1fffffff-ffff-4fff-8fff-ffffffffffff"):
        assert 2 <= mean_qscore(read_id) < 10
    for read_id in ("a0000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-8fff-ffffffffffff"):
        assert 10 <= mean_qscore(read_id) <= 25


def test_fastq_records_keep_order_and_sort_by_folder() -> None:
    reads = [("0a" + "0" * 30, 100), ("fa" + "0" * 30, 200), ("1b" + "0" * 30, 50)]
    out = list(fastq_records(reads, "x.pod5"))
    assert [kind for kind, _ in out] == [ResultFolder.FAIL, ResultFolder.PASS, ResultFolder.FAIL]
    assert [text.split()[0][1:] for _, text in out] == [read_id for read_id, _ in reads]


# --- the command, in process -------------------------------------------------------------


def test_every_read_comes_out_exactly_once_in_pass_or_fail(
    run_input: tuple[Path, dict[str, list[str]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, ids = run_input
    out = tmp_path / "out"
    assert run(_args(folder, out)) == 0

    records = {kind: _records(out / kind) for kind in ResultFolder}
    every = [read_id for kind in ResultFolder for read_id, _, _ in records[kind]]
    assert Counter(every) == Counter(read_id for file_ids in ids.values() for read_id in file_ids)
    for kind in ResultFolder:
        assert all(result_folder(read_id) is kind for read_id, _, _ in records[kind])
        for read_id, source, output in records[kind]:
            assert read_id in ids[source]
            assert output == source.removesuffix(".pod5") + ".fastq"
    assert records[ResultFolder.PASS]
    assert records[ResultFolder.FAIL]  # the seeds above give both kinds
    summary = (
        f"reactor fake-basecaller: files=2 reads=32 pass={len(records[ResultFolder.PASS])} "
        f"fail={len(records[ResultFolder.FAIL])} seconds="
    )
    assert re.fullmatch(re.escape(summary) + r"[0-9]+\.[0-9]{2}\n", capsys.readouterr().err)


def test_reads_inputs_through_relative_symlinks(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    """An ASSIGNED_ folder of relative links, as reactor hands out, is read like files."""
    folder, ids = run_input
    assigned = folder / "ASSIGNED_1_engine"
    assigned.mkdir()
    for name in NAMES:
        (assigned / name).symlink_to(Path("..") / name)
    out = tmp_path / "out"
    assert run(_args(assigned, out)) == 0
    every = [read_id for kind in ResultFolder for read_id, _, _ in _records(out / kind)]
    assert sorted(every) == sorted(read_id for file_ids in ids.values() for read_id in file_ids)


def test_ignores_hidden_files_folders_and_other_names(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    kept = write_pod5(folder / "a.pod5", 3, seed=5)
    (folder / ".hidden.pod5").write_bytes(b"not read")
    (folder / "notes.txt").write_text("not read")
    (folder / "sub.pod5").mkdir()
    out = tmp_path / "out"
    assert run(_args(folder, out)) == 0
    every = [read_id for kind in ResultFolder for read_id, _, _ in _records(out / kind)]
    assert sorted(every) == sorted(kept)


def test_no_staging_files_are_left_after_success(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = run_input
    out = tmp_path / "out"
    assert run(_args(folder, out, "--delay-per-read", "0.0001")) == 0
    left = sorted(path.name for kind in ResultFolder for path in (out / kind).iterdir())
    assert all(not name.startswith(".") for name in left)


def test_an_empty_input_folder_succeeds_with_empty_pass_and_fail(tmp_path: Path) -> None:
    assert run(_args(tmp_path, tmp_path / "out")) == 0
    assert [list((tmp_path / "out" / kind).iterdir()) for kind in ResultFolder] == [[], []]


def test_fail_on_a_present_name_exits_1_and_writes_nothing(
    run_input: tuple[Path, dict[str, list[str]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = run_input
    out = tmp_path / "out"
    assert run(_args(folder, out, "--fail-on", "other.pod5", "--fail-on", NAMES[1])) == 1
    assert capsys.readouterr().err == (
        f"reactor fake-basecaller: failing on purpose: {NAMES[1]} is in {folder} (--fail-on)\n"
    )
    assert not out.exists()


def test_fail_on_an_absent_name_changes_nothing(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = run_input
    assert run(_args(folder, tmp_path / "out", "--fail-on", "other.pod5")) == 0


def test_fail_rate_1_always_fails_before_writing_and_0_never_fails(
    run_input: tuple[Path, dict[str, list[str]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = run_input
    assert run(_args(folder, tmp_path / "failed", "--fail-rate", "1.0")) == 1
    assert "failing on purpose (--fail-rate 1.0)" in capsys.readouterr().err
    assert not (tmp_path / "failed").exists()
    assert run(_args(folder, tmp_path / "ok", "--fail-rate", "0.0")) == 0


def test_fail_rate_with_a_seed_is_repeatable(tmp_path: Path) -> None:
    """Each seed decides once and for all; across seeds, about P of the runs fail."""
    outcomes = [run(_args(tmp_path, tmp_path / "out", "--fail-rate", "0.5", "--seed", str(seed)))
                for seed in range(40)]  # fmt: skip
    again = [run(_args(tmp_path, tmp_path / "out", "--fail-rate", "0.5", "--seed", str(seed)))
             for seed in range(40)]  # fmt: skip
    assert outcomes == again
    assert outcomes == [1 if random.Random(seed).random() < 0.5 else 0 for seed in range(40)]
    assert set(outcomes) == {0, 1}


def test_a_corrupt_pod5_exits_1_naming_the_file(
    run_input: tuple[Path, dict[str, list[str]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both signatures are there, so only reading the file tells it is garbage."""
    folder, _ = run_input
    bad = "PAK00000_pass_abcdef12_0123abcd_2.pod5"
    (folder / bad).write_bytes(POD5_SIGNATURE + os.urandom(4000) + POD5_SIGNATURE)
    out = tmp_path / "out"
    assert run(_args(folder, out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"reactor fake-basecaller: cannot read {bad}: ")
    assert err.count("\n") == 1
    assert not out.exists()  # inputs are all read before anything is written


def test_a_dangling_symlink_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gone.pod5").symlink_to(tmp_path / "nowhere.pod5")
    assert run(_args(tmp_path, tmp_path / "out")) == 1
    assert "cannot read gone.pod5: " in capsys.readouterr().err


def test_a_missing_input_folder_exits_2_and_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(tmp_path / "nope", tmp_path / "out")) == 2
    assert capsys.readouterr().err == (
        f"reactor fake-basecaller: input folder {tmp_path / 'nope'} does not exist or is not "
        "a folder; give the folder that holds the .pod5 files\n"
    )


@pytest.mark.parametrize(
    "options",
    [["--fail-rate", "1.5"], ["--fail-rate", "x"], ["--delay-per-read", "-1"],
     ["--crash-after-reads", "-1"]],
)  # fmt: skip
def test_bad_options_are_rejected_by_the_parser(tmp_path: Path, options: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _args(tmp_path, tmp_path / "out", *options)
    assert exit_info.value.code == 2


def test_without_pod5_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pod5", None)  # `import pod5` now raises ImportError
    monkeypatch.delitem(sys.modules, "reactor.sim.pod5_files")
    monkeypatch.delattr(reactor.sim, "pod5_files")
    assert run(_args(tmp_path, tmp_path / "out")) == 2
    assert capsys.readouterr().err == (
        "reactor fake-basecaller: needs the pod5 library: pip install 'pod5-reactor[sim]'\n"
    )


# --- the command, as a process ------------------------------------------------------------


def test_crash_after_reads_dies_137_leaving_only_renamed_outputs_complete(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    """After 20 of 2x16 reads: the first input's outputs are in place, the second's staged."""
    folder, ids = run_input
    out = tmp_path / "out"
    result = _fake_basecaller(folder, out, "--crash-after-reads", "20")
    assert result.returncode == CRASH_EXIT_CODE, result.stderr
    assert "crashing on purpose after 20 reads" in result.stderr

    outputs = [path for kind in ResultFolder for path in (out / kind).iterdir()]
    final = [path for path in outputs if not path.name.startswith(".")]
    staged = [path for path in outputs if path.name.startswith(".")]
    first_stem, second_stem = (name.removesuffix(".pod5") for name in NAMES)
    assert {path.name for path in final} == {f"{first_stem}.fastq"}
    assert {path.name for path in staged} <= {f".{second_stem}.fastq.tmp"}
    done = [read_id for kind in ResultFolder for read_id, _, name in _records(out / kind)
            if name == f"{first_stem}.fastq"]  # fmt: skip
    partial = [read_id for kind in ResultFolder for read_id, _, name in _records(out / kind)
               if name == f".{second_stem}.fastq.tmp"]  # fmt: skip
    assert sorted(done) == sorted(ids[NAMES[0]])
    assert sorted(partial) == sorted(ids[NAMES[1]][:4])  # the first 4 reads, pass or fail


def test_crash_after_0_reads_writes_nothing(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = run_input
    result = _fake_basecaller(folder, tmp_path / "out", "--crash-after-reads", "0")
    assert result.returncode == CRASH_EXIT_CODE
    assert [list((tmp_path / "out" / kind).iterdir()) for kind in ResultFolder] == [[], []]


def test_as_a_process_success_is_0_and_a_usage_mistake_is_2(
    run_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = run_input
    assert _fake_basecaller(folder, tmp_path / "out").returncode == 0
    missing = _fake_basecaller(tmp_path / "nope", tmp_path / "out")
    assert missing.returncode == 2
    assert missing.stderr.startswith("reactor fake-basecaller: input folder ")
    assert "Traceback" not in missing.stderr
