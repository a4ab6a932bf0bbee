"""What each seed field meant, and where `reactor config import-seed` puts it.

Read from the seed's own code: ``Basecalling.port`` is the manager's port (before it
existed, the port was fixed in the seed's code); ``ComputingResources.port`` is the port
of the basecall server the seed started on every node, which its engine gave its
supervisor script as a fourth argument, after INPUT, OUTPUT and MODEL; the engine on the
manager's own node reached it on 127.0.0.1; the manager's batch size for an engine
asking 0 was fixed at 3. Whatever the seed's code does not pin down is marked GUESS.
The last test runs a real `reactor serve` and `reactor engine` from the imported files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reactor.cli import main
from reactor.ops.seed_import import import_engine, import_serve
from reactor.ops.seed_run import SeedError, read_seed
from reactor.settings.engine import EngineConfig, parse_engine_config, read_engine_config_file
from reactor.settings.parsing import read_config_file
from reactor.settings.serve import ServeConfig, parse_config
from reactor.settings.templates import expand_command, parse_command
from tests.support.launch import free_port
from tests.support.paths import DATA, REPO
from tests.support.pod5files import write_pod5
from tests.support.served import wait_for

EXAMPLE = DATA / "seed_config.json"
JOB = {"input_dir": "I", "output_dir": "O", "model": "M"}


def example(**changes: Any) -> dict[str, Any]:
    """The example seed file; `Section__key=value` changes a field, None deletes it."""
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            del data[section][key]
        else:
            data[section][key] = value
    return data


def imported(tmp_path: Path, data: dict[str, Any], node: int) -> tuple[Path, Path]:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(data), encoding="utf-8")
    serve_path = tmp_path / "reactor.toml"
    argv = ["config", "import-seed", str(seed), "--node-index", str(node), "-o", str(serve_path)]
    assert main([*argv, "--force"]) == 0
    return serve_path, tmp_path / "engine.toml"


def load_serve(path: Path) -> ServeConfig:
    return parse_config(argparse.Namespace(), {}, read_config_file(path))


def load_engine(path: Path) -> EngineConfig:
    return parse_engine_config(argparse.Namespace(), {}, read_engine_config_file(path), path)


def guesses(text: str) -> list[str]:
    """The bullets of a file's opening list of guesses."""
    head = text.split("\n\n", 1)[0].splitlines()
    return [line.removeprefix("#   - ") for line in head if line.startswith("#   - ")]


def test_the_resources_port_is_each_nodes_basecall_server_not_the_managers(
    tmp_path: Path,
) -> None:
    data = example(Basecalling__port="5555", ComputingResources__port="42837")
    serve_path, engine_path = imported(tmp_path, data, node=1)
    assert load_serve(serve_path).listen == "0.0.0.0:5555"
    engine = load_engine(engine_path)
    assert engine.manager == "http://10.20.1.11:5555"
    argv = expand_command(parse_command(engine.command), JOB)
    assert argv == ["/shared/pipelines/seed/BC_scripts/supervisor.sh", "I", "O", "M", "42837"]
    serve_text = serve_path.read_text(encoding="utf-8")
    assert "ComputingResources.port = 42837: the port of the basecall server" in serve_text
    assert "42837" not in tomllib.loads(serve_text)["listen"]
    assert "reactor engine does not start that server" in engine_path.read_text(encoding="utf-8")


def test_without_basecalling_port_the_managers_port_is_a_guess_both_files_say(
    tmp_path: Path,
) -> None:
    serve_path, engine_path = imported(tmp_path, example(Basecalling__port=None), node=1)
    assert load_serve(serve_path).port == 40765
    assert load_engine(engine_path).manager == "http://10.20.1.11:40765"
    for path in (serve_path, engine_path):
        text = path.read_text(encoding="utf-8")
        assert guesses(text)[0].startswith("the manager's port, 40765: the seed file has no ")
        assert "GUESS" in text.split("\n\n", 1)[1]  # marked where the value is, too
    assert "(40765 and 57967, by version" in serve_path.read_text(encoding="utf-8")


def test_what_the_seeds_code_pins_down_is_no_guess(tmp_path: Path) -> None:
    """The example names both ports, the script and every address: node 0's engine file
    holds no guess; serve's only the allow list (the seed had no access rule)."""
    serve_path, engine_path = imported(tmp_path, example(), node=0)
    engine_text = engine_path.read_text(encoding="utf-8")
    assert "Guesses: none; every value below is what the seed's code did." in engine_text
    assert "GUESS" not in engine_text
    (only,) = guesses(serve_path.read_text(encoding="utf-8"))
    assert only.startswith("allow: the seed had no access rule")


def test_the_managers_own_node_reaches_it_on_loopback(tmp_path: Path) -> None:
    _, engine_path = imported(tmp_path, example(), node=0)
    assert load_engine(engine_path).manager == "http://127.0.0.1:40765"
    text = engine_path.read_text(encoding="utf-8")
    assert "If this engine runs on another machine, use http://10.20.1.11:40765." in text


def test_a_manager_node_without_an_address_is_reached_by_name_as_a_guess(tmp_path: Path) -> None:
    data = example(ComputingResources__nodes_ip=["", "10.20.1.12", ""])
    _, engine_path = imported(tmp_path, data, node=1)
    assert load_engine(engine_path).manager == "http://gpunode01:40765"
    assert "manager: the manager's node has no nodes_ip entry; its name is used" in guesses(
        engine_path.read_text(encoding="utf-8")
    )


def test_serves_batch_size_is_the_seed_managers_own_three(tmp_path: Path) -> None:
    data = example(ComputingResources__batch_size_list=["50", "40", "4"])
    serve_path, engine_path = imported(tmp_path, data, node=1)
    assert load_serve(serve_path).batch_size == 3
    assert load_engine(engine_path).batch_size == 40


def test_without_a_basecall_port_the_script_gets_three_arguments_as_a_guess(
    tmp_path: Path,
) -> None:
    _, engine_path = imported(tmp_path, example(ComputingResources__port=None), node=1)
    argv = expand_command(parse_command(load_engine(engine_path).command), JOB)
    assert argv == ["/shared/pipelines/seed/BC_scripts/supervisor.sh", "I", "O", "M"]
    text = engine_path.read_text(encoding="utf-8")
    assert any(guess.startswith("command: the seed file has no") for guess in guesses(text))
    assert "write the port after {model}" in text


def test_without_a_script_the_preset_is_a_guess_naming_the_servers_port(tmp_path: Path) -> None:
    _, engine_path = imported(tmp_path, example(Basecalling__supervisor_script_path=None), node=1)
    assert load_engine(engine_path).preset == "seed-supervisor"
    text = engine_path.read_text(encoding="utf-8")
    assert any(guess.startswith("preset: the seed file has no") for guess in guesses(text))
    assert "--port 42837" in text


def test_the_seeds_own_field_names_are_known(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's files name these General.name, Slurm.output_path, error_path and
    main_script: each gets a note saying where it goes, none is "not a field this
    importer knows"."""
    assert main(["config", "import-seed", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    for field in ("General.name", "Slurm.output_path", "Slurm.error_path", "Slurm.main_script"):
        (line,) = [line for line in out.splitlines() if f"#     {field} = " in line]
        assert "not a field this importer knows" not in line
    assert "Basecalling.port" not in "".join(
        line for line in out.splitlines() if "not a field this importer knows" in line
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "Basecalling.port must be at least 1 and at most 65535, got 0"),
        ("http", "Basecalling.port must be a whole number (or a string of digits), got 'http'"),
    ],
)
def test_a_bad_manager_port_is_refused(tmp_path: Path, value: object, problem: str) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(example(Basecalling__port=value)), encoding="utf-8")
    with pytest.raises(SeedError) as caught:
        read_seed(seed)
    assert caught.value.problems == (f"{seed}: {problem}",)


def test_the_importer_loads_what_it_makes() -> None:
    run = read_seed(EXAMPLE)
    assert tomllib.loads(import_serve(run))["listen"] == "0.0.0.0:40765"
    assert tomllib.loads(import_engine(run, 1))["command"].endswith(" {model} 42837")


# ------------------------------------------------- the imported files, run for real


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_serve_and_engine_from_the_imported_files_call_the_script_as_the_seed_did(
    tmp_path: Path,
) -> None:
    """`reactor serve --config reactor.toml` and `reactor engine --config engine.toml`,
    both imported from one seed file: they find each other, and each batch runs the
    supervisor script with INPUT OUTPUT MODEL PORT."""
    run = tmp_path / "run"
    (run / "input").mkdir(parents=True)
    (run / "output").mkdir()
    called = tmp_path / "called.txt"
    script = tmp_path / "supervisor.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s|' \"$@\" >> '{called}'\n"
        f"echo >> '{called}'\n"
        f'exec \'{sys.executable}\' -m reactor fake-basecaller "$1" "$2"\n'
    )
    script.chmod(0o755)
    port = free_port()
    data = example(Basecalling__port=port, ComputingResources__port="42837")
    data["Basecalling"].update(
        input_dir=str(run / "input"),
        output_dir=str(run / "output"),
        supervisor_script_path=str(script),
    )
    data["ComputingResources"].update(nodes_ip=["127.0.0.1", "10.20.1.12", ""])
    serve_path, engine_path = imported(tmp_path, data, node=0)
    for i in range(2):
        staged = tmp_path / f"PAK_pass_{i}.pod5"
        write_pod5(staged, 2, seed=i)
        staged.rename(run / "input" / staged.name)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("REACTOR_", "NOTIFY_"))}
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", "--config", str(serve_path),
             "--log-format", "json", "--sweep-interval", "0.2"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def files(state: str) -> int:
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/status", timeout=2) as reply:  # noqa: S310
                count: int = json.load(reply)["files"][state]
                return count
        except OSError:
            return -1

    try:
        wait_for(lambda: files("ready") == 2, 30, "serve to see both files")
        engine = subprocess.run(
            [sys.executable, "-m", "reactor", "engine", "--config", str(engine_path),
             "--until-empty", "--poll-interval", "0.05", "--log-format", "json"],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert engine.returncode == 0, engine.stdout + engine.stderr
        assert files("done") == 2
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    calls = [line.rstrip("|").split("|") for line in called.read_text().splitlines()]
    assert calls
    for job_in, job_out, model, basecall_port in calls:
        assert Path(job_in).parent == run / "input"
        assert Path(job_in).name.startswith("ASSIGNED_")
        assert Path(job_out).parent == run / "output"
        assert Path(job_out).name.startswith("TMPOUTPUT_")
        assert model == "dna_r10.4.1_e8.2_400bps_hac.cfg"
        assert basecall_port == "42837"
