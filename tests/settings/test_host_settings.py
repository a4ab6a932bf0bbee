"""Host mode's settings: watch_root, output_root, adopt_since, and the two modes kept apart."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reactor.settings.parsing import ConfigError, ConfigFile
from reactor.settings.serve import (
    DEFAULT_ADOPT_SINCE,
    UNSET,
    add_config_arguments,
    check_folders,
    parse_config,
)


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


def test_watch_root_alone_is_host_mode(tmp_path: Path) -> None:
    config = parse_config(cli("--watch-root", f"{tmp_path}/a"), {})
    assert config.host_mode
    assert config.watch_root == (tmp_path / "a",)
    assert (config.input_dir, config.output_dir, config.output_root) == (UNSET, UNSET, None)
    assert config.adopt_since == DEFAULT_ADOPT_SINCE == 2 * 86400


def test_several_roots_need_an_output_root(tmp_path: Path) -> None:
    roots = f"{tmp_path}/a,{tmp_path}/b"
    with pytest.raises(ConfigError, match="names 2 roots but output_root is not set"):
        parse_config(cli("--watch-root", roots), {})
    config = parse_config(cli("--watch-root", roots, "--output-root", str(tmp_path / "o")), {})
    assert config.watch_root == (tmp_path / "a", tmp_path / "b")


def test_the_file_gives_a_list_or_one_root_relative_to_its_folder(tmp_path: Path) -> None:
    values = {"watch_root": ["data", "/abs"], "output_root": "/out"}
    file = ConfigFile(tmp_path / "reactor.toml", values)
    assert parse_config(cli(), {}, file).watch_root == (tmp_path / "data", Path("/abs"))
    one = ConfigFile(tmp_path / "reactor.toml", {"watch_root": "/data", "output_root": "out"})
    config = parse_config(cli(), {}, one)
    assert (config.watch_root, config.output_root) == ((Path("/data"),), tmp_path / "out")
    for bad in ([], 5, [3]):
        with pytest.raises(ConfigError, match="watch_root"):
            parse_config(cli(), {}, ConfigFile(tmp_path / "r.toml", {"watch_root": bad}))


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"REACTOR_WATCH_ROOT": "/data", "REACTOR_INPUT_DIR": "/x"},
            ["input_dir and watch_root are both set", "set one or the other"],
        ),
        (
            {"REACTOR_WATCH_ROOT": "/data", "REACTOR_OUTPUT_DIR": "/x"},
            ["output_dir and watch_root are both set"],
        ),
        (
            {"REACTOR_INPUT_DIR": "/i", "REACTOR_OUTPUT_DIR": "/o", "REACTOR_OUTPUT_ROOT": "/r"},
            ["output_root is set without watch_root"],
        ),
        ({}, ["input_dir is not set", "or set watch_root"]),
    ],
)
def test_the_two_modes_are_kept_apart(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(cli(), env)
    for word in words:
        assert word in str(caught.value)


def test_the_roots_are_checked_like_folders(tmp_path: Path) -> None:
    config = parse_config(cli("--watch-root", str(tmp_path / "missing")), {})
    with pytest.raises(ConfigError, match="watch_root"):
        check_folders(config)
    config = parse_config(cli("--watch-root", str(tmp_path)), {})
    check_folders(config)  # an existing folder this user can use: no error
    with pytest.raises(ConfigError, match="adopt_since"):
        parse_config(cli("--watch-root", str(tmp_path), "--adopt-since", "0"), {})


def test_rules_and_seed_params_come_from_the_settings_file(tmp_path: Path) -> None:
    values = {
        "watch_root": "/data",
        "rules": [{"when": {"sample_rate": 5000}, "set": {"model": "hac"}}],
        "seed_params": {"model": "hac"},
    }
    config = parse_config(cli(), {}, ConfigFile(tmp_path / "reactor.toml", values))
    (rule,) = config.rules
    assert (rule.when, rule.set, rule.number) == ({"sample_rate": 5000}, {"model": "hac"}, 1)
    assert config.seed_params == (("model", "hac"),)
    with pytest.raises(ConfigError, match="rules can only be given in the settings file"):
        parse_config(cli("--watch-root", "/data", "--rules", "x"), {})
    bad = {"watch_root": "/data", "rules": [{"set": {"speed": "max"}}]}
    with pytest.raises(ConfigError, match="rules rule 1: set 'speed' is not a parameter"):
        parse_config(cli(), {}, ConfigFile(tmp_path / "reactor.toml", bad))
