"""Names that become paths: engine ids, job ids, `.pod5` names, output stems, job folders."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.core.names import (
    ENGINE_ID_MAX_LEN,
    OUTPUT_SUFFIXES,
    Folder,
    InvalidName,
    JobFolder,
    check_engine_id,
    check_job_id,
    is_pod5_name,
    job_tag,
    output_stem,
    parse_job_folder,
)
from reactor.serve.service import new_job_id

GOOD_ENGINE_IDS = [
    "node1",
    "gpu-node01.cluster",
    "engine_1",
    "GPU-Node-07",
    "0",
    "a" * ENGINE_ID_MAX_LEN,
    "host.example.org",
    "slurm-job-123456_0",
]

BAD_ENGINE_IDS = [
    pytest.param("", id="empty"),
    pytest.param("/", id="slash"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="parent-path"),
    pytest.param("a/b", id="inner-slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("-x", id="leading-dash"),
    pytest.param("_x", id="leading-underscore"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("node1\n", id="trailing-newline"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("a b", id="space"),
    pytest.param("x" * 5000, id="5000-chars"),
    pytest.param("a" * (ENGINE_ID_MAX_LEN + 1), id="one-too-long"),
    pytest.param("n\u00f6de", id="non-ascii-letter"),
    pytest.param("node\u0661", id="non-ascii-digit"),
    pytest.param("\uff4e\uff4f\uff44\uff45", id="fullwidth"),
    pytest.param("node;rm", id="semicolon"),
    pytest.param("$HOME", id="dollar"),
]


@pytest.mark.parametrize("engine_id", GOOD_ENGINE_IDS)
def test_check_engine_id_accepts_typical_ids(engine_id: str) -> None:
    assert check_engine_id(engine_id) == engine_id


@pytest.mark.parametrize("engine_id", BAD_ENGINE_IDS)
def test_check_engine_id_rejects_unsafe_ids(engine_id: str) -> None:
    with pytest.raises(InvalidName):
        check_engine_id(engine_id)


def test_invalid_name_is_a_value_error() -> None:
    """Callers that only know ValueError still catch a bad name."""
    with pytest.raises(ValueError, match="engineid"):
        check_engine_id("")


@pytest.mark.parametrize(
    "job_id",
    ["0", "7", "123456789", str(2**128 - 1), "1" * 40],
)
def test_check_job_id_accepts_decimal_ids(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "job_id",
    [
        pytest.param("", id="empty"),
        pytest.param("-1", id="no-work-sentinel"),
        pytest.param("1" * 41, id="41-digits"),
        pytest.param("12a", id="letter"),
        pytest.param(" 1", id="leading-space"),
        pytest.param("1\n", id="trailing-newline"),
        pytest.param("1.0", id="float"),
        pytest.param("0x1f", id="hex"),
        pytest.param("../1", id="parent-path"),
        pytest.param("1/2", id="slash"),
        pytest.param("1\x00", id="nul"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("\uff11", id="fullwidth-digit"),
    ],
)
def test_check_job_id_rejects_anything_but_decimal_digits(job_id: str) -> None:
    with pytest.raises(InvalidName):
        check_job_id(job_id)


def test_new_job_id_is_a_valid_128_bit_decimal() -> None:
    job_id = new_job_id()
    assert check_job_id(job_id) == job_id
    assert 0 <= int(job_id) < 2**128
    assert str(int(job_id)) == job_id  # canonical: no leading zeros


def test_new_job_id_is_unique() -> None:
    ids = {new_job_id() for _ in range(2000)}
    assert len(ids) == 2000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PAK00000_pass_abcdef12_0123abcd_17.pod5", True),
        ("a.pod5", True),
        ("x..pod5", True),
        ("with space.pod5", True),
        (".pod5", False),
        (".hidden.pod5", False),
        ("..pod5", False),
        ("pod5", False),
        ("a.pod5.tmp", False),
        ("a.pod5\n", False),
        ("a.fastq", False),
        ("dir/a.pod5", False),
        ("/abs/a.pod5", False),
        ("../a.pod5", False),
        ("a\x00.pod5", False),
        ("a\nb.pod5", False),
        ("a\tb.pod5", False),
        ("a\x7fb.pod5", False),
        ("", False),
    ],
)
def test_is_pod5_name(name: str, expected: bool) -> None:
    assert is_pod5_name(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PAK00000_pass_abcdef12_0123abcd_17.fastq.gz", "PAK00000_pass_abcdef12_0123abcd_17"),
        ("PAK00000_pass_abcdef12_0123abcd_17.fastq", "PAK00000_pass_abcdef12_0123abcd_17"),
        ("run_1.fq.gz", "run_1"),
        ("run_1.fq", "run_1"),
        ("run_1.bam", "run_1"),
        ("RUN_1.FASTQ.GZ", "RUN_1"),
        ("job_id_123_PAK_17.fastq.gz", "PAK_17"),
        ("job_id_340282366920938463463374607431768211455_PAK_17.bam", "PAK_17"),
        ("job_id_1_job_id_2_x.fastq", "job_id_2_x"),  # only reactor's one tag comes off
        ("job_id_abc_x.fastq", "job_id_abc_x"),  # not a tag: not digits
        ("job_id__x.fastq", "job_id__x"),  # not a tag: no digits
        ("x_job_id_1_y.bam", "x_job_id_1_y"),  # a tag only counts at the front
        ("x.pod5", None),
        ("x.txt", None),
        ("x.fastq.gz.tmp", None),
        ("x.bam.bai", None),
        ("x", None),
    ],
)
def test_output_stem(name: str, expected: str | None) -> None:
    assert output_stem(name) == expected


def _output_stem_by_suffixes(name: str) -> str | None:
    """output_stem as the seed's rule says it, suffix by suffix, for the property below."""
    lower = name.lower()
    for suffix in OUTPUT_SUFFIXES:
        if lower.endswith(suffix):
            stem = name[: -len(suffix)]
            tag = re.match(r"job_id_[0-9]+_", stem)
            return stem[tag.end() :] if tag else stem
    return None


_NAME_PARTS = st.sampled_from(
    # Kelvin sign, capital I with a dot, long s: lower() or case-folding make them ASCII
    [*OUTPUT_SUFFIXES, ".FASTQ", ".Fq.Gz", ".gz", ".", "job_id_", "7", "_", "a", "\u212a",
     "\u0130", "\u017f"]
)  # fmt: skip


@given(st.lists(_NAME_PARTS | st.text(max_size=3), max_size=6).map("".join))
def test_output_stem_reads_the_suffixes_as_the_seed_rule_says(name: str) -> None:
    """Read by its last extensions, a name gives the stem its suffixes give it."""
    assert output_stem(name) == _output_stem_by_suffixes(name)


def test_output_stem_strips_the_tag_job_tag_adds() -> None:
    job_id = new_job_id()
    assert output_stem(f"{job_tag(job_id)}PAK_17.fastq.gz") == "PAK_17"


@pytest.mark.parametrize("kind", list(Folder))
@pytest.mark.parametrize("engine_id", GOOD_ENGINE_IDS)
def test_parse_job_folder_round_trips_job_folder_name(kind: Folder, engine_id: str) -> None:
    folder = JobFolder(kind, "340282366920938463463374607431768211455", engine_id)
    assert parse_job_folder(folder.name) == folder


def test_job_folder_name_has_the_seed_shape() -> None:
    assert JobFolder(Folder.ASSIGNED, "42", "gpu-1").name == "ASSIGNED_42_gpu-1"


def test_job_folder_renamed_keeps_job_and_engine() -> None:
    folder = JobFolder(Folder.ASSIGNED, "42", "engine_1")
    assert folder.renamed(Folder.LOGOUTPUT) == JobFolder(Folder.LOGOUTPUT, "42", "engine_1")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("ASSIGNED", id="kind-only"),
        pytest.param("ASSIGNED_42", id="no-engine-separator"),
        pytest.param("ASSIGNED_42_", id="empty-engine"),
        pytest.param("ASSIGNED__e", id="empty-job"),
        pytest.param("ASSIGNED_abc_e", id="non-decimal-job"),
        pytest.param("ASSIGNED_-1_e", id="negative-job"),
        pytest.param("assigned_42_e", id="lowercase-kind"),
        pytest.param("NOPE_42_e", id="unknown-kind"),
        pytest.param(".reactor-staging-ASSIGNED_42_e", id="staging-name"),
        pytest.param("ASSIGNED_42_..", id="engine-dotdot"),
        pytest.param("ASSIGNED_42_../x", id="engine-parent-path"),
        pytest.param("ASSIGNED_42_e/f", id="engine-slash"),
        pytest.param("ASSIGNED_42_.hidden", id="engine-leading-dot"),
        pytest.param("ASSIGNED_42_e\x00", id="engine-nul"),
        pytest.param("ASSIGNED_42_e\n", id="engine-trailing-newline"),
        pytest.param("ASSIGNED_42_n\u00f6de", id="engine-non-ascii"),
        pytest.param("ASSIGNED_42_" + "e" * (ENGINE_ID_MAX_LEN + 1), id="engine-too-long"),
        pytest.param("ASSIGNED_" + "1" * 41 + "_e", id="job-too-long"),
    ],
)
def test_parse_job_folder_rejects_other_and_unsafe_names(name: str) -> None:
    assert parse_job_folder(name) is None
