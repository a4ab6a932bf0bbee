"""`reactor fake-basecaller --dorado`: the stand-in writes one BAM or FASTQ stream as dorado 1.x."""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dnaio
import pysam
import pytest

from reactor.commands.fake_basecaller import DORADO_DEFAULT_MODEL, add_arguments, run
from reactor.sim.dorado_reads import (
    BARCODES_PER_KIT,
    DEFAULT_MODEL,
    LONGEST_BASES,
    MIN_CALLED_BASES,
    SHORTEST_BASES,
    UNCLASSIFIED,
    barcode_for,
    called_length,
    called_reads,
    is_dropped,
    is_split,
    read_group_id,
    start_time,
    subread_id,
)
from reactor.sim.dorado_stream import FAKE_DORADO_VERSION as VERSION
from reactor.sim.dorado_stream import basecall_dorado, fastq_text
from reactor.sim.fake_basecaller import CRASH_EXIT_CODE, mean_qscore
from reactor.sim.pod5_files import DEFAULT_RUN, read_facts
from reactor.sim.pod5_reads import Pod5Read, Pod5Run
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5

NAMES = ("PAK00000_pass_abcdef12_0123abcd_0.pod5", "PAK00000_pass_abcdef12_0123abcd_1.pod5")
READS_PER_FILE = 48
KIT = "SQK-NBD114-24"
RUN_ID = DEFAULT_RUN.protocol_run_id
RUN = Pod5Run(RUN_ID, "acq", 1_704_067_200_000, 5000, "PAK00000", "sample", "reactor-sim")
TagValue = int | float | str


@dataclass(frozen=True)
class Record:
    """One output read, from either format: its id, bases, qualities and tags."""

    read_id: str
    bases: str
    qualities: str
    tags: dict[str, tuple[str, TagValue]]  # name -> (SAM type, value)

    def tag(self, name: str) -> TagValue | None:
        return self.tags[name][1] if name in self.tags else None

    @property
    def counted_as(self) -> str:
        """The POD5 read this record comes from: its parent when split, else itself."""
        return str(self.tag("pi") or self.read_id)


def _args(*argv: str | Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([str(arg) for arg in argv])


def _fake_dorado(*argv: str | Path) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "reactor", "fake-basecaller", "--dorado", *map(str, argv)]
    return subprocess.run(command, cwd=REPO, capture_output=True, timeout=60, check=False)


def _call(tmp_path: Path, name: str, *argv: str | Path) -> Path:
    """Run the dorado mode in process, its stream into a file; the file."""
    output = tmp_path / name
    with open(output, "wb") as out:
        assert basecall_dorado(_args("--dorado", *argv), out) == 0
    return output


def _bam(path: Path) -> tuple[dict[str, object], list[Record]]:
    """The header (as pysam parses it) and the records of a BAM."""
    with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
        header = bam.header.to_dict()
        records = []
        for segment in bam:
            assert segment.is_unmapped
            assert segment.reference_id == -1
            assert segment.reference_start == -1
            tags = {
                name: ("i" if kind in "cCsSiI" else kind, value)
                for name, value, kind in segment.get_tags(with_value_type=True)
            }
            records.append(
                Record(
                    str(segment.query_name),
                    str(segment.query_sequence),
                    pysam.qualities_to_qualitystring(segment.query_qualities),
                    tags,
                )
            )
    return header, records


def _tag_value(kind: str, text: str) -> TagValue:
    return int(text) if kind == "i" else float(text) if kind == "f" else text


def _fastq(path: Path) -> list[Record]:
    """The records of a FASTQ, each header's tab-separated fields read as SAM tags."""
    records = []
    with dnaio.open(path, fileformat="fastq") as reader:
        for read in reader:
            read_id, *fields = read.name.split("\t")
            tags = {}
            for field in fields:
                name, kind, text = field.split(":", 2)
                tags[name] = (kind, _tag_value(kind, text))
            records.append(Record(read_id, read.sequence, read.qualities, tags))
    return records


@pytest.fixture
def pod5_input(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """An input folder of two real `.pod5` files; their read ids by name. The seeds give
    reads of every kind: dropped, split and written whole."""
    folder = tmp_path / "in"
    folder.mkdir()
    ids = {
        name: write_pod5(folder / name, READS_PER_FILE, seed=seed)
        for seed, name in enumerate(NAMES)
    }
    every = [read_id for file_ids in ids.values() for read_id in file_ids]
    assert any(map(is_dropped, every))
    assert any(map(is_split, every))
    return folder, ids


def _pod5_read(read_id: str, n_samples: int = 300) -> Pod5Read:
    return Pod5Read(read_id, n_samples, 7, 2, 41, 10_000, RUN)


def _ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


# --- the pure functions -------------------------------------------------------------------


def test_about_1_read_in_32_is_dropped_and_1_kept_read_in_16_split() -> None:
    ids = _ids(4000, seed=3)
    dropped = [read_id for read_id in ids if is_dropped(read_id)]
    kept = [read_id for read_id in ids if not is_dropped(read_id)]
    split = [read_id for read_id in kept if is_split(read_id)]
    assert 1 / 64 < len(dropped) / len(ids) < 1 / 16
    assert 1 / 32 < len(split) / len(kept) < 1 / 8
    assert not any(is_split(read_id) for read_id in dropped)
    assert all(called_length(read_id) < MIN_CALLED_BASES for read_id in dropped)


def test_lengths_spread_log_normally_with_a_meaningful_n50() -> None:
    lengths = sorted(called_length(read_id) for read_id in _ids(4000, seed=4))
    kept = [length for length in lengths if length >= MIN_CALLED_BASES]
    assert SHORTEST_BASES <= kept[0] < 500
    assert 20_000 < kept[-1] <= LONGEST_BASES
    assert 3000 <= statistics.median(kept) <= 5000
    half, total, n50 = sum(kept) / 2, 0, 0
    for n50 in reversed(kept):
        total += n50
        if total >= half:
            break
    assert 1.5 * statistics.median(kept) < n50 < 4 * statistics.median(kept)


def test_about_1_read_in_8_has_a_qs_below_10() -> None:
    ids = _ids(4000, seed=5)
    assert 1 / 12 < sum(mean_qscore(read_id) < 10 for read_id in ids) / len(ids) < 1 / 6


def test_barcodes_are_the_kits_twelve_and_about_1_in_10_unclassified() -> None:
    found = Counter(barcode_for(read_id, KIT) for read_id in _ids(3000, seed=6))
    assert 1 / 20 < found.pop(UNCLASSIFIED) / 3000 < 1 / 5
    assert set(found) == {f"{KIT}_barcode{number:02d}" for number in range(1, 13)}
    assert BARCODES_PER_KIT == 12


def test_a_read_group_names_the_run_the_model_and_a_classified_barcode_only() -> None:
    assert read_group_id("run", "model") == "run_model"
    assert read_group_id("run", "model", UNCLASSIFIED) == "run_model"
    assert read_group_id("run", "model", f"{KIT}_barcode03") == f"run_model_{KIT}_barcode03"


def test_start_time_is_utc_to_the_millisecond_as_dorado_writes_it() -> None:
    assert start_time(RUN, 1000) == "2024-01-01T00:00:00.200+00:00"
    assert start_time(RUN, 5000 * 3600 + 1) == "2024-01-01T01:00:00.000+00:00"


def test_a_subread_id_is_a_new_uuid4_per_index_the_same_every_time() -> None:
    parent = "d480865f-9b38-4e80-b042-e325a28f5ab0"
    first, second = subread_id(parent, 0), subread_id(parent, 1)
    assert len({parent, first, second}) == 3
    assert uuid.UUID(first).version == uuid.UUID(second).version == 4
    assert (first, second) == (subread_id(parent, 0), subread_id(parent, 1))


def test_a_dropped_read_gives_no_record() -> None:
    dropped = next(read_id for read_id in _ids(500, seed=7) if is_dropped(read_id))
    assert called_reads(_pod5_read(dropped), "x.pod5", DEFAULT_MODEL, KIT) == []


def test_a_whole_read_carries_every_tag_of_dorado_in_its_order() -> None:
    read_id = next(
        read_id
        for read_id in _ids(100, seed=8)
        if not is_dropped(read_id) and not is_split(read_id)
    )
    (called,) = called_reads(_pod5_read(read_id), "x.pod5", "m", None)
    names = [tag.name for tag in called.tags]
    assert names == [
        "qs",
        "du",
        "ns",
        "ts",
        "mx",
        "ch",
        "st",
        "rn",
        "fn",
        "sm",
        "sd",
        "sv",
        "dx",
        "RG",
    ]
    assert called.read_id == read_id
    assert len(called.bases) == len(called.qualities) == called_length(read_id)
    assert set(called.bases) <= set("ACGT")
    assert len(set(called.qualities)) > 1, "per-base qualities vary"
    assert called.tag("qs") == pytest.approx(mean_qscore(read_id))
    assert called.tag("du") == pytest.approx(300 / 5000)
    assert (called.tag("ns"), called.tag("ts"), called.tag("mx"), called.tag("ch")) == (
        300,
        0,
        2,
        7,
    )
    assert (called.tag("rn"), called.tag("fn"), called.tag("sv"), called.tag("dx")) == (
        41,
        "x.pod5",
        "quantile",
        0,
    )
    assert called.tag("st") == "2024-01-01T00:00:02.000+00:00"
    assert called.tag("RG") == f"{RUN_ID}_m"


def test_a_split_read_becomes_two_subreads_sharing_its_bases_and_signal() -> None:
    parent = next(read_id for read_id in _ids(500, seed=9) if is_split(read_id))
    first, second = called_reads(_pod5_read(parent, 300), "x.pod5", "m", KIT)
    assert (first.read_id, second.read_id) == (subread_id(parent, 0), subread_id(parent, 1))
    assert first.tag("pi") == second.tag("pi") == parent
    assert first.tag("sp") == 0
    assert first.tag("ns") == second.tag("sp")
    assert first.tag("ns") + second.tag("ns") == 300  # type: ignore[operator]
    assert len(first.bases) >= 1
    assert len(second.bases) >= 1
    assert len(first.bases) + len(second.bases) == called_length(parent)
    assert first.tag("rn") == second.tag("rn") == -1  # as dorado marks a subread
    assert first.tag("qs") == pytest.approx(mean_qscore(first.read_id))
    assert second.tag("qs") == pytest.approx(mean_qscore(second.read_id))


def test_fastq_text_is_the_id_then_tab_separated_tags() -> None:
    read_id = next(read_id for read_id in _ids(100, seed=10) if not is_dropped(read_id))
    called = called_reads(_pod5_read(read_id), "x.pod5", "m", None)[0]
    header, bases, plus, qualities = fastq_text(called).splitlines()
    assert header.startswith(f"@{called.read_id}\tqs:f:")
    assert re.fullmatch(r"@\S+(\t[A-Za-z][A-Za-z0-9]:[ifZ]:[^\t]*)+", header)
    assert (bases, plus, qualities) == (called.bases, "+", called.qualities)


# --- the command --------------------------------------------------------------------------


def test_bam_and_fastq_give_the_same_reads_and_tags(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    _, from_bam = _bam(_call(tmp_path, "out.bam", folder, "--kit-name", KIT))
    from_fastq = _fastq(_call(tmp_path, "out.fastq", folder, "--kit-name", KIT, "--emit-fastq"))
    assert [record.read_id for record in from_bam] == [record.read_id for record in from_fastq]
    for bam_record, fastq_record in zip(from_bam, from_fastq, strict=True):
        assert (bam_record.bases, bam_record.qualities) == (
            fastq_record.bases,
            fastq_record.qualities,
        )
        assert list(bam_record.tags) == list(fastq_record.tags)
        for name, (kind, value) in bam_record.tags.items():
            assert fastq_record.tags[name][0] == kind
            expected = pytest.approx(value, rel=1e-6) if kind == "f" else value
            assert fastq_record.tags[name][1] == expected, name


def test_each_pod5_read_is_dropped_written_once_or_split_in_two(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, ids = pod5_input
    _, records = _bam(_call(tmp_path, "out.bam", folder))
    pod5_ids = {read_id for file_ids in ids.values() for read_id in file_ids}
    expected: Counter[str] = Counter()
    for read_id in pod5_ids:
        if not is_dropped(read_id):
            expected[read_id] = 2 if is_split(read_id) else 1
    assert Counter(record.counted_as for record in records) == expected
    for record in records:
        if record.tag("pi") is None:
            assert record.read_id in pod5_ids
        else:
            assert record.read_id not in pod5_ids
            assert record.tag("pi") in pod5_ids
        assert record.tag("fn") in NAMES
        assert record.counted_as in ids[str(record.tag("fn"))]
        assert len(record.bases) == len(record.qualities) >= 1
    assert len({record.read_id for record in records}) == len(records)


def test_reads_through_relative_symlinks_as_an_assigned_folder_holds_them(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    assigned = folder / "ASSIGNED_1_engine"
    assigned.mkdir()
    for name in NAMES:
        (assigned / name).symlink_to(Path("..") / name)
    direct = _fastq(_call(tmp_path, "direct.fastq", folder, "--emit-fastq"))
    linked = _fastq(_call(tmp_path, "linked.fastq", assigned, "--emit-fastq"))
    assert [record.read_id for record in linked] == [record.read_id for record in direct]


def test_barcodes_and_their_read_groups_only_with_a_kit_name(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    _, plain = _bam(_call(tmp_path, "plain.bam", folder, "--model", "fast@v1"))
    assert all(record.tag("BC") is None for record in plain)
    assert {record.tag("RG") for record in plain} == {f"{RUN_ID}_fast@v1"}

    _, barcoded = _bam(_call(tmp_path, "kit.bam", folder, "--model", "fast@v1", "--kit-name", KIT))
    classified = [record for record in barcoded if record.tag("BC") is not None]
    assert 0 < len(classified) < len(barcoded), "some reads are unclassified"
    for record in barcoded:
        barcode = record.tag("BC")
        if barcode is None:
            assert record.tag("RG") == f"{RUN_ID}_fast@v1"
        else:
            assert re.fullmatch(rf"{KIT}_barcode(0[1-9]|1[0-2])", str(barcode))
            assert record.tag("RG") == f"{RUN_ID}_fast@v1_{barcode}"


def test_the_bam_header_has_dorados_pg_and_a_read_group_per_run_and_barcode(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    header, records = _bam(_call(tmp_path, "out.bam", folder, "--kit-name", KIT))
    assert header["HD"] == {"VN": "1.6", "SO": "unknown"}
    (program,) = header["PG"]  # type: ignore[misc]
    assert (program["ID"], program["PN"], program["VN"]) == ("basecaller", "dorado", VERSION)
    # CL last but one, as dorado writes it; pysam reads CL to the end of the line
    command_line, description = program["CL"].split("\t")
    assert command_line.startswith(f"reactor fake-basecaller --dorado {folder} --model ")
    assert command_line.endswith(f"--kit-name {KIT}")
    assert description == "DS:reactor fake-basecaller"
    groups = {group["ID"]: group for group in header["RG"]}  # type: ignore[attr-defined]
    base = f"{RUN_ID}_{DEFAULT_MODEL}"
    assert set(groups) == {base} | {f"{base}_{KIT}_barcode{n:02d}" for n in range(1, 13)}
    assert {record.tag("RG") for record in records} <= set(groups)
    plain = groups[base]
    assert plain["PU"] == DEFAULT_RUN.flow_cell_id
    assert plain["PL"] == "ONT"
    assert plain["DT"] == "2024-01-01T00:00:00.000+00:00"
    assert plain["DS"] == f"basecall_model={DEFAULT_MODEL} runid={RUN_ID}"
    assert plain["LB"] == plain["SM"] == DEFAULT_RUN.sample_id
    third = groups[f"{base}_{KIT}_barcode03"]
    assert third["SM"] == third["al"] == "barcode03"


def test_the_same_input_gives_the_same_records(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    first = _bam(_call(tmp_path, "1.bam", folder, "--kit-name", KIT))
    second = _bam(_call(tmp_path, "2.bam", folder, "--kit-name", KIT))
    assert first == second
    fastq_one = _call(tmp_path, "1.fastq", folder, "--emit-fastq").read_bytes()
    fastq_two = _call(tmp_path, "2.fastq", folder, "--emit-fastq").read_bytes()
    assert fastq_one == fastq_two


def test_the_pod5_reader_gives_each_reads_pore_position_and_run(
    pod5_input: tuple[Path, dict[str, list[str]]],
) -> None:
    folder, ids = pod5_input
    facts = read_facts(folder / NAMES[1])
    assert [fact.read_id for fact in facts] == ids[NAMES[1]]
    assert [fact.read_number for fact in facts] == list(range(READS_PER_FILE))
    assert [fact.start_sample for fact in facts] == [n * 1000 for n in range(READS_PER_FILE)]
    assert all(100 <= fact.n_samples < 400 and fact.well == 1 for fact in facts)
    assert facts[3].channel == 4
    assert facts[0].run == Pod5Run(
        run_id=DEFAULT_RUN.protocol_run_id,
        acquisition_id=DEFAULT_RUN.acquisition_id,
        acquisition_start_ms=1_704_067_200_000,
        sample_rate=DEFAULT_RUN.sample_rate,
        flow_cell_id=DEFAULT_RUN.flow_cell_id,
        sample_id=DEFAULT_RUN.sample_id,
        device="reactor-sim",
    )


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["IN"], "give OUT, the folder for pass/ and fail/, or --dorado to write on stdout"),
        (["IN", "OUT", "--dorado"], "OUT (OUT) is not used with --dorado"),
        (["IN", "OUT", "--emit-fastq", "--kit-name", "K"], "--emit-fastq, --kit-name only work"),
    ],
)
def test_a_wrong_mix_of_arguments_is_one_line_and_exit_2(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(*argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reactor fake-basecaller: {problem}")
    assert err.count("\n") == 1


def test_fail_on_a_present_name_exits_1_before_writing(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    output = tmp_path / "out.bam"
    with open(output, "wb") as out:
        assert basecall_dorado(_args("--dorado", folder, "--fail-on", NAMES[0]), out) == 1
    assert output.read_bytes() == b""


def test_the_help_names_the_default_model() -> None:
    assert DORADO_DEFAULT_MODEL == DEFAULT_MODEL


# --- the command, as a process ------------------------------------------------------------


def test_as_a_process_it_writes_bam_on_stdout_and_a_summary_on_stderr(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    done = _fake_dorado(folder)
    assert done.returncode == 0, done.stderr
    (tmp_path / "stdout.bam").write_bytes(done.stdout)
    _, records = _bam(tmp_path / "stdout.bam")
    _, in_process = _bam(_call(tmp_path, "in-process.bam", folder))
    assert records == in_process
    summary = done.stderr.decode()
    assert re.fullmatch(
        rf"reactor fake-basecaller: files=2 reads={2 * READS_PER_FILE} written={len(records)} "
        r"dropped=[0-9]+ split=[0-9]+ seconds=[0-9]+\.[0-9]{2}\n",
        summary,
    )


def test_crash_after_reads_flushes_what_was_written_and_dies_137(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    everything = _fastq(_call(tmp_path, "all.fastq", folder, "--emit-fastq"))
    crashed = _fake_dorado(folder, "--emit-fastq", "--crash-after-reads", "5")
    assert crashed.returncode == CRASH_EXIT_CODE
    assert b"crashing on purpose after 5 reads" in crashed.stderr
    (tmp_path / "crashed.fastq").write_bytes(crashed.stdout)
    assert _fastq(tmp_path / "crashed.fastq") == everything[:5]


def test_a_crash_in_bam_leaves_the_records_written_before_it(
    pod5_input: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    folder, _ = pod5_input
    _, everything = _bam(_call(tmp_path, "all.bam", folder))
    crashed = _fake_dorado(folder, "--crash-after-reads", "7")
    assert crashed.returncode == CRASH_EXIT_CODE
    (tmp_path / "crashed.bam").write_bytes(crashed.stdout)
    assert _bam(tmp_path / "crashed.bam")[1] == everything[:7]
