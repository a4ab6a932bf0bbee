"""The fleet's settings: the `[fleet]` table of serve's config file and REACTOR_FLEET_*."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from reactor.settings.fleet import FleetConfig, default_name, describe_keys
from reactor.settings.parsing import ConfigError, read_config_file
from reactor.settings.serve import ServeConfig, add_config_arguments, parse_config
from tests.support.paths import REPO


def _load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> ServeConfig:
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir(exist_ok=True)
    output_dir.mkdir(exist_ok=True)
    path = tmp_path / "reactor.toml"
    path.write_text(f'input_dir = "{input_dir}"\noutput_dir = "{output_dir}"\n{toml}')
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parse_config(parser.parse_args([]), env or {}, read_config_file(path))


def test_no_table_and_no_variable_means_no_fleet(tmp_path: Path) -> None:
    assert _load(tmp_path, "").fleet is None


def test_a_table_gives_the_fleet_with_its_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, '[fleet]\nmanager_url = "http://seq.lab:40765"\n')
    fleet = config.fleet
    assert fleet is not None
    assert fleet.manager_url == "http://seq.lab:40765"
    assert (fleet.min_engines, fleet.max_engines, fleet.idle_s) == (0, 4, 300.0)
    assert fleet.time_limit == "12:00:00" and fleet.drain_s == 300.0
    assert fleet.release_after_s == 240.0  # a minute before the time limit
    assert fleet.name == default_name(tmp_path / "in", tmp_path / "out")
    assert fleet.name.startswith("reactor-")


def test_the_default_name_is_stable_and_differs_by_folder(tmp_path: Path) -> None:
    a = default_name(tmp_path / "a")
    assert a == default_name(tmp_path / "a")
    assert a != default_name(tmp_path / "b")


def test_every_key_from_the_file(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "[fleet]\n"
        'manager_url = "https://seq.lab:40765"\n'
        'engine_command = "/opt/reactor/bin/reactor engine --preset dorado-bam"\n'
        "min_engines = 1\nmax_engines = 6\nidle_s = 120\ncatch_up_s = 900\n"
        'partition = "gpu"\naccount = "lab42"\ngres = "gpu:1"\ntime_limit = "2-00:00:00"\n'
        'drain_s = 90\nsbatch_args = ["--mem=32G", "--qos=high"]\n'
        'env_file = "/shared/reactor/engine.env"\nlog_dir = "/shared/reactor/logs"\n'
        'submit_via = ["ssh", "-o", "BatchMode=yes", "login1"]\nname = "reactor-seq-a"\n'
        "check_interval = 30\ncommand_timeout = 20\n",
    )
    assert config.fleet == FleetConfig(
        manager_url="https://seq.lab:40765",
        engine_command="/opt/reactor/bin/reactor engine --preset dorado-bam",
        min_engines=1,
        max_engines=6,
        idle_s=120.0,
        catch_up_s=900.0,
        partition="gpu",
        account="lab42",
        gres="gpu:1",
        time_limit="2-00:00:00",
        drain_s=90.0,
        sbatch_args=("--mem=32G", "--qos=high"),
        env_file="/shared/reactor/engine.env",
        log_dir="/shared/reactor/logs",
        submit_via=("ssh", "-o", "BatchMode=yes", "login1"),
        name="reactor-seq-a",
        check_interval=30.0,
        command_timeout=20.0,
    )
    assert config.fleet.release_after_s == 45.0  # half of a short drain


def test_a_variable_beats_the_file_and_lists_are_shell_words(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[fleet]\nmanager_url = "http://a:1"\nmax_engines = 2\n',
        {"REACTOR_FLEET_MAX_ENGINES": "9", "REACTOR_FLEET_SUBMIT_VIA": "ssh 'login 1'"},
    )
    assert config.fleet is not None
    assert config.fleet.max_engines == 9
    assert config.fleet.submit_via == ("ssh", "login 1")


def test_variables_alone_make_a_fleet(tmp_path: Path) -> None:
    config = _load(tmp_path, "", {"REACTOR_FLEET_MANAGER_URL": "http://seq:40765"})
    assert config.fleet is not None and config.fleet.manager_url == "http://seq:40765"


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("max_engines = 2\n", "needs manager_url"),
        ('manager_url = "seq.lab:40765"\n', "http:// or https://"),
        ('manager_url = "http://a:1"\nmax_engines = 0\n', "max_engines"),
        ('manager_url = "http://a:1"\nmin_engines = 3\nmax_engines = 2\n', "min_engines (3)"),
        ('manager_url = "http://a:1"\ntime_limit = "12h"\n', "Slurm time limit"),
        ('manager_url = "http://a:1"\npartition = "gpu; rm -rf"\n', "partition"),
        ('manager_url = "http://a:1"\nsbatch_args = "--mem=1G"\n', "list of strings"),
        ('manager_url = "http://a:1"\nname = "my jobs"\n', "name"),
        ('manager_url = "http://a:1"\nmax_engine = 3\n', "unknown key 'max_engine'"),
        ('manager_url = "http://a:1"\nengine_command = ""\n', "engine_command"),
    ],
)
def test_mistakes_are_refused_with_what_to_do(tmp_path: Path, toml: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        _load(tmp_path, "[fleet]\n" + toml)
    assert says in str(caught.value)


def test_fleet_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[fleet\] must be a table"):
        _load(tmp_path, 'fleet = "yes"\n')


def test_describe_keys_lists_every_field_with_its_default() -> None:
    rows = describe_keys()
    assert [row[0] for row in rows] == [f.name for f in dataclasses.fields(FleetConfig)]
    for name, default_text, meaning in rows:
        default = next(f.default for f in dataclasses.fields(FleetConfig) if f.name == name)
        if default is dataclasses.MISSING:
            assert default_text == "(required)"
        elif name == "name":
            assert default_text == "(derived)"
        elif default in (None, ()):
            assert default_text == "(none)"
        else:
            assert default_text == str(default)
        assert meaning.endswith(".")


def test_readme_fleet_table_shows_every_key_default_and_meaning() -> None:
    readme = (REPO / "README.md").read_text()
    for name, default, meaning in describe_keys():
        shown = default if default.startswith("(") else f"`{default}`"
        assert f"| `{name}` | {shown} | {meaning} |" in readme, name
