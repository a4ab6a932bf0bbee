"""The engine's pure parts, as tables: host names to engine ids, the back-off schedule,
command templates, /assignwork answers; then its settings and its --help."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reactor.cli import main
from reactor.commands.engine import add_arguments
from reactor.core.names import check_engine_id
from reactor.engine.client import EMPTY, BadAnswer, backoff_delay, parse_assignment
from reactor.engine.command import command_env
from reactor.settings.engine import (
    EngineConfig,
    describe_engine_keys,
    load_engine_config,
    parse_engine_config,
    sanitise_engine_id,
)
from reactor.settings.parsing import ConfigError
from reactor.settings.templates import (
    PRESETS,
    TemplateError,
    expand_command,
    parse_command,
    parse_template,
)

# ----------------------------------------------------------------- engine ids


@pytest.mark.parametrize(
    ("host", "engine_id"),
    [
        ("gpu01", "gpu01"),
        ("gpu01.cluster.example.org", "gpu01.cluster.example.org"),
        ("GPU_node-7", "GPU_node-7"),
        ("my host", "my-host"),
        ("héllo", "h-llo"),
        ("_hidden", "hidden"),
        ("-.-x", "x"),
        ("..", "engine"),
        ("", "engine"),
        ("a" * 100, "a" * 64),
        ("node:1/2", "node-1-2"),
    ],
)
def test_host_names_become_valid_engine_ids(host: str, engine_id: str) -> None:
    assert sanitise_engine_id(host) == engine_id
    assert check_engine_id(engine_id) == engine_id


# ------------------------------------------------------------------- back-off


@pytest.mark.parametrize(
    ("attempt", "first_s", "max_s", "delay_s"),
    [
        (0, 1.0, 30.0, 1.0),
        (1, 1.0, 30.0, 2.0),
        (4, 1.0, 30.0, 16.0),
        (5, 1.0, 30.0, 30.0),
        (1000, 1.0, 30.0, 30.0),
        (0, 0.05, 0.5, 0.05),
        (3, 0.05, 0.5, 0.4),
        (4, 0.05, 0.5, 0.5),
        (-1, 1.0, 30.0, 1.0),
        (0, 2.0, 2.0, 2.0),
    ],
)
def test_backoff_doubles_from_the_first_wait_up_to_the_maximum(
    attempt: int, first_s: float, max_s: float, delay_s: float
) -> None:
    assert backoff_delay(attempt, first_s, max_s) == pytest.approx(delay_s)


# ------------------------------------------------------------------ templates

VALUES = {
    "input_dir": "/runs/in/ASSIGNED_7_gpu",
    "output_dir": "/runs/my out/TMPOUTPUT_7_gpu",
    "model": "hac@v5",
    "job_id": "7",
    "engine_id": "gpu",
    "batch_size": "3",
    "python": "/usr/bin/python3",
}


@pytest.mark.parametrize(
    ("template", "argv"),
    [
        (
            "dorado basecaller {model} {input_dir} --emit-fastq",
            ["dorado", "basecaller", "hac@v5", "/runs/in/ASSIGNED_7_gpu", "--emit-fastq"],
        ),
        # a path with a space stays one argument: no shell ever sees it
        ("cp -r {output_dir} /tmp", ["cp", "-r", "/runs/my out/TMPOUTPUT_7_gpu", "/tmp"]),
        ("tool --out={output_dir}/x", ["tool", "--out=/runs/my out/TMPOUTPUT_7_gpu/x"]),
        ("tool '{job_id} and {engine_id}'", ["tool", "7 and gpu"]),
        ("tool {{literal}} {batch_size}", ["tool", "{literal}", "3"]),
        (
            "{python} -m reactor fake-basecaller",
            ["/usr/bin/python3", "-m", "reactor", "fake-basecaller"],
        ),
        (
            "sh -c 'echo \"$1\" > log' sh {job_id}",
            ["sh", "-c", 'echo "$1" > log', "sh", "7"],
        ),
    ],
)
def test_command_templates_expand_argument_by_argument(template: str, argv: list[str]) -> None:
    assert expand_command(parse_command(template), VALUES) == argv


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("dorado {modle}", "unknown placeholder {modle}"),
        ("tool {}", "unknown placeholder {}"),
        ("tool {0}", "unknown placeholder {0}"),
        ("tool {job_id!r}", "unknown placeholder {job_id!r}"),
        ("tool {batch_size:03d}", "unknown placeholder {batch_size:03d}"),
        ("tool {input_dir.parent}", "unknown placeholder {input_dir.parent}"),
        ("tool {job_id", "unmatched brace"),
        ("tool job_id}", "unmatched brace"),
        ("tool 'unclosed", "check its quotes"),
        ("", "is empty"),
        ("   ", "is empty"),
    ],
)
def test_bad_command_templates_are_refused_with_the_reason(template: str, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_command(template)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_path_template_expands_as_one_string() -> None:
    template = parse_template("{output_dir}/pass/{job_id}.fastq")
    assert template.fields == {"output_dir", "job_id"}
    assert template.expand(VALUES) == "/runs/my out/TMPOUTPUT_7_gpu/pass/7.fastq"


def test_every_preset_parses_and_uses_only_known_placeholders() -> None:
    for preset in PRESETS.values():
        parse_command(preset.command)
        if preset.stdout_to is not None:
            parse_template(preset.stdout_to)


def test_the_command_gets_job_variables_but_never_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REACTOR_ENGINE_TOKEN", "secret")
    env = command_env(VALUES)
    assert "REACTOR_ENGINE_TOKEN" not in env
    assert env["REACTOR_JOB_ID"] == "7"
    assert env["REACTOR_JOB_OUTPUT_DIR"] == VALUES["output_dir"]


# ---------------------------------------------------------- /assignwork answers

ASSIGNED = {
    "jobid": "123",
    "job_input_dir": "ASSIGNED_123_gpu",
    "job_output_dir": "TMPOUTPUT_123_gpu",
    "bc_engine_id": "gpu",
    "batch_size": 2,
    "batch": ["a.pod5", "b.pod5"],
    "report_back_period": 90,
    "report_back_interval": 90,
}


def test_an_assignment_is_read_from_the_seed_fields() -> None:
    assignment = parse_assignment(ASSIGNED)
    assert assignment.job_id == "123"
    assert assignment.batch == ("a.pod5", "b.pod5")
    assert assignment.keepalive_period_s == 45.0
    assert not assignment.empty
    # a host-mode manager's folders are paths below its root
    host = {
        **ASSIGNED,
        "job_input_dir": "grp/s1/20261205_1412_1A_PAW00001_aaaaaaaa/reactor/input/ASSIGNED_1_e",
        "job_output_dir": "grp/pool/reactor/PAW00003_cccccccc/TMPOUTPUT_1_e",
    }
    parsed = parse_assignment(host)
    assert (parsed.job_input_dir, parsed.job_output_dir) == (
        host["job_input_dir"],
        host["job_output_dir"],
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"jobid": "-1", "batch_size": 0, "batch": []},
        {**ASSIGNED, "batch": []},
        {**ASSIGNED, "batch_size": 0},
        {**ASSIGNED, "jobid": "-1"},
    ],
)
def test_nothing_to_do_is_the_empty_assignment(answer: dict[str, Any]) -> None:
    assert parse_assignment(answer) == EMPTY
    assert EMPTY.empty


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ([1, 2], "not a JSON object"),
        ({**ASSIGNED, "job_input_dir": "../etc"}, "not a path of plain names"),
        ({**ASSIGNED, "job_input_dir": "/etc"}, "not a path of plain names"),
        ({**ASSIGNED, "job_input_dir": "g/s/../../etc"}, "not a path of plain names"),
        ({**ASSIGNED, "job_output_dir": "a//b"}, "not a path of plain names"),
        ({**ASSIGNED, "job_output_dir": "a/b/"}, "not a path of plain names"),
        ({**ASSIGNED, "job_output_dir": "/".join("a" * 17)}, "not a path of plain names"),
        ({**ASSIGNED, "job_output_dir": ".hidden"}, "not a path of plain names"),
        ({**ASSIGNED, "job_output_dir": "g/.hidden/x"}, "not a path of plain names"),
        ({**ASSIGNED, "params": {"sample_sheet": "../../etc/x.csv"}}, "not a path of plain"),
        ({**ASSIGNED, "params": {"model": 5}}, "params that are not short texts"),
        ({**ASSIGNED, "jobid": "1/2"}, "not one plain name"),
        ({**ASSIGNED, "jobid": 123}, "no usable 'jobid'"),
        ({**ASSIGNED, "batch": "a.pod5"}, "not a list of names"),
        ({**ASSIGNED, "batch": [1]}, "not a list of names"),
        ({**ASSIGNED, "report_back_interval": 0}, "must be positive"),
        ({**ASSIGNED, "report_back_interval": True}, "report_back_interval"),
        ({k: v for k, v in ASSIGNED.items() if k != "report_back_interval"}, "report_back"),
    ],
)
def test_unusable_assignments_are_refused(answer: object, problem: str) -> None:
    with pytest.raises(BadAnswer) as caught:
        parse_assignment(answer)
    assert problem in str(caught.value)


# ------------------------------------------------------------------ settings


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, str]:
    """The two required folders, as environment variables."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return {
        "REACTOR_ENGINE_INPUT_DIR": str(tmp_path / "in"),
        "REACTOR_ENGINE_OUTPUT_DIR": str(tmp_path / "out"),
    }


def test_defaults_are_those_documented(dirs: dict[str, str]) -> None:
    config = parse_engine_config(cli("--command", "true"), dirs)
    assert config.manager == "http://127.0.0.1:40765"
    assert config.engine_id == sanitise_engine_id(socket.gethostname())
    assert (config.batch_size, config.poll_interval, config.max_poll_interval) == (0, 1.0, 30.0)
    assert (config.grace, config.kill_grace) == (120.0, 10.0)
    assert config.release_after is None  # the first signal waits for the batch
    assert not config.until_empty and not config.once
    assert config.stdout_to is None and config.token is None and config.model is None
    documented = {name: default for name, _env, default, _meaning in describe_engine_keys()}
    assert documented["grace"] == "120.0" and documented["poll_interval"] == "1.0"
    assert documented["release_after"] == "(none)"


@pytest.mark.parametrize(
    ("argv", "env", "file", "seconds"),
    [
        (("--release-after", "240"), {}, {}, 240.0),
        ((), {"REACTOR_ENGINE_RELEASE_AFTER": "120.5"}, {}, 120.5),
        ((), {}, {"release_after": 90}, 90.0),
        (("--release-after", "30"), {"REACTOR_ENGINE_RELEASE_AFTER": "60"}, {}, 30.0),
    ],
)
def test_release_after_from_a_flag_the_environment_or_the_file(
    dirs: dict[str, str],
    argv: tuple[str, ...],
    env: dict[str, str],
    file: dict[str, object],
    seconds: float,
) -> None:
    config = parse_engine_config(cli("--command", "true", *argv), {**dirs, **env}, file)
    assert config.release_after == seconds


def test_a_bad_release_after_in_the_file_is_one_line(dirs: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_engine_config(cli("--command", "true"), dirs, {"release_after": "4 min"})
    assert str(caught.value) == (
        "release_after must be a number of seconds, got a string (from the config file)"
    )


def test_flags_beat_the_environment_which_beats_the_file(
    dirs: dict[str, str], tmp_path: Path
) -> None:
    file = {"batch_size": 5, "poll_interval": 0.5, "grace": 7, "once": True, "model": "m1"}
    env = {**dirs, "REACTOR_ENGINE_BATCH_SIZE": "6", "REACTOR_ENGINE_POLL_INTERVAL": "0.25"}
    config = parse_engine_config(cli("--command", "true", "--batch-size", "8"), env, file)
    assert config.batch_size == 8
    assert config.poll_interval == 0.25
    assert config.grace == 7.0
    assert config.once is True
    assert config.model == "m1"


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("off", False)])
def test_booleans_from_the_environment(dirs: dict[str, str], text: str, value: bool) -> None:
    env = {**dirs, "REACTOR_ENGINE_UNTIL_EMPTY": text, "REACTOR_ENGINE_COMMAND": "true"}
    assert parse_engine_config(cli(), env).until_empty is value


def test_a_preset_fills_command_and_stdout_to_and_an_explicit_stdout_to_wins(
    dirs: dict[str, str],
) -> None:
    config = parse_engine_config(cli("--preset", "dorado-fastq", "--model", "hac"), dirs)
    assert config.command == PRESETS["dorado-fastq"].command
    assert config.stdout_to == "{output_dir}/pass/{job_id}.fastq"
    other = parse_engine_config(
        cli("--preset", "dorado-bam", "--model", "hac", "--stdout-to", "{output_dir}/x.bam"), dirs
    )
    assert other.stdout_to == "{output_dir}/x.bam"


@pytest.mark.parametrize(
    ("preset", "suffix"), [("fake-dorado-bam", "bam"), ("fake-dorado-fastq", "fastq")]
)
def test_the_fake_dorado_presets_write_stdout_into_pass_as_dorados_and_need_no_model(
    dirs: dict[str, str], preset: str, suffix: str
) -> None:
    config = parse_engine_config(cli("--preset", preset), dirs)
    assert config.model is None
    assert config.stdout_to == f"{{output_dir}}/pass/{{job_id}}.{suffix}"
    assert config.stdout_to == PRESETS[f"dorado-{suffix}"].stdout_to
    assert "fake-basecaller --dorado {input_dir}" in config.command
    assert ("--emit-fastq" in config.command) == (
        "--emit-fastq" in PRESETS[f"dorado-{suffix}"].command
    )


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        ((), {}, "command is not set"),
        (("--command", "true", "--preset", "fake"), {}, "both command and preset"),
        (("--preset", "dorado"), {}, "preset must be one of dorado-fastq"),
        (("--command", "tool {modle}"), {}, "unknown placeholder {modle}"),
        (("--command", "true", "--stdout-to", "{out}/x"), {}, "unknown placeholder {out}"),
        (("--preset", "dorado-fastq"), {}, "model is not set"),
        (("--command", "true", "--batch-size", "-1"), {}, "batch_size must be at least 0"),
        (("--command", "true", "--batch-size", "ten"), {}, "batch_size must be a whole number"),
        (("--command", "true", "--poll-interval", "0"), {}, "poll_interval must be more than 0"),
        (("--command", "true", "--max-poll-interval", "0.5"), {}, "shorter than poll_interval"),
        (("--command", "true", "--grace", "-1"), {}, "grace must be 0 or more"),
        (("--command", "true", "--release-after", "0"), {}, "release_after must be more than 0"),
        (
            ("--command", "true"),
            {"REACTOR_ENGINE_RELEASE_AFTER": "soon"},
            "release_after must be a number of seconds such as 2.5, got 'soon' "
            "(from REACTOR_ENGINE_RELEASE_AFTER)",
        ),
        (("--command", "true", "--manager", "ftp://x"), {}, "http:// or https:// URL"),
        (("--command", "true", "--manager", "http://h/?a=1"), {}, "without user, query"),
        (("--command", "true", "--engine-id", "a/b"), {}, "engine_id must be 1-64 letters"),
        (("--command", "true"), {"REACTOR_ENGINE_ONCE": "maybe"}, "once must be true or false"),
        (("--command", "true", "--token", "a b"), {}, "token must not contain spaces"),
    ],
)
def test_a_mistake_is_one_line_naming_the_setting(
    dirs: dict[str, str], argv: tuple[str, ...], env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_engine_config(cli(*argv), {**dirs, **env})
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_folder_is_named_at_start(tmp_path: Path) -> None:
    env = {
        "REACTOR_ENGINE_INPUT_DIR": str(tmp_path / "nope"),
        "REACTOR_ENGINE_OUTPUT_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match=r"input_dir .*nope does not exist"):
        load_engine_config(cli("--command", "true"), env)
    with pytest.raises(ConfigError, match="input_dir is not set"):
        load_engine_config(cli("--command", "true"), {"REACTOR_ENGINE_OUTPUT_DIR": "/tmp"})


def test_a_program_missing_from_path_is_named_at_start(dirs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="program 'no-such-basecaller' is not found"):
        load_engine_config(cli("--command", "no-such-basecaller {input_dir}"), dirs)


def test_the_file_is_toml_with_known_keys_and_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    file = tmp_path / "engine.toml"
    file.write_text('input_dir = "in"\noutput_dir = "out"\ncommand = "true"\nuntil_empty = true\n')
    config = load_engine_config(cli("--config", str(file)), {})
    assert config.input_dir == tmp_path / "in"
    assert config.until_empty is True
    file.write_text('input_dir = "in"\noutput_dir = "out"\ncomand = "true"\n')
    with pytest.raises(ConfigError, match="unknown key 'comand' \\(did you mean 'command'\\?\\)"):
        load_engine_config(cli(), {"REACTOR_ENGINE_CONFIG": str(file)})
    with pytest.raises(ConfigError, match="REACTOR_ENGINE_CONFIG"):
        load_engine_config(cli("--config", str(tmp_path / "missing.toml")), {})


def test_a_config_built_directly_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kill_grace must be 0 or more"):
        EngineConfig(input_dir=tmp_path / "a", output_dir=tmp_path, command="x", kill_grace=-1)


# ---------------------------------------------------------------- command line


def test_help_lists_every_setting_with_its_variable_presets_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["engine", "--help"])
    out = capsys.readouterr().out
    for name, env_var, _default, _meaning in describe_engine_keys():
        assert "--" + name.replace("_", "-") in out
        assert env_var in out
    for preset in PRESETS:
        assert preset in out
    assert "exit codes:" in out
    assert "adjust to your install" in out


def test_the_flags_fit_a_reactor_subcommand() -> None:
    """How cli.py wires it: `reactor engine ...` gets the same flags and help."""
    parser = argparse.ArgumentParser(prog="reactor")
    engine = parser.add_subparsers(dest="command").add_parser("engine")
    add_arguments(engine)
    args = parser.parse_args(["engine", "--once", "--batch-size", "3"])
    assert (args.command, args.once, args.batch_size, args.until_empty) == (
        "engine",
        True,
        "3",
        None,
    )
    assert "exit codes:" in engine.format_help()


def test_a_mistake_on_the_command_line_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in dirs.items():
        monkeypatch.setenv(name, value)
    assert main(["engine", "--command", "tool {nope}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reactor engine: command argument")
    assert err.count("\n") == 1


def test_it_runs_as_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "engine", "--input-dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "reactor engine:" in result.stderr
    assert "Traceback" not in result.stderr
