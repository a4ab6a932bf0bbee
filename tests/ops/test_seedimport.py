"""`reactor config import-seed`: the seed's JSON becomes settings files reactor accepts.

tests/data/seed_config.json follows the seed's documented layout (Basecalling,
ComputingResources, General, Slurm), with three nodes, one of them left to Slurm.
"""

from __future__ import annotations

import argparse
import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.cli import main
from reactor.ops.seed_import import import_seed
from reactor.ops.seed_run import read_seed
from reactor.ops.toml_text import NotTomlText, toml_comment, toml_document, toml_line, toml_string
from reactor.settings.engine import EngineConfig, parse_engine_config, read_engine_config_file
from reactor.settings.parsing import ConfigError, read_config_file
from reactor.settings.serve import ServeConfig, parse_config
from reactor.settings.templates import expand_command, parse_command
from tests.support.paths import DATA

EXAMPLE = DATA / "seed_config.json"
PROG = "reactor config import-seed: "
JOB_VALUES = {"input_dir": "I", "output_dir": "O", "model": "M"}


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def write_seed(tmp_path: Path, data: object, name: str = "seed.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_serve(path: Path, env: dict[str, str] | None = None) -> ServeConfig:
    return parse_config(argparse.Namespace(), env or {}, read_config_file(path))


def load_engine(path: Path) -> EngineConfig:
    values = read_engine_config_file(path)
    return parse_engine_config(argparse.Namespace(), {}, values, path)


def import_files(tmp_path: Path, seed: Path, node: int = 1) -> tuple[Path, Path]:
    serve_path = tmp_path / "reactor.toml"
    assert main(["config", "import-seed", str(seed), "--node-index", str(node),
                 "-o", str(serve_path)]) == 0  # fmt: skip
    return serve_path, tmp_path / "engine.toml"


# --- the example, through reactor's own loaders ---------------------------------------


def test_example_round_trips_through_the_serve_and_engine_loaders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_path, engine_path = import_files(tmp_path, EXAMPLE, node=1)
    serve = load_serve(serve_path)
    assert serve.input_dir == Path("/shared/runs/run7/pod5")
    assert serve.output_dir == Path("/shared/runs/run7/basecalled")
    assert serve.listen == "0.0.0.0:40765"
    assert [str(net) for net in serve.allow] == ["10.20.1.11/32", "10.20.1.12/32"]
    assert serve.batch_size == 3  # the seed's manager's own, fixed in its code
    engine = load_engine(engine_path)
    assert engine.manager == "http://10.20.1.11:40765"
    assert engine.engine_id == "gpunode02"
    assert engine.batch_size == 5
    assert engine.input_dir == serve.input_dir
    assert engine.output_dir == serve.output_dir
    assert engine.model == "dna_r10.4.1_e8.2_400bps_hac.cfg"
    argv = expand_command(parse_command(engine.command), JOB_VALUES)
    # as the seed's engine called it: INPUT OUTPUT MODEL and the node's basecall server port
    assert argv == ["/shared/pipelines/seed/BC_scripts/supervisor.sh", "I", "O", "M", "42837"]
    out = capsys.readouterr().out
    assert f"reactor serve --config {serve_path}" in out
    assert f"reactor engine --config {engine_path}" in out


def test_printed_output_is_one_file_each_saying_how_to_use_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "import-seed", str(EXAMPLE)]) == 0
    serve_text = capsys.readouterr().out
    assert "input_dir" in tomllib.loads(serve_text)
    assert "reactor serve --config reactor.toml" in serve_text
    assert "Node 2 (any node Slurm picks) has no address" in serve_text
    assert (
        main(["config", "import-seed", str(EXAMPLE), "--node-index", "2", "--print", "engine"]) == 0
    )
    engine_text = capsys.readouterr().out
    engine = tomllib.loads(engine_text)
    assert engine["batch_size"] == 4
    assert "engine_id" not in engine  # nodes_list[2] is "": the engine's host name
    assert "reactor engine --config engine.toml" in engine_text


def _leaves(data: dict[str, Any]) -> list[str]:
    return [key for section in data.values() for key in section]


def test_every_seed_field_shows_in_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing is dropped silently: each field is a setting or a comment saying why not,
    in one file or the other."""
    assert main(["config", "import-seed", str(EXAMPLE), "--node-index", "0"]) == 0
    assert (
        main(["config", "import-seed", str(EXAMPLE), "--node-index", "0", "--print", "engine"]) == 0
    )
    out = capsys.readouterr().out
    for key in _leaves(example()):
        assert key in out, key
    for value in ("FlowcellRun7", "12:00:00", "/shared/logs/dorado", "120GB", "None"):
        assert value in out


def test_unknown_fields_are_named_as_having_no_equivalent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example()
    data["Extra"] = {"colour": "blue"}
    data["ComputingResources"]["scheduler"] = "slurm"
    assert (
        main(["config", "import-seed", str(write_seed(tmp_path, data)), "--node-index", "0"]) == 0
    )
    out = capsys.readouterr().out
    assert 'Extra.colour = "blue": not a field this importer knows' in out
    assert 'ComputingResources.scheduler = "slurm": not a field this importer knows' in out


def test_the_first_layout_with_a_resources_section_and_numbers_is_accepted(
    tmp_path: Path,
) -> None:
    data = example()
    resources = data.pop("ComputingResources")
    resources.update(index_host=1, batch_size_list=[3, 5, 4])
    del resources["port"]  # the first layout had no ports: the manager's was fixed
    del data["Basecalling"]["port"]
    data["Resources"] = resources
    serve_path, engine_path = import_files(tmp_path, write_seed(tmp_path, data), node=0)
    assert load_serve(serve_path).port == 40765  # the seed's first fixed port
    engine = load_engine(engine_path)
    assert engine.manager == "http://10.20.1.12:40765"
    assert engine.batch_size == 3
    argv = expand_command(parse_command(engine.command), JOB_VALUES)
    assert argv[1:] == ["I", "O", "M"]  # no basecall server port to pass
    assert "Resources.batch_size_list[0]" in engine_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("model", "preset"),
    [("dna_r10.4.1_e8.2_400bps_hac.cfg", "seed-supervisor"), ("hac", "dorado-fastq")],
)
def test_without_a_supervisor_script_the_model_picks_the_preset(
    tmp_path: Path, model: str, preset: str
) -> None:
    data = example()
    del data["Basecalling"]["supervisor_script_path"]
    data["Basecalling"]["model"] = model
    _, engine_path = import_files(tmp_path, write_seed(tmp_path, data))
    engine = load_engine(engine_path)
    assert engine.preset == preset
    assert engine.model == model


def test_an_awkward_script_path_stays_one_argument(tmp_path: Path) -> None:
    data = example()
    data["Basecalling"]["supervisor_script_path"] = "/opt/my scripts/run {x}'s.sh"
    _, engine_path = import_files(tmp_path, write_seed(tmp_path, data))
    command = parse_command(load_engine(engine_path).command)
    argv = expand_command(command, JOB_VALUES)
    assert argv == ["/opt/my scripts/run {x}'s.sh", "I", "O", "M", "42837"]


def test_without_any_node_address_serve_needs_a_token_and_says_so(tmp_path: Path) -> None:
    data = example()
    data["ComputingResources"]["nodes_ip"] = ["", "", ""]
    serve_path, engine_path = import_files(tmp_path, write_seed(tmp_path, data))
    text = serve_path.read_text(encoding="utf-8")
    assert "until REACTOR_TOKEN is set" in text
    with pytest.raises(ConfigError, match="token"):
        load_serve(serve_path)
    assert load_serve(serve_path, {"REACTOR_TOKEN": "t" * 40}).token == "t" * 40
    assert load_engine(engine_path).manager == "http://gpunode01:40765"


def test_engine_ids_are_made_valid(tmp_path: Path) -> None:
    data = example()
    data["ComputingResources"]["nodes_list"][1] = "gpu node/2"
    _, engine_path = import_files(tmp_path, write_seed(tmp_path, data))
    assert load_engine(engine_path).engine_id == "gpu-node-2"


def test_an_ipv6_manager_is_bracketed(tmp_path: Path) -> None:
    data = example()
    data["ComputingResources"]["nodes_ip"][0] = "fd00::11"
    serve_path, engine_path = import_files(tmp_path, write_seed(tmp_path, data))
    assert load_engine(engine_path).manager == "http://[fd00::11]:40765"
    assert "fd00::11/128" in [str(net) for net in load_serve(serve_path).allow]


def test_import_seed_checks_its_output_with_the_loaders() -> None:
    """import_seed returns only files the loaders accept (it loads them itself)."""
    serve_text, engine_text = import_seed(read_seed(EXAMPLE), 0)
    assert tomllib.loads(serve_text)["listen"] == "0.0.0.0:40765"
    assert tomllib.loads(engine_text)["engine_id"] == "gpunode01"


# --- validation: one clear line per problem, exit 2 -----------------------------------


def _without(path: str) -> dict[str, Any]:
    data = example()
    section, key = path.split(".")
    del data[section][key]
    return data


def _with(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(example())
    section, key = path.split(".")
    data[section][key] = value
    return data


PROBLEMS = [
    ("no section", {k: v for k, v in example().items() if k != "Basecalling"},
     'has no "Basecalling" section'),
    ("section not an object", _with("General.x", 1) | {"ComputingResources": []},
     '"ComputingResources" must be an object'),
    ("missing input_dir", _without("Basecalling.input_dir"), "Basecalling.input_dir is missing"),
    ("missing model", _without("Basecalling.model"), "Basecalling.model is missing"),
    ("input_dir not text", _with("Basecalling.input_dir", 7),
     "Basecalling.input_dir must be a string, got an integer"),
    ("empty output_dir", _with("Basecalling.output_dir", " "), "Basecalling.output_dir is empty"),
    ("same folders", _with("Basecalling.output_dir", "/shared/runs/run7/pod5"),
     "are the same folder"),
    ("missing index_host", _without("ComputingResources.index_host"),
     "ComputingResources.index_host is missing"),
    ("index_host not a number", _with("ComputingResources.index_host", "first"),
     "ComputingResources.index_host must be a whole number (or a string of digits), got 'first'"),
    ("index_host a superscript digit", _with("ComputingResources.index_host", "²"),
     "ComputingResources.index_host must be a whole number (or a string of digits), got '²'"),
    ("port in Arabic-Indic digits", _with("ComputingResources.port", "٤٠٧٦٥"),
     "ComputingResources.port must be a whole number (or a string of digits), got '٤٠٧٦٥'"),
    ("index_host out of range", _with("ComputingResources.index_host", 3),
     "index_host 3 is out of range: it must name one of the 3 node(s), 0 to 2"),
    ("port out of range", _with("ComputingResources.port", 70000),
     "ComputingResources.port must be at least 1 and at most 65535, got 70000"),
    ("missing nodes_ip", _without("ComputingResources.nodes_ip"),
     "ComputingResources.nodes_ip is missing"),
    ("nodes_list not a list", _with("ComputingResources.nodes_list", "gpunode01"),
     "ComputingResources.nodes_list must be a list, got a string"),
    ("lists of different lengths", _with("ComputingResources.batch_size_list", ["3", "5"]),
     "lists have different lengths: nodes_list has 3 entries but batch_size_list has 2; "),
    ("batch size zero", _with("ComputingResources.batch_size_list", ["3", "0", "4"]),
     "ComputingResources.batch_size_list[1] must be at least 1, got 0"),
    ("node name not text", _with("ComputingResources.nodes_list", ["a", 2, "c"]),
     'ComputingResources.nodes_list[1] must be a string ("" if unknown), got an integer'),
    ("address not an IP", _with("ComputingResources.nodes_ip", ["10.20.1.11", "gpunode02", ""]),
     "nodes_ip[1] 'gpunode02' is not an IP address"),
    ("both sections", example() | {"Resources": {}},
     'has both "ComputingResources" and "Resources" sections'),
    ("host without name or address", _with("ComputingResources.index_host", "2"),
     "index_host 2 names a node with neither a name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "expected"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_each_problem_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, expected: str
) -> None:
    seed = write_seed(tmp_path, data)
    assert main(["config", "import-seed", str(seed), "--node-index", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}{seed}: ")
    assert expected in lines[0]


def test_several_problems_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _without("Basecalling.model")
    data["ComputingResources"]["port"] = "http"
    assert (
        main(["config", "import-seed", str(write_seed(tmp_path, data)), "--node-index", "0"]) == 2
    )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "Basecalling.model is missing" in lines[0]
    assert "ComputingResources.port must be a whole number" in lines[1]


@pytest.mark.parametrize("index", ["3", "-1"])
def test_node_index_out_of_range_names_the_range_and_the_nodes(
    capsys: pytest.CaptureFixture[str], index: str
) -> None:
    assert main(["config", "import-seed", str(EXAMPLE), "--node-index", index]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--node-index {index} is out of range" in err
    assert "give 0 to 2: 0 gpunode01 (10.20.1.11), 1 gpunode02 (10.20.1.12), " in err
    assert "2 (any node Slurm picks)" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist: give the seed's JSON configuration file"),
        ("{ not json", "is not valid JSON: Expecting property name"),
        ("[1, 2]", "holds a list, not the seed's JSON object"),
    ],
)
def test_unreadable_seed_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    seed = tmp_path / "seed.json"
    if content is not None:
        seed.write_text(content, encoding="utf-8")
    assert main(["config", "import-seed", str(seed), "--node-index", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err


def test_config_without_a_subcommand_says_which_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 2
    assert "import-seed" in capsys.readouterr().err


# --- -o and --force -------------------------------------------------------------------


def test_output_refuses_to_replace_existing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_path = tmp_path / "reactor.toml"
    engine_path = tmp_path / "engine.toml"
    engine_path.write_text("# mine\n", encoding="utf-8")
    argv = ["config", "import-seed", str(EXAMPLE), "--node-index", "1", "-o", str(serve_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{engine_path} already exists: pass --force" in err
    assert not serve_path.exists()  # all or nothing
    assert engine_path.read_text(encoding="utf-8") == "# mine\n"
    assert main([*argv, "--force"]) == 0
    assert load_engine(engine_path).engine_id == "gpunode02"
    assert load_serve(serve_path).port == 40765


def test_engine_output_names_the_engine_file(tmp_path: Path) -> None:
    serve_path, engine_path = tmp_path / "s.toml", tmp_path / "gpunode02.toml"
    assert main(["config", "import-seed", str(EXAMPLE), "--node-index", "1",
                 "-o", str(serve_path), "--engine-output", str(engine_path)]) == 0  # fmt: skip
    assert load_engine(engine_path).batch_size == 5
    assert not (tmp_path / "engine.toml").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--engine-output", "x.toml"], "--engine-output needs -o FILE"),
        (["-o", "engine.toml"], "would both be engine.toml"),
    ],
)
def test_conflicting_output_options_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "import-seed", str(EXAMPLE), "--node-index", "1", *extra]) == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- the TOML writer ------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(_TEXT)
def test_any_string_round_trips_through_tomllib(text: str) -> None:
    assert tomllib.loads(toml_line("key", text))["key"] == text


@given(st.lists(_TEXT, max_size=4), st.text(alphabet=st.characters(), max_size=40))
def test_lists_round_trip_and_comments_never_break_the_document(
    items: list[str], comment: str
) -> None:
    document = toml_document([*toml_comment(comment), toml_line("items", items)])
    assert tomllib.loads(document) == {"items": items}


def test_keys_that_are_not_bare_are_quoted_and_values_keep_their_types() -> None:
    document = toml_document(
        [toml_line("a key", 3), toml_line("flag", True), toml_line('quoted"key', "x")]
    )
    assert tomllib.loads(document) == {"a key": 3, "flag": True, 'quoted"key': "x"}


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(NotTomlText):
        toml_string("\udc80")
