"""Settings: defaults, precedence, validation messages, listen/allow parsing, folder checks."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
from pathlib import Path

import pytest

from reactor.settings.network import same_listen
from reactor.settings.parsing import ConfigError, ConfigFile, read_config_file
from reactor.settings.serve import (
    UNSET,
    ServeConfig,
    add_config_arguments,
    check_folders,
    describe_keys,
    load_config,
    parse_config,
    prepare_output_dirs,
    serving_passed_sockets,
)
from tests.support.paths import REPO


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def run_dirs(tmp_path: Path) -> tuple[Path, Path]:
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    output_dir.mkdir()
    return input_dir, output_dir


@pytest.fixture
def base_env(run_dirs: tuple[Path, Path]) -> dict[str, str]:
    """The two required folders, set the way systemd would: in the environment."""
    return {"REACTOR_INPUT_DIR": str(run_dirs[0]), "REACTOR_OUTPUT_DIR": str(run_dirs[1])}


# --- defaults and documentation ---------------------------------------------------------

DEFAULTS = [
    ("listen", "127.0.0.1:40765"),
    ("host", "127.0.0.1"),
    ("port", 40765),
    ("batch_size", 10),
    ("report_back_interval", 90.0),
    ("sweep_interval", 5.0),
    ("max_attempts", 3),
    ("shutdown_interval", 100.0),
    ("observer", "native"),
    ("poll_interval", 2.0),
    ("settle_seconds", 5.0),
    ("reconcile_interval", 300.0),
    ("stop_file", "final_summary_*.txt"),
    ("on_complete", None),
    ("exit_on_complete", False),
    ("token", None),
    ("allow", ()),
    ("log_level", "info"),
    ("log_format", "auto"),
]


@pytest.mark.parametrize(("attr", "expected"), DEFAULTS)
def test_unset_keys_take_their_defaults(
    base_env: dict[str, str], attr: str, expected: object
) -> None:
    config = parse_config(cli(), base_env)
    assert getattr(config, attr) == expected


def test_describe_keys_lists_every_field_in_order_with_its_default() -> None:
    rows = describe_keys()
    fields = [f.name for f in dataclasses.fields(ServeConfig) if f.name != "fleet"]
    assert [row[0] for row in rows] == fields  # the fleet: a table of its own keys
    for name, default_text, meaning in rows:
        default = next(f.default for f in dataclasses.fields(ServeConfig) if f.name == name)
        if default is dataclasses.MISSING:
            assert default_text == "(required)"
        elif default == UNSET:  # input_dir, output_dir: one run's, or host mode's none
            assert default_text == "(one run)"
        elif name == "output_root":
            assert default is None
            assert default_text == "(in each run)"
        elif name == "min_qscore":  # unset: chosen by the run's model
            assert default is None
            assert default_text == "(by model)"
        elif default in (None, ()):
            assert default_text == "(none)"
        elif isinstance(default, bool):
            assert default_text == str(default).lower()  # as TOML writes it
        else:
            assert default_text == str(default)
        assert meaning.endswith(".")


@pytest.mark.parametrize(
    ("argv", "insecure"),
    [(["--insecure"], True), ([], False)],
)
def test_insecure_lets_serve_listen_beyond_loopback_without_a_rule(
    tmp_path: Path, argv: list[str], insecure: bool
) -> None:
    """--insecure is the explicit way to listen on a public address with no token and
    no allow list; without it, that configuration is refused."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
         "--listen", "0.0.0.0:40765", *argv]
    )  # fmt: skip
    if insecure:
        assert load_config(args, {}).insecure
    else:
        with pytest.raises(ConfigError, match="--insecure"):
            load_config(args, {})


def test_readme_settings_table_shows_every_key_default_and_meaning() -> None:
    """The README's settings table must not drift from describe_keys()."""
    readme = (REPO / "README.md").read_text()
    for name, default, meaning in describe_keys():
        shown = default if default.startswith("(") else f"`{default}`"
        assert f"| `{name}` | {shown} | {meaning} |" in readme, name


def test_every_key_has_a_flag_that_defaults_to_none() -> None:
    args = cli()
    assert args.config is None
    for name, _, _ in describe_keys():
        assert getattr(args, name) is None
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert "--report-back-interval" in parser.format_help()


# --- precedence -------------------------------------------------------------------------

# key, TOML line, its value, env text, its value, flag text, its value, default
PRECEDENCE = [
    ("batch_size", "batch_size = 11", 11, "12", 12, "13", 13, 10),
    ("sweep_interval", "sweep_interval = 1", 1.0, "2.5", 2.5, "0.25", 0.25, 5.0),
    ("listen", 'listen = "localhost:1"', "localhost:1", "2", "2", "[::1]:3", "[::1]:3",
     "127.0.0.1:40765"),
    ("log_level", 'log_level = "debug"', "debug", "WARNING", "warning", "error", "error", "info"),
    ("observer", 'observer = "polling"', "polling", "native", "native", "polling", "polling",
     "native"),
    ("token", 'token = "file"', "file", "env", "env", "flag", "flag", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "layers", ["", "file", "env", "flag", "file+env", "file+flag", "env+flag", "file+env+flag"]
)
@pytest.mark.parametrize(
    ("key", "toml_line", "file_value", "env_text", "env_value", "flag_text", "flag_value", "dflt"),
    PRECEDENCE,
    ids=[case[0] for case in PRECEDENCE],
)
def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path,
    base_env: dict[str, str],
    layers: str,
    key: str,
    toml_line: str,
    file_value: object,
    env_text: str,
    env_value: object,
    flag_text: str,
    flag_value: object,
    dflt: object,
) -> None:
    present = set(layers.split("+")) - {""}
    config_file = tmp_path / "reactor.toml"
    config_file.write_text(toml_line + "\n" if "file" in present else "")
    env = {**base_env, "REACTOR_CONFIG": str(config_file)}
    if "env" in present:
        env[f"REACTOR_{key.upper()}"] = env_text
    argv = [f"--{key.replace('_', '-')}", flag_text] if "flag" in present else []
    by_layer = {"flag": flag_value, "env": env_value, "file": file_value}
    winner = next((by_layer[layer] for layer in ("flag", "env", "file") if layer in present), dflt)
    assert getattr(load_config(cli(*argv), env), key) == winner


def test_config_flag_beats_config_variable(tmp_path: Path, base_env: dict[str, str]) -> None:
    flag_file, env_file = tmp_path / "flag.toml", tmp_path / "env.toml"
    flag_file.write_text("batch_size = 1\n")
    env_file.write_text("batch_size = 2\n")
    env = {**base_env, "REACTOR_CONFIG": str(env_file)}
    assert load_config(cli("--config", str(flag_file)), env).batch_size == 1


def test_empty_environment_variable_counts_as_unset(base_env: dict[str, str]) -> None:
    file = ConfigFile(Path("/etc/reactor.toml"), {"batch_size": 7, "allow": ["10.0.0.0/8"]})
    env = {**base_env, "REACTOR_BATCH_SIZE": "", "REACTOR_ALLOW": ""}
    config = parse_config(cli(), env, file)
    assert (config.batch_size, config.allow) == (7, (ipaddress.ip_network("10.0.0.0/8"),))


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    config_file = tmp_path / "reactor.toml"
    config_file.write_text('input_dir = "in"\noutput_dir = "out"\n')
    config = load_config(cli("--config", str(config_file)), {})
    assert (config.input_dir, config.output_dir) == (tmp_path / "in", tmp_path / "out")


def test_choices_are_case_insensitive(base_env: dict[str, str]) -> None:
    config = parse_config(cli("--observer", "POLLING", "--log-format", "Json"), base_env)
    assert (config.observer, config.log_format) == ("polling", "json")


# --- validation messages ----------------------------------------------------------------

# id, flags, extra env, TOML values (None: no file), words the message must hold
ERRORS: list[tuple[str, list[str], dict[str, str], dict[str, object] | None, list[str]]] = [
    ("batch_size_zero", ["--batch-size", "0"], {}, None,
     ["batch_size", "at least 1", "got 0", "--batch-size"]),
    ("batch_size_word", [], {"REACTOR_BATCH_SIZE": "ten"}, None,
     ["batch_size", "whole number", "'ten'", "REACTOR_BATCH_SIZE"]),
    ("batch_size_float_in_file", [], {}, {"batch_size": 2.5},
     ["batch_size", "whole number", "a number", "reactor.toml"]),
    ("batch_size_bool_in_file", [], {}, {"batch_size": True},
     ["batch_size", "whole number", "a boolean"]),
    ("max_attempts_zero", ["--max-attempts", "0"], {}, None, ["max_attempts", "at least 1"]),
    ("report_back_interval_zero", ["--report-back-interval", "0"], {}, None,
     ["report_back_interval", "more than 0 seconds"]),
    ("report_back_interval_string_in_file", [], {}, {"report_back_interval": "90"},
     ["report_back_interval", "number of seconds", "a string"]),
    ("sweep_interval_negative", [], {"REACTOR_SWEEP_INTERVAL": "-1"}, None,
     ["sweep_interval", "more than 0 seconds", "REACTOR_SWEEP_INTERVAL"]),
    ("poll_interval_word", ["--poll-interval", "fast"], {}, None,
     ["poll_interval", "number of seconds such as 2.5", "'fast'"]),
    ("settle_seconds_nan", ["--settle-seconds", "nan"], {}, None, ["settle_seconds", "finite"]),
    ("shutdown_interval_inf_in_file", [], {}, {"shutdown_interval": float("inf")},
     ["shutdown_interval", "finite"]),
    ("shutdown_interval_negative", ["--shutdown-interval", "-1"], {}, None,
     ["shutdown_interval", "0 or more seconds"]),
    ("reconcile_interval_negative", ["--reconcile-interval", "-5"], {}, None,
     ["reconcile_interval", "0 or more seconds"]),
    ("observer_unknown", ["--observer", "inotify"], {}, None,
     ["observer", "one of native, polling", "'inotify'"]),
    ("log_level_unknown", [], {"REACTOR_LOG_LEVEL": "verbose"}, None,
     ["log_level", "one of debug, info, warning, error"]),
    ("log_format_unknown", ["--log-format", "xml"], {}, None,
     ["log_format", "one of auto, json, console"]),
    ("listen_ipv6_without_brackets", ["--listen", "::1:40765"], {}, None,
     ["listen", "brackets", "[::1]:40765"]),
    ("listen_port_word", ["--listen", "localhost:http"], {}, None,
     ["listen", "port must be a number from 1 to 65535"]),
    ("listen_port_too_big", ["--listen", "127.0.0.1:70000"], {}, None,
     ["listen", "1 to 65535", "'70000'"]),
    ("listen_port_zero", ["--listen", "0"], {}, None, ["listen", "1 to 65535"]),
    ("listen_port_superscript", ["--listen", "127.0.0.1:²"], {}, None,
     ["listen", "1 to 65535", "'²'"]),
    ("listen_bare_superscript", ["--listen", "²"], {}, None, ["listen"]),
    ("listen_open_bracket", ["--listen", "[::1:40765"], {}, None,
     ["listen", "host:port, [ipv6]:port or a port"]),
    ("listen_bad_ipv4", ["--listen", "1.2.3.999:80"], {}, None, ["listen", "host:port"]),
    ("listen_empty_host", ["--listen", ":40765"], {}, None, ["listen", "host:port"]),
    ("listen_open_without_access_rule", ["--listen", "0.0.0.0:40765"], {}, None,
     ["listen", "token", "allow", "listen on 127.0.0.1"]),
    ("listen_hostname_without_access_rule", ["--listen", "gpu-host.lab:40765"], {}, None,
     ["listen", "token", "allow"]),
    ("allow_host_bits", ["--allow", "10.0.0.5/8"], {}, None,
     ["allow", "'10.0.0.5/8'", "did you mean 10.0.0.0/8"]),
    ("allow_garbage", [], {"REACTOR_ALLOW": "10.0.0.0/8,lab"}, None,
     ["allow", "'lab'", "such as 10.0.0.0/8"]),
    ("allow_string_in_file", [], {}, {"allow": "10.0.0.0/8"},
     ["allow", "must be a list", '["10.0.0.0/8"]']),
    ("allow_number_in_file", [], {}, {"allow": [10]}, ["allow", "as strings"]),
    ("token_empty", ["--token", ""], {}, None, ["token", "is empty", "leave it unset"]),
    ("token_number_in_file", [], {}, {"token": 1234}, ["token", "must be a string"]),
    ("input_dir_number_in_file", [], {"REACTOR_INPUT_DIR": ""}, {"input_dir": 5},
     ["input_dir", "must be a string"]),
    ("output_dir_empty", ["--output-dir", ""], {}, None, ["output_dir", "path of a folder"]),
    ("unknown_key_in_file", [], {}, {"batchsize": 3},
     ["'batchsize'", "did you mean 'batch_size'", "valid keys are: input_dir, output_dir"]),
    ("two_unknown_keys_in_file", [], {}, {"colour": 1, "zzz": 2},
     ["unknown keys 'colour', 'zzz'", "valid keys are"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "env", "toml", "words"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_bad_values_give_one_line_that_names_the_key_and_the_fix(
    base_env: dict[str, str],
    flags: list[str],
    env: dict[str, str],
    toml: dict[str, object] | None,
    words: list[str],
) -> None:
    file = None if toml is None else ConfigFile(Path("/etc/reactor/reactor.toml"), toml)
    with pytest.raises(ConfigError) as caught:
        parse_config(cli(*flags), {**base_env, **env}, file)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("key", ["input_dir", "output_dir"])
def test_missing_folder_says_all_three_ways_to_set_it(base_env: dict[str, str], key: str) -> None:
    env = {k: v for k, v in base_env.items() if k != f"REACTOR_{key.upper()}"}
    with pytest.raises(ConfigError) as caught:
        parse_config(cli(), env)
    flag = "--" + key.replace("_", "-")
    assert str(caught.value) == (
        f"{key} is not set: pass {flag}, set REACTOR_{key.upper()} or add {key} to the config "
        "file (or set watch_root to serve every run under a MinKNOW data root)"
    )


def test_same_input_and_output_folder_is_refused(run_dirs: tuple[Path, Path]) -> None:
    same = str(run_dirs[0])
    with pytest.raises(ConfigError, match="input_dir and output_dir are the same folder"):
        parse_config(cli("--input-dir", same, "--output-dir", same + "/./"), {})


def test_direct_construction_is_validated_too(run_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match=r"^batch_size must be at least 1, got 0$"):
        ServeConfig(*run_dirs, batch_size=0)


@pytest.mark.parametrize("token", ["s3cret-token-value", "has space", "tab\there"])
def test_token_never_appears_in_repr_or_errors(base_env: dict[str, str], token: str) -> None:
    try:
        config = parse_config(cli("--token", token, "--listen", "0.0.0.0:1"), base_env)
    except ConfigError as err:
        assert token not in str(err)
        assert "token" in str(err)
    else:
        assert token not in repr(config)
        assert token not in str(config)
        assert config.token == token


# --- listen and allow -------------------------------------------------------------------

LISTEN = [
    ("40765", "127.0.0.1", 40765, {}),
    ("8080", "127.0.0.1", 8080, {}),
    ("[::1]:40765", "::1", 40765, {}),
    ("[::1]", "::1", 40765, {}),
    ("localhost:8080", "localhost", 8080, {}),
    ("localhost", "localhost", 40765, {}),
    ("127.0.0.2:9000", "127.0.0.2", 9000, {}),
    (" 127.0.0.1:9000 ", "127.0.0.1", 9000, {}),
    ("0.0.0.0:40765", "0.0.0.0", 40765, {"REACTOR_TOKEN": "t"}),  # noqa: S104 (parsing only)
    ("[::]:40765", "::", 40765, {"REACTOR_ALLOW": "10.0.0.0/8"}),
    ("[fe80::1%eth0]:1", "fe80::1%eth0", 1, {"REACTOR_TOKEN": "t"}),
    ("gpu-host.lab:80", "gpu-host.lab", 80, {"REACTOR_ALLOW": "192.168.0.0/16"}),
]


@pytest.mark.parametrize(("listen", "host", "port", "env"), LISTEN)
def test_listen_is_split_into_host_and_port(
    base_env: dict[str, str], listen: str, host: str, port: int, env: dict[str, str]
) -> None:
    config = parse_config(cli("--listen", listen), {**base_env, **env})
    assert (config.host, config.port) == (host, port)


ALLOW = [
    ("10.0.0.0/8", ["10.0.0.0/8"]),
    (" 10.0.0.0/8 , fd00::/8,", ["10.0.0.0/8", "fd00::/8"]),
    ("192.168.1.7", ["192.168.1.7/32"]),
    ("::1", ["::1/128"]),
    ("", []),
]


@pytest.mark.parametrize(("text", "networks"), ALLOW)
def test_allow_flag_is_a_comma_separated_list_of_networks(
    base_env: dict[str, str], text: str, networks: list[str]
) -> None:
    config = parse_config(cli("--allow", text), base_env)
    assert config.allow == tuple(ipaddress.ip_network(n) for n in networks)


def test_allow_in_the_file_is_a_list_of_strings(base_env: dict[str, str]) -> None:
    file = ConfigFile(Path("reactor.toml"), {"allow": ["10.1.0.0/16", "2001:db8::/32"]})
    config = parse_config(cli(), base_env, file)
    assert [str(net) for net in config.allow] == ["10.1.0.0/16", "2001:db8::/32"]


# --- a socket passed by systemd (socket activation) -------------------------------------

PASSED = [
    ("127.0.0.1:40765", {}, None),
    ("[::1]:40765", {}, None),
    ("0.0.0.0:40765", {}, "listens on 0.0.0.0:40765, reachable from other hosts"),
    ("[::]:40765", {}, "listens on [::]:40765, reachable from other hosts"),
    ("10.1.2.3:40765", {}, "ListenStream=127.0.0.1:40765 in the .socket unit"),
    ("0.0.0.0:40765", {"REACTOR_TOKEN": "t" * 32}, None),
    ("0.0.0.0:40765", {"REACTOR_ALLOW": "10.0.0.0/8"}, None),
    ("0.0.0.0:40765", {"REACTOR_INSECURE": "true"}, None),
]


@pytest.mark.parametrize(("address", "env", "refused"), PASSED)
def test_a_passed_socket_meets_the_access_rule_of_listen(
    base_env: dict[str, str], address: str, env: dict[str, str], refused: str | None
) -> None:
    """The socket's real address decides, as --listen would: beyond loopback, a token
    or an allow list is needed; `listen` then names what is served."""
    config = parse_config(cli(), {**base_env, **env})  # listen: the default, loopback
    if refused is None:
        assert serving_passed_sockets(config, [address]).listen == address
        return
    with pytest.raises(ConfigError) as caught:
        serving_passed_sockets(config, [address])
    message = str(caught.value)
    assert refused in message
    assert message.startswith("the socket systemd passed listens on ")
    assert "\n" not in message
    assert "REACTOR_TOKEN" in message


def test_every_passed_socket_is_checked_and_the_first_is_listen(base_env: dict[str, str]) -> None:
    config = parse_config(cli(), base_env)
    served = serving_passed_sockets(config, ["127.0.0.1:1", "[::1]:1"])
    assert (served.listen, served.host, served.port) == ("127.0.0.1:1", "127.0.0.1", 1)
    with pytest.raises(ConfigError, match=r"listens on \[::\]:1,"):
        serving_passed_sockets(config, ["127.0.0.1:1", "[::]:1"])


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("40765", "127.0.0.1:40765", True),
        ("[::0]:1", "[::]:1", True),
        ("localhost:1", "LOCALHOST:1", True),
        ("0.0.0.0:40765", "127.0.0.1:40765", False),
        ("127.0.0.1:40765", "127.0.0.1:40766", False),
        ("localhost:1", "127.0.0.1:1", False),  # names are compared as written
    ],
)
def test_same_listen_compares_addresses(one: str, other: str, same: bool) -> None:
    assert same_listen(one, other) is same


# --- the config file --------------------------------------------------------------------


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file {re.escape(str(missing))} does not"):
        read_config_file(missing)


def test_malformed_config_file_names_the_file_and_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("batch_size = 10\nlisten = \n")
    with pytest.raises(ConfigError) as caught:
        load_config(cli("--config", str(bad)), {})
    assert str(bad) in str(caught.value)
    assert "is not valid TOML" in str(caught.value)
    assert "line 2" in str(caught.value)


def test_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'token = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_config_file(bad)


def test_config_path_that_is_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        read_config_file(tmp_path)


# --- folders ----------------------------------------------------------------------------


def with_folder(run_dirs: tuple[Path, Path], key: str, path: Path) -> ServeConfig:
    """A config whose `key` folder is `path`, the other one a real folder."""
    if key == "input_dir":
        return ServeConfig(path, run_dirs[1])
    return ServeConfig(run_dirs[0], path)


@pytest.mark.parametrize("key", ["input_dir", "output_dir"])
def test_folder_that_does_not_exist_is_named(
    run_dirs: tuple[Path, Path], key: str, tmp_path: Path
) -> None:
    config = with_folder(run_dirs, key, tmp_path / "missing")
    with pytest.raises(ConfigError) as caught:
        check_folders(config)
    assert str(caught.value).startswith(f"{key} {tmp_path / 'missing'} does not exist: create it")


@pytest.mark.parametrize("key", ["input_dir", "output_dir"])
def test_folder_that_is_a_file_is_named(
    run_dirs: tuple[Path, Path], key: str, tmp_path: Path
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    config = with_folder(run_dirs, key, a_file)
    with pytest.raises(ConfigError, match=f"^{key} .*a_file is not a folder: point {key}"):
        check_folders(config)


def test_folder_under_a_file_does_not_exist(run_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="does not exist"):
        check_folders(ServeConfig(a_file / "sub", run_dirs[1]))


@pytest.mark.parametrize(
    ("key", "denied", "word"),
    [
        ("input_dir", os.W_OK, "writable"),
        ("input_dir", os.R_OK, "readable"),
        ("output_dir", os.W_OK, "writable"),
    ],
)
def test_folder_without_access_says_which_and_why(
    run_dirs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    denied: int,
    word: str,
) -> None:
    """os.access is faked: tests run as root, for whom every folder is writable."""
    config = ServeConfig(*run_dirs)
    target = getattr(config, key)
    real_access = os.access

    def fake_access(path: Path, mode: int) -> bool:
        return not (Path(path) == target and mode & denied) and real_access(path, mode)

    monkeypatch.setattr(os, "access", fake_access)
    with pytest.raises(ConfigError) as caught:
        check_folders(config)
    message = str(caught.value)
    assert message.startswith(f"{key} {target} is not {word} by this user")
    assert "fix its permissions" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder, whatever its mode")
def test_read_only_input_folder_is_refused(run_dirs: tuple[Path, Path]) -> None:
    run_dirs[0].chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=r"input_dir .* is not writable"):
            check_folders(ServeConfig(*run_dirs))
    finally:
        run_dirs[0].chmod(0o755)


def test_same_folder_through_a_symlink_is_refused(
    run_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(run_dirs[0])
    with pytest.raises(ConfigError, match="are the same folder"):
        check_folders(ServeConfig(run_dirs[0], link))


def test_load_config_checks_the_folders(base_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(cli("--input-dir", str(tmp_path / "missing")), base_env)


def test_prepare_output_dirs_creates_pass_and_fail_once(run_dirs: tuple[Path, Path]) -> None:
    config = ServeConfig(*run_dirs)
    prepare_output_dirs(config)
    (run_dirs[1] / "pass" / "kept.fastq").write_text("@r\n")
    prepare_output_dirs(config)
    assert sorted(p.name for p in run_dirs[1].iterdir()) == ["fail", "pass"]
    assert (run_dirs[1] / "pass" / "kept.fastq").exists()


def test_prepare_output_dirs_refuses_a_file_named_pass(run_dirs: tuple[Path, Path]) -> None:
    (run_dirs[1] / "pass").write_text("")
    with pytest.raises(ConfigError, match="pass exists but is not a directory: move it away"):
        prepare_output_dirs(ServeConfig(*run_dirs))
