"""When a run is stalled: quiet long enough, and nothing waiting for an engine."""

from __future__ import annotations

from pathlib import Path

from reactor.core.endrun import Phase, RunEnd, is_stalled, phase_of, run_env


def test_a_run_stalls_only_when_quiet_with_nothing_for_engines() -> None:
    assert is_stalled(quiet_s=3600, stall_after_s=3600, ready=0, live_jobs=0)
    assert not is_stalled(quiet_s=3599, stall_after_s=3600, ready=0, live_jobs=0)
    assert not is_stalled(quiet_s=9999, stall_after_s=3600, ready=1, live_jobs=0), (
        "waits for engines"
    )
    assert not is_stalled(quiet_s=9999, stall_after_s=3600, ready=0, live_jobs=1), "a job is out"
    assert not is_stalled(quiet_s=9999, stall_after_s=0, ready=0, live_jobs=0), "0: off"


def test_the_phase_says_stalled_until_the_run_completes() -> None:
    end = RunEnd(stalled=True)
    assert phase_of(True, end) is Phase.STALLED
    assert phase_of(False, end) is Phase.STARTING
    end.complete = True
    assert phase_of(True, end) is Phase.COMPLETE


def test_a_run_closed_without_a_stop_file_says_so_to_on_complete(tmp_path: Path) -> None:
    env = run_env(
        {"PATH": "/bin"},
        input_dir=tmp_path / "run" / "pod5",
        output_dir=tmp_path / "run" / "reactor",
        stop_file=None,
        marker=tmp_path / "m.json",
        counts={"done": 3},
        run_dir=tmp_path / "run",
        end="closed: MinKNOW crashed",
    )
    assert env["REACTOR_RUN_STOP_FILE"] == ""
    assert env["REACTOR_RUN_DIR"] == str(tmp_path / "run")
    assert env["REACTOR_RUN_END"] == "closed: MinKNOW crashed"
    assert env["REACTOR_RUN_FILES_DONE"] == "3"
