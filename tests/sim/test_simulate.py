"""`reactor simulate-run`: a stand-in for MinKNOW writing real `.pod5` files into a run folder."""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import reactor.sim
from reactor.commands.simulate_run import add_arguments, run
from reactor.core.names import POD5_SIGNATURE, is_pod5_name
from reactor.disk.signature import check_pod5
from reactor.sim.pod5_files import pod5_bytes
from reactor.sim.simulate import (
    SimulatedRun,
    WriteStep,
    file_seed,
    piece_bounds,
    plan,
)
from tests.support.paths import REPO
from tests.support.pod5files import read_ids

MINKNOW_NAME = re.compile(r"PAK00000_pass_[0-9a-f]{8}_[0-9a-f]{8}_(\d+)\.pod5")


def _args(directory: Path, *options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([str(directory), "--interval", "0", *options])


# --- the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "interval", "pieces", "piece_interval", "concurrent", "expected"),
    [
        pytest.param(0, 1.0, 4, 0.0, 1, [], id="no files, no steps"),
        pytest.param(1, 1.0, 1, 0.0, 1, [(0.0, 0, 0)], id="one file in one piece"),
        pytest.param(
            3, 1.0, 1, 0.0, 1, [(0.0, 0, 0), (1.0, 1, 0), (2.0, 2, 0)],
            id="files start every interval",
        ),
        pytest.param(
            2, 1.0, 2, 0.25, 1, [(0.0, 0, 0), (0.25, 0, 1), (1.0, 1, 0), (1.25, 1, 1)],
            id="pieces follow every piece interval",
        ),
        pytest.param(
            2, 1.0, 3, 1.0, 1,
            [(0.0, 0, 0), (1.0, 0, 1), (2.0, 0, 2), (2.0, 1, 0), (3.0, 1, 1), (4.0, 1, 2)],
            id="one open file: the next waits for the last piece, which comes first",
        ),
        pytest.param(
            3, 1.0, 3, 1.0, 2,
            [
                (0.0, 0, 0), (1.0, 0, 1), (1.0, 1, 0), (2.0, 0, 2), (2.0, 1, 1),
                (2.0, 2, 0), (3.0, 1, 2), (3.0, 2, 1), (4.0, 2, 2),
            ],
            id="two open files: pieces of both interleave",
        ),
        pytest.param(
            3, 0.0, 2, 1.0, 2,
            [(0.0, 0, 0), (0.0, 1, 0), (1.0, 0, 1), (1.0, 1, 1), (1.0, 2, 0), (2.0, 2, 1)],
            id="interval 0: files start as soon as a slot is free",
        ),
        pytest.param(
            2, 0.0, 2, 0.0, 1, [(0.0, 0, 0), (0.0, 0, 1), (0.0, 1, 0), (0.0, 1, 1)],
            id="all at once: file by file, piece by piece",
        ),
    ],
)  # fmt: skip
def test_plan_schedules_files_and_pieces(
    files: int,
    interval: float,
    pieces: int,
    piece_interval: float,
    concurrent: int,
    expected: list[tuple[float, int, int]],
) -> None:
    assert plan(files, interval, pieces, piece_interval, concurrent) == expected


def test_plan_never_has_more_than_concurrent_files_open() -> None:
    for files, pieces, concurrent in itertools.product((1, 5, 9), (1, 2, 5), (1, 2, 3)):
        open_files: set[int] = set()
        for step in plan(files, 0.3, pieces, 0.1, concurrent):
            if step.piece_index == 0:
                open_files.add(step.file_index)
            assert len(open_files) <= concurrent
            if step.piece_index == pieces - 1:
                open_files.discard(step.file_index)


def test_plan_steps_are_named_tuples_in_time_order() -> None:
    steps = plan(4, 0.5, 3, 0.2, 2)
    assert all(isinstance(step, WriteStep) for step in steps)
    assert [step.at_s for step in steps] == sorted(step.at_s for step in steps)


@pytest.mark.parametrize(
    ("files", "interval", "pieces", "piece_interval", "concurrent"),
    [(-1, 1.0, 1, 0.0, 1), (1, -1.0, 1, 0.0, 1), (1, 1.0, 0, 0.0, 1), (1, 1.0, 1, -0.1, 1),
     (1, 1.0, 1, 0.0, 0)],
)  # fmt: skip
def test_plan_rejects_impossible_schedules(
    files: int, interval: float, pieces: int, piece_interval: float, concurrent: int
) -> None:
    with pytest.raises(ValueError, match="must"):
        plan(files, interval, pieces, piece_interval, concurrent)


# --- pieces, seeds, names ---------------------------------------------------------------


def test_every_partial_file_has_the_head_signature_but_not_the_tail_one() -> None:
    data = pod5_bytes(3, seed=1)
    bounds = piece_bounds(len(data), 5)
    assert bounds[0] == 0
    assert bounds[-1] == len(data)
    for end in bounds[1:-1]:
        assert data[:end].startswith(POD5_SIGNATURE)
        assert not data[:end].endswith(POD5_SIGNATURE)
    assert data.endswith(POD5_SIGNATURE)


def test_piece_bounds_refuses_pieces_smaller_than_the_signature() -> None:
    assert piece_bounds(90, 10) == [9 * i for i in range(11)]
    with pytest.raises(ValueError, match="use fewer --pieces"):
        piece_bounds(80, 10)
    with pytest.raises(ValueError, match="at least 1"):
        piece_bounds(80, 0)


def test_file_seeds_are_deterministic_and_distinct() -> None:
    seeds = [file_seed(1, batch) for batch in range(100)]
    assert seeds == [file_seed(1, batch) for batch in range(100)]
    assert len(set(seeds + [file_seed(2, batch) for batch in range(100)])) == 200


def test_simulated_run_names_follow_minknow() -> None:
    sim = SimulatedRun("PAK00000", "abcdef12-0000-4000-8000-000000000000", "0123abcd" * 5)
    assert sim.pod5_name(17) == "PAK00000_pass_abcdef12_0123abcd_17.pod5"
    assert sim.summary_name == "final_summary_PAK00000_abcdef12_0123abcd.txt"
    assert is_pod5_name(sim.pod5_name(0))
    assert SimulatedRun.from_seed("PAK00000", 7) == SimulatedRun.from_seed("PAK00000", 7)
    assert SimulatedRun.from_seed("PAK00000", 7) != SimulatedRun.from_seed("PAK00000", 8)


def test_summary_text_is_minknow_key_value_lines() -> None:
    sim = SimulatedRun.from_seed("PAK00000", 1)
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    fields = dict(line.split("=", 1) for line in sim.summary_text(12, when, when).splitlines())
    assert fields["pod5_files_in_final_dest"] == "12"
    assert fields["flow_cell_id"] == "PAK00000"
    assert fields["protocol_run_id"] == sim.protocol_run_id
    assert fields["started"] == "2024-01-01T00:00:00+00:00"
    assert {"instrument", "acquisition_stopped"} <= fields.keys()


# --- the command ------------------------------------------------------------------------


def _batch(path: Path) -> int:
    """The batch number of a MinKNOW-named `.pod5` (fails the test for any other name)."""
    match = MINKNOW_NAME.fullmatch(path.name)
    assert match is not None, path.name
    return int(match[1])


def _complete(path: Path) -> bool:
    check = check_pod5(path)
    return check is not None and check.complete


def _pod5_files(directory: Path) -> list[Path]:
    return sorted((path for path in directory.iterdir() if path.suffix == ".pod5"), key=_batch)


def test_run_writes_complete_minknow_files_and_a_final_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert run(_args(run_dir, "--files", "4", "--reads-per-file", "5", "--concurrent", "2")) == 0

    files = _pod5_files(run_dir)
    assert [_batch(path) for path in files] == [0, 1, 2, 3]
    assert all(_complete(path) for path in files)
    ids = [read_ids(path) for path in files]
    assert all(len(file_ids) == 5 for file_ids in ids)
    assert len({read_id for file_ids in ids for read_id in file_ids}) == 20
    (summary,) = run_dir.glob("final_summary_PAK00000_*.txt")
    assert "pod5_files_in_final_dest=4\n" in summary.read_text()
    assert sorted(path.name for path in run_dir.iterdir() if path.name.startswith(".")) == []
    out = capsys.readouterr().out.splitlines()
    assert out == [f"file {path.name} reads=5" for path in files]


def test_read_ids_follow_the_seed(tmp_path: Path) -> None:
    """The same seed gives the same file names and read ids; another seed, other ones."""
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert run(_args(tmp_path / name, "--files", "2", "--reads-per-file", "3", "--seed", seed,
                         "--quiet")) == 0  # fmt: skip

    def ids(name: str) -> list[tuple[str, list[str]]]:
        return [(path.name, read_ids(path)) for path in _pod5_files(tmp_path / name)]

    assert ids("a") == ids("b")
    assert not {r for _, file_ids in ids("a") for r in file_ids} & {
        r for _, file_ids in ids("c") for r in file_ids
    }
    assert {name for name, _ in ids("a")}.isdisjoint(name for name, _ in ids("c"))


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_args(tmp_path, "--files", "1", "--reads-per-file", "1", "--quiet")) == 0
    assert capsys.readouterr().out == ""


def test_zero_files_is_a_run_with_only_a_final_summary(tmp_path: Path) -> None:
    assert run(_args(tmp_path, "--files", "0", "--quiet")) == 0
    (only,) = tmp_path.iterdir()
    assert only.name.startswith("final_summary_")
    assert "pod5_files_in_final_dest=0\n" in only.read_text()


def test_refuses_to_overwrite_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(tmp_path, "--files", "1", "--reads-per-file", "1", "--quiet")) == 0
    assert run(_args(tmp_path, "--files", "2", "--reads-per-file", "1", "--quiet")) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(list(tmp_path.glob("*.pod5"))) == 1


def test_too_many_pieces_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(tmp_path, "--files", "1", "--reads-per-file", "1", "--pieces", "9999")) == 2
    assert "use fewer --pieces" in capsys.readouterr().err
    assert list(tmp_path.glob("*.pod5")) == []


@pytest.mark.parametrize(
    "options",
    [["--files", "-1"], ["--interval", "-1"], ["--pieces", "0"], ["--concurrent", "0"],
     ["--reads-per-file", "0"], ["--flow-cell", "PAK_1"], ["--piece-interval", "nan"]],
)  # fmt: skip
def test_bad_options_are_rejected_by_the_parser(tmp_path: Path, options: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _args(tmp_path, *options)
    assert exit_info.value.code == 2


def test_without_pod5_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pod5", None)  # `import pod5` now raises ImportError
    monkeypatch.delitem(sys.modules, "reactor.sim.pod5_files")
    monkeypatch.delattr(reactor.sim, "pod5_files")
    assert run(_args(tmp_path / "run")) == 2
    assert capsys.readouterr().err == (
        "reactor simulate-run: needs the pod5 library: pip install 'pod5-reactor[sim]'\n"
    )
    assert not (tmp_path / "run").exists()


def test_sigint_stops_cleanly_with_exit_130(tmp_path: Path) -> None:
    """Interrupted: exit 130, no staging names, no final summary; finished files complete."""
    command = [sys.executable, "-m", "reactor", "simulate-run", str(tmp_path), "--files", "1000",
               "--reads-per-file", "2", "--interval", "0.02", "--pieces", "2",
               "--piece-interval", "0.01"]  # fmt: skip
    with subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test runner started in the background may ignore SIGINT; the child must not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as child:
        assert child.stdout is not None
        first = child.stdout.readline()  # blocks until the first file is complete
        assert first.startswith("file PAK00000_pass_")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "interrupted after" in err
    assert "Traceback" not in err
    names = os.listdir(tmp_path)
    assert [name for name in names if not MINKNOW_NAME.fullmatch(name)] == []
    completed = [line.split()[1] for line in [first, *out.splitlines()]]
    assert all(_complete(tmp_path / name) for name in completed)
    assert 0 < len(names) < 1000
