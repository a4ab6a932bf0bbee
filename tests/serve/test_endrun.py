"""End of run, the pure part and the settings: when a run is complete, its phase, the
marker format, the command's environment, the stop file's name, and bad settings."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from pathlib import Path

import pytest

from reactor.core.endrun import (
    Phase,
    RunEnd,
    Step,
    next_step,
    phase_of,
    run_env,
    stop_file_filter,
)
from reactor.core.events import Change
from reactor.disk.marker import Marker, MarkerState, read_marker, write_marker
from reactor.disk.stop_file import find_stop_file
from reactor.settings.parsing import ConfigError
from reactor.settings.serve import ServeConfig, load_config, parse_config
from tests.support.endrun import cli

SUMMARY = Path("/run/final_summary_PAK00000_abcdef12_0123abcd.txt")


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return {"REACTOR_INPUT_DIR": str(tmp_path / "in"), "REACTOR_OUTPUT_DIR": str(tmp_path / "out")}


# --- the decision ------------------------------------------------------------------------

# stop file seen, reconciled, complete, pending files, live jobs -> step
STEPS = [
    (False, False, False, 0, 0, Step.WAIT),  # sequencing goes on, even with nothing to do
    (False, False, False, 5, 1, Step.WAIT),
    (True, False, False, 0, 0, Step.RECONCILE),  # look once more before judging
    (True, False, False, 3, 0, Step.RECONCILE),
    (True, True, False, 1, 0, Step.WAIT),  # a file still pending
    (True, True, False, 0, 1, Step.WAIT),  # a job still live
    (True, True, False, 0, 0, Step.COMPLETE),
    (True, True, True, 0, 0, Step.NOTHING),  # complete once, never again
    (True, True, True, 4, 2, Step.NOTHING),  # late files do not reopen the run
]


@pytest.mark.parametrize(("seen", "reconciled", "complete", "pending", "live", "step"), STEPS)
def test_next_step_completes_only_after_the_stop_file_a_reconcile_and_the_last_file(
    seen: bool, reconciled: bool, complete: bool, pending: int, live: int, step: Step
) -> None:
    run_end = RunEnd(SUMMARY if seen else None, reconciled, complete)
    assert next_step(run_end, pending_files=pending, live_jobs=live) is step


@pytest.mark.parametrize(
    ("ready", "seen", "complete", "phase"),
    [
        (False, False, False, Phase.STARTING),
        (False, True, False, Phase.STARTING),
        (True, False, False, Phase.RUNNING),
        (True, True, False, Phase.FINISHING),
        (True, True, True, Phase.COMPLETE),
        (False, True, True, Phase.COMPLETE),  # shutting down after the end: still complete
    ],
)
def test_phase_follows_readiness_stop_file_and_completion(
    ready: bool, seen: bool, complete: bool, phase: Phase
) -> None:
    run_end = RunEnd(SUMMARY if seen else None, reconciled=seen, complete=complete)
    assert phase_of(ready, run_end) is phase


# --- marker and environment ---------------------------------------------------------------


def test_marker_round_trips_through_an_atomic_rewrite(tmp_path: Path) -> None:
    """The marker is written under a .tmp name and renamed; what is read back is equal."""
    path = tmp_path / "reactor-run-complete.json"
    marker = Marker(
        state=MarkerState.CLAIMED,
        completed_at="2026-11-25T10:00:00+00:00",
        stop_file=str(SUMMARY),
        files_done=7,
        files_quarantined=1,
        command=["sbatch", "align.sh"],
        env={"REACTOR_RUN_FILES_DONE": "7"},
        log="/out/reactor-on-complete.log",
    )
    write_marker(path, marker)
    assert read_marker(path) == marker
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no .tmp left


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"state": "weird"}', '{"state": "claimed"}', '{"state": "finished", '
     '"completed_at": "x", "stop_file": "s", "files_done": 1, "files_quarantined": 0, '
     '"command": "not a list"}', '{"state": "finished", "completed_at": "x", "stop_file": "s", '
     '"files_done": 1, "files_quarantined": 0, "env": {"A": 1}}'],
)  # fmt: skip
def test_a_marker_reactor_did_not_write_is_refused_with_a_reason(tmp_path: Path, text: str) -> None:
    path = tmp_path / "reactor-run-complete.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a marker reactor wrote"):
        read_marker(path)


_GOOD = {
    "state": "finished",
    "completed_at": "2026-11-25T10:00:00+00:00",
    "stop_file": "/run/final_summary_x.txt",
    "files_done": 3,
    "files_quarantined": 0,
}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"stop_file": None}, "stop_file must be a string, got null"),
     ({"stop_file": 7}, "stop_file must be a string, got 7"),
     ({"files_done": "3"}, 'files_done must be a whole number, got "3"'),
     ({"files_done": True}, "files_done must be a whole number, got true"),
     ({"state": 1}, "state must be one of claimed, finished"),
     ({"exit_code": "0"}, 'exit_code must be a whole number or null, got "0"'),
     ({"log": ["a"]}, "log must be a string or null"),
     ({"duration_s": "fast"}, "duration_s must be a number or null"),
     ({"completed_at": None}, "completed_at must be a string, got null"),
     ({"version": None}, "version must be a whole number, got null"),
     ({"files_quarantined": None}, "files_quarantined must be a whole number"),
     ({"extra": 1}, "unknown field(s) 'extra'")],
)  # fmt: skip
def test_every_field_of_a_marker_is_checked_for_its_type(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    """A wrong-typed field is a ValueError with its name, never a TypeError at start."""
    path = tmp_path / "reactor-run-complete.json"
    path.write_text(json.dumps(_GOOD | changes))
    with pytest.raises(ValueError, match="not a marker reactor wrote") as caught:
        read_marker(path)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "data", [b"\xff\xfe not utf-8", b"[" * 100_000, json.dumps(_GOOD).encode()[:-1]]
)
def test_a_marker_that_is_not_text_or_json_is_refused_too(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "reactor-run-complete.json"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not a marker reactor wrote"):
        read_marker(path)


def test_a_good_marker_with_optional_fields_left_out_or_null_is_read(tmp_path: Path) -> None:
    path = tmp_path / "reactor-run-complete.json"
    path.write_text(json.dumps(_GOOD | {"exit_code": None, "duration_s": 2}))
    marker = read_marker(path)
    assert marker is not None
    assert (marker.state, marker.stop_file, marker.duration_s) == (
        "finished",
        _GOOD["stop_file"],
        2.0,
    )


def test_writing_the_marker_fsyncs_the_file_then_renames_then_fsyncs_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim must survive a power loss before the command starts."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "reactor-run-complete.json"
    write_marker(path, Marker(MarkerState.CLAIMED, "2026-11-25T10:00:00+00:00", "/s", 1, 0))
    assert steps == ["fsync file", "rename", "fsync folder"]
    assert read_marker(path) is not None


def test_no_marker_reads_as_none(tmp_path: Path) -> None:
    assert read_marker(tmp_path / "reactor-run-complete.json") is None


def test_run_env_adds_the_run_and_drops_tokens_and_systemds_variables(tmp_path: Path) -> None:
    """The command must not speak to systemd for reactor (READY=1, watchdog pings)."""
    base = {"PATH": "/bin", "REACTOR_TOKEN": "secret", "REACTOR_ENGINE_TOKEN": "secret2"}
    systemd = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    systemd |= {"LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "reactor.socket"}
    env = run_env(
        base | systemd | {"WATCHDOG_PID": "4242"},
        input_dir=tmp_path / "run" / "pod5",
        output_dir=tmp_path / "out",
        stop_file=tmp_path / "run" / "final_summary_x.txt",
        marker=tmp_path / "out" / "reactor-run-complete.json",
        counts={"done": 12, "quarantined": 2, "ready": 0},
    )
    assert env == {
        "PATH": "/bin",
        "REACTOR_RUN_INPUT_DIR": str(tmp_path / "run" / "pod5"),
        "REACTOR_RUN_OUTPUT_DIR": str(tmp_path / "out"),
        "REACTOR_RUN_PASS_DIR": str(tmp_path / "out" / "pass"),
        "REACTOR_RUN_FAIL_DIR": str(tmp_path / "out" / "fail"),
        "REACTOR_RUN_DIR": str(tmp_path / "run"),
        "REACTOR_RUN_STOP_FILE": str(tmp_path / "run" / "final_summary_x.txt"),
        "REACTOR_RUN_FILES_DONE": "12",
        "REACTOR_RUN_FILES_QUARANTINED": "2",
        "REACTOR_RUN_MARKER": str(tmp_path / "out" / "reactor-run-complete.json"),
        "REACTOR_RUN_END": "complete",
    }


# --- the stop file ------------------------------------------------------------------------


def test_stop_file_is_found_in_the_input_folder_or_its_parent(tmp_path: Path) -> None:
    """MinKNOW: .pod5 in <run>/pod5/, final_summary in <run>/."""
    pod5 = tmp_path / "run" / "pod5"
    pod5.mkdir(parents=True)
    (pod5 / "PAK00000_pass_a_b_0.pod5").write_bytes(b"")
    (pod5 / "final_summary_dir.txt").mkdir()  # a folder of that name is not the file
    assert find_stop_file(pod5, "final_summary_*.txt") is None
    summary = tmp_path / "run" / "final_summary_PAK00000_a_b.txt"
    summary.write_text("x")
    assert find_stop_file(pod5, "final_summary_*.txt") == summary
    inside = pod5 / "final_summary_PAK00000_a_b.txt"
    inside.write_text("x")
    assert find_stop_file(pod5, "final_summary_*.txt") == inside  # INPUTDIR first


def test_a_custom_stop_file_pattern_is_matched_by_name_case_sensitively(tmp_path: Path) -> None:
    (tmp_path / "final_summary_x.txt").write_text("x")
    (tmp_path / "run_done").write_text("x")
    assert find_stop_file(tmp_path, "RUN_DONE") is None
    (tmp_path / "RUN_DONE").write_text("x")
    assert find_stop_file(tmp_path, "RUN_DONE") == tmp_path / "RUN_DONE"


def test_stop_file_filter_takes_matching_names_but_not_their_removal() -> None:
    accept = stop_file_filter("final_summary_*.txt")
    name = Path("/run/pod5/final_summary_PAK00000_a_b.txt")
    assert accept(Change.CREATED, name)
    assert accept(Change.MOVED_IN, name)
    assert accept(Change.CLOSED, name)
    assert not accept(Change.GONE, name)
    assert not accept(Change.CREATED, Path("/run/pod5/PAK00000_pass_a_b_0.pod5"))
    assert not accept(Change.CREATED, Path("/run/pod5/sequencing_summary_x.txt"))


# --- settings -----------------------------------------------------------------------------


def test_end_of_run_settings_default_to_minknow_no_command_and_staying_up(
    base_env: dict[str, str],
) -> None:
    config = parse_config(cli(), base_env)
    assert (config.stop_file, config.on_complete, config.exit_on_complete) == (
        "final_summary_*.txt",
        None,
        False,
    )


def test_end_of_run_settings_from_flags_environment_and_file(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    config = parse_config(
        cli(
            "--stop-file", "RUN_DONE", "--on-complete", "sbatch 'my align.sh'", "--exit-on-complete"
        ),
        base_env,
    )
    assert (config.stop_file, config.on_complete, config.exit_on_complete) == (
        "RUN_DONE",
        "sbatch 'my align.sh'",
        True,
    )
    env = {**base_env, "REACTOR_EXIT_ON_COMPLETE": "yes", "REACTOR_ON_COMPLETE": "true"}
    assert parse_config(cli(), env).exit_on_complete
    file = tmp_path / "reactor.toml"
    file.write_text('on_complete = ""\nexit_on_complete = true\nstop_file = "DONE*"\n')
    config = load_config(cli("--config", str(file)), base_env)
    assert (config.on_complete, config.exit_on_complete, config.stop_file) == (None, True, "DONE*")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stop-file", ""], "stop_file is empty: give a file name pattern such as"),
        (["--stop-file", "run/final_summary_*.txt"], "stop_file must be a file name pattern"),
        (["--stop-file", "*"], "stop_file '*' would match .pod5 files"),
        (["--stop-file", "*.pod5"], "stop_file '*.pod5' would match .pod5 files"),
        (["--on-complete", "sbatch 'align.sh"], 'on_complete "sbatch \'align.sh" cannot be split'),
    ],
)
def test_bad_end_of_run_settings_give_one_line_that_names_the_key(
    base_env: dict[str, str], argv: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(cli(*argv), base_env)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_exit_on_complete_in_the_environment_must_be_a_boolean(base_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"exit_on_complete must be true or false .*'maybe'"):
        parse_config(cli(), {**base_env, "REACTOR_EXIT_ON_COMPLETE": "maybe"})


def test_an_on_complete_program_that_is_not_there_stops_serve_at_start(
    base_env: dict[str, str],
) -> None:
    """Found out at start, not 48 hours later at the end of the run."""
    with pytest.raises(ConfigError) as caught:
        load_config(cli("--on-complete", "no-such-aligner-xyz --all"), base_env)
    assert str(caught.value) == (
        "on_complete program 'no-such-aligner-xyz' is not found on PATH or is not executable: "
        "install it, give its full path, or fix the command"
    )
    assert load_config(cli("--on-complete", "true --ignored"), base_env).on_complete


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_relative_on_complete_program_is_run_by_its_absolute_path(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command runs in output_dir: `./align.sh` must mean serve's folder there too."""
    script = executable(tmp_path / "here" / "align.sh")
    monkeypatch.chdir(tmp_path / "here")
    config = load_config(cli("--on-complete", "./align.sh --genome 'GRCh 38'"), base_env)
    assert config.on_complete == shlex.join([str(script), "--genome", "GRCh 38"])
    config = load_config(cli("--on-complete", "true --ignored"), base_env)
    assert config.on_complete == shlex.join([str(shutil.which("true")), "--ignored"])


def test_a_relative_on_complete_program_in_the_config_file_is_relative_to_the_file(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every relative path in the file is; from a flag or variable, serve's folder."""
    script = executable(tmp_path / "conf" / "bin" / "align.sh")
    (tmp_path / "conf" / "reactor.toml").write_text('on_complete = "bin/align.sh --all"\n')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(cli("--config", str(tmp_path / "conf" / "reactor.toml")), base_env)
    assert config.on_complete == shlex.join([str(script), "--all"])
    env = {**base_env, "REACTOR_ON_COMPLETE": "bin/align.sh"}
    with pytest.raises(ConfigError) as caught:
        load_config(cli("--config", str(tmp_path / "conf" / "reactor.toml")), env)
    assert str(caught.value) == (
        f"on_complete program 'bin/align.sh' ({tmp_path / 'elsewhere' / 'bin' / 'align.sh'}) "
        "is not found or is not executable: install it, give its full path, or fix the command"
    )


def test_direct_construction_checks_the_end_of_run_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stop_file must be a file name pattern"):
        ServeConfig(input_dir=tmp_path / "i", output_dir=tmp_path / "o", stop_file="a/b")
    with pytest.raises(ConfigError, match="on_complete is blank"):
        ServeConfig(input_dir=tmp_path / "i", output_dir=tmp_path / "o", on_complete="  ")
