"""The crash-states driver (`make crash-states`), quick: it checks what it says it checks,
and exits 1 when the states break the checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.crash_checks import StateChecker
from tests.support.crash_run import record_run
from tests.support.crash_states import crash_states
from tests.system.crash_states import main


def test_the_driver_checks_the_strict_states_then_random_ones_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """400 states: the strict one at each cut point, then random ones; all hold."""
    assert main(["--states", "400", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    checked = re.search(r"states checked +400 \((\d+) strict, (\d+) random\)", out)
    assert checked is not None, out
    strict, random = map(int, checked.groups())
    assert strict + random == 400
    assert random > 0  # every cut point's strict state first, then random ones
    assert re.search(r"violations +0 \(0 kinds\)", out), out
    assert "every read exactly once" in out


def test_the_driver_exits_1_and_lists_violations_when_fsyncs_count_for_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As if durability were off, answers are lost: exit 1, with what was violated."""
    assert main(["--states", "60", "--ignore-fsync"]) == 1
    out = capsys.readouterr().out
    assert "was answered" in out
    assert "every read exactly once" not in out


def test_the_driver_records_and_checks_the_run_in_minknows_layout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--layout minknow`: the same run recorded with its DONEs' reads split into
    fastq_pass/ and fastq_fail/ by the read worker; the strict state at each cut point
    through the last merge holds."""
    assert main(["--states", "300", "--layout", "minknow"]) == 0
    out = capsys.readouterr().out
    assert "in the minknow layout" in out
    assert re.search(r"states checked +300 \(300 strict, 0 random\)", out), out
    assert re.search(r"violations +0 \(0 kinds\)", out), out
    assert "every read exactly once" in out


def test_in_minknows_layout_no_cut_loses_a_split_file_moved_into_a_folder_just_made(
    tmp_path: Path,
) -> None:
    """The first merge makes fastq_pass/ and fastq_fail/ and moves its split files into
    them. A folder whose own name is not durable takes what is moved into it with it at a
    cut (tests/support/powercut_fs.py, "The model, exactly"): reactor once left the new
    folders' names to the barrier after the moves, and a cut that kept a move and not
    the mkdir lost the reads of a decided merge. Now OUTPUTDIR is fsynced right after
    each mkdir: random states at every cut from the first mkdir to the fsync after the
    last move, three seeds, must all hold."""
    recording = record_run(tmp_path / "recorded", "minknow")
    ops = recording.ops
    made = next(
        n for n, op in enumerate(ops) if (op.kind, op.path) == ("mkdir", "output/fastq_pass")
    )
    moved = [n for n, op in enumerate(ops) if op.kind == "rename" and "/fastq_" in op.other]
    synced = next(
        n for n in range(moved[-1], len(ops)) if (ops[n].kind, ops[n].path) == ("fsync", "output")
    )
    checker = StateChecker(recording, tmp_path)
    found: dict[str, tuple[int, int | None]] = {}
    cuts = range(made + 1, synced + 1)  # from the first mkdir to the last move's barrier
    for state in crash_states(recording.base, ops, range(1, 4), strict=False, cuts=cuts):
        for problem in checker.check(state):
            found.setdefault(problem, (state.cut, state.seed))
    assert checker.checked == 3 * len(cuts)
    assert found == {}
