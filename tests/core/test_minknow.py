"""MinKNOW's names: run folders, POD5 names in every form, final summaries."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from reactor.core.minknow import (
    Adoption,
    Pod5Name,
    ReadKind,
    RunKey,
    Sources,
    adoption,
    basecalling_enabled,
    final_summary_key,
    is_barcode_folder,
    parse_pod5_name,
    parse_run_folder,
    pod5_name,
    summary_fields,
    work_folders,
)

HEX = "0123456789abcdef"


def test_the_specifications_example_names() -> None:
    # ont-output-specifications' example, and the older and barcoded forms
    assert parse_pod5_name("PAA12345_fd97ea7b_0f1d7e9e_57.pod5") == Pod5Name(
        RunKey("PAA12345", "fd97ea7b"), "0f1d7e9e", 57
    )
    assert parse_pod5_name("PAA12345_skip_fd97ea7b_0f1d7e9e_0.pod5") == Pod5Name(
        RunKey("PAA12345", "fd97ea7b"), "0f1d7e9e", 0, ReadKind.SKIP
    )
    assert parse_pod5_name("FAL12345_pass_barcode01_fd97ea7b_0f1d7e9e_3.pod5") == Pod5Name(
        RunKey("FAL12345", "fd97ea7b"), "0f1d7e9e", 3, ReadKind.PASS, "barcode01"
    )
    assert parse_pod5_name("FAL12345_fail_my_sample_A_fd97ea7b_0f1d7e9e_12.pod5") == Pod5Name(
        RunKey("FAL12345", "fd97ea7b"), "0f1d7e9e", 12, ReadKind.FAIL, "my_sample_A"
    )
    assert parse_pod5_name("FAL12345_fail_fd97ea7b_0f1d7e9e_12.pod5") == Pod5Name(
        RunKey("FAL12345", "fd97ea7b"), "0f1d7e9e", 12, ReadKind.FAIL
    )


def test_names_of_no_minknow_form_are_not_parsed() -> None:
    for name in [
        "reads.pod5",
        "PAA12345_fd97ea7b_0f1d7e9e.pod5",  # no batch
        "PAA12345_fd97ea7_0f1d7e9e_1.pod5",  # 7 characters
        "PAA12345_fd97ea7b_0f1d7e9e_1.pod5.tmp",
        "PAA12345_zz97ea7b_0f1d7e9e_1.pod5",  # not hex
        "_fd97ea7b_0f1d7e9e_1.pod5",
        "PAA12345_fd97ea7b_0f1d7e9e_-1.pod5",
    ]:
        assert parse_pod5_name(name) is None, name


def test_run_folders() -> None:
    run = parse_run_folder("20261205_1412_P2S-12345-A_PAW12345_FD97EA7B")
    assert run is not None
    assert (run.started, run.device, run.key) == (
        "20261205_1412",
        "P2S-12345-A",
        RunKey("PAW12345", "fd97ea7b"),
    )
    assert str(run.key) == "PAW12345_fd97ea7b"
    for name in ["pod5", "20261205_1412_1A_PAW12345", "2026120_1412_1A_PAW12345_fd97ea7b", ".x"]:
        assert parse_run_folder(name) is None, name


def test_final_summaries() -> None:
    assert final_summary_key("final_summary_PAW12345_fd97ea7b_0f1d7e9e.txt") == RunKey(
        "PAW12345", "fd97ea7b"
    )
    assert final_summary_key("final_summary_PAW12345_fd97ea7b.txt") == RunKey(
        "PAW12345", "fd97ea7b"
    )
    assert final_summary_key("sequencing_summary_PAW12345_fd97ea7b_0f1d7e9e.txt") is None
    assert final_summary_key("final_summary_PAW12345_fd97ea7b_0f1d7e9e.txt.tmp") is None


def test_barcode_folders() -> None:
    assert is_barcode_folder("barcode01")
    assert is_barcode_folder("unclassified")
    assert not is_barcode_folder(".hidden")
    assert not is_barcode_folder("")
    assert not is_barcode_folder("a\nb")


tokens = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12).filter(
    lambda t: t[0] != "-"
)
hex8 = st.text(HEX, min_size=8, max_size=8)
aliases = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=20).filter(
    lambda t: t[0] not in "_-" and not t.endswith("_") and "__" not in t
)


@st.composite
def pod5_names(draw: st.DrawFn) -> Pod5Name:
    kind = draw(st.sampled_from(ReadKind))
    # MinKNOW puts a barcode alias only after pass/fail/skip
    alias = None if kind is ReadKind.ANY else draw(st.none() | aliases)
    return Pod5Name(
        key=RunKey(draw(tokens), draw(hex8)),
        acquisition_run=draw(hex8),
        batch=draw(st.integers(0, 999_999_999)),
        kind=kind,
        alias=alias,
    )


@given(pod5_names())
def test_every_name_minknow_makes_reads_back_as_its_parts(parts: Pod5Name) -> None:
    name = pod5_name(parts)
    assert parse_pod5_name(name) == parts
    # and the run is told by name alone, whatever the form
    assert parse_pod5_name(name).key == parts.key  # type: ignore[union-attr]


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_without_error(name: str) -> None:
    parsed = parse_pod5_name(name)
    if parsed is not None:
        assert name.endswith(".pod5")
        assert name.startswith(parsed.key.flow_cell + "_")
        assert f"_{parsed.acquisition_run}_{parsed.batch}.pod5" in name.lower()


def test_adoption_takes_new_runs_and_live_ones_and_leaves_the_archive() -> None:
    since = 1_000.0
    adopt, leave = Adoption.ADOPT, Adoption.LEAVE
    # started after `since`: served, finished or not
    assert adoption(complete=True, started=1_500.0, active=1_600.0, since=since) is adopt
    assert adoption(complete=False, started=1_000.0, active=1_000.0, since=since) is adopt
    # started before, still written to: a long run, live
    assert adoption(complete=False, started=10.0, active=1_200.0, since=since) is adopt
    assert adoption(complete=False, started=None, active=1_200.0, since=since) is adopt
    # started before and finished: the archive
    assert adoption(complete=True, started=10.0, active=1_200.0, since=since) is leave
    # started before, no final summary, quiet since: a crashed run of long ago
    assert adoption(complete=False, started=10.0, active=999.0, since=since) is leave
    assert adoption(complete=True, started=None, active=5_000.0, since=since) is leave


def test_what_is_work_follows_the_runs_own_files() -> None:
    both = ("pod5", "pod5_skip")
    # not basecalled by MinKNOW: every POD5 folder
    assert work_folders(("pod5",)).folders == ("pod5",)
    assert work_folders(("pod5_fail", "pod5_pass")).folders == ("pod5_fail", "pod5_pass")
    # basecalled live, by whichever sign comes first
    for kw in (
        {"outputs": ("fastq_pass",)},
        {"outputs": ("bam_pass", "bam_fail")},
        {"basecalled": True},
    ):
        decision = work_folders(both, **kw)  # type: ignore[arg-type]
        assert (decision.folders, decision.skip_only) == (("pod5_skip",), True), kw
    assert work_folders(both).folders == ("pod5_skip",), "pod5_skip/ says it too"
    # basecalled live, nothing skipped yet: nothing is work, pod5_skip/ is waited for
    early = work_folders(("pod5",), outputs=("fastq_pass",))
    assert (early.folders, early.skip_only) == ((), True)
    # the final summary has the last word
    assert work_folders(both, outputs=("fastq_pass",), basecalled=False).folders == both
    # the setting overrides all of it
    assert work_folders(both, sources=Sources.ALL, basecalled=True).folders == both
    assert work_folders(both, sources=Sources.POD5).folders == ("pod5",)
    assert work_folders(both, sources=Sources.POD5_SKIP).folders == ("pod5_skip",)
    assert "MinKNOW basecalled live" in work_folders(both, basecalled=True).reason


def test_a_final_summary_says_whether_minknow_basecalled() -> None:
    text = "instrument=X\nbasecalling_enabled=1\nnot a field\n=x\nsample_id = s \n"
    fields = summary_fields(text)
    assert fields == {"instrument": "X", "basecalling_enabled": "1", "sample_id": "s"}
    assert basecalling_enabled(fields) is True
    assert basecalling_enabled({"basecalling_enabled": "0"}) is False
    assert basecalling_enabled({}) is None
    assert basecalling_enabled({"basecalling_enabled": "maybe"}) is None
