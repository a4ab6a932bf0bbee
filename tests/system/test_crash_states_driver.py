"""The crash-states driver (`make crash-states`), quick: it checks what it says it checks,
and exits 1 when the states break the checks."""

from __future__ import annotations

import re

import pytest

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
