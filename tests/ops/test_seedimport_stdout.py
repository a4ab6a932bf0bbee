"""`reactor config import-seed` on standard output: always one settings file.

The habit is ``reactor config import-seed SEED.json --node-index N > reactor.toml``; the
redirected file must be one `reactor serve` accepts. ``--print engine`` prints the
engine's file instead; ``-o`` still writes both. Run as real processes, with stdout
redirected to a file as a shell does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reactor.settings.engine import parse_engine_config, read_engine_config_file
from reactor.settings.parsing import read_config_file
from reactor.settings.serve import parse_config
from tests.support.paths import DATA, REPO

EXAMPLE = DATA / "seed_config.json"
PROG = "reactor config import-seed: "


def seed_here(tmp_path: Path) -> Path:
    """The example seed file with run folders that exist on this machine."""
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for name in ("input_dir", "output_dir"):
        folder = tmp_path / name
        folder.mkdir()
        data["Basecalling"][name] = str(folder)
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def reactor(*argv: str, stdout_to: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`reactor ARGV`, its stdout redirected to `stdout_to` when given (as `> FILE`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    if stdout_to is None:
        return subprocess.run(
            [sys.executable, "-m", "reactor", *argv],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
        )  # fmt: skip
    with stdout_to.open("w", encoding="utf-8") as out:
        return subprocess.run(
            [sys.executable, "-m", "reactor", *argv],
            stdout=out, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, timeout=60,
            check=False,
        )  # fmt: skip


def test_the_habit_redirect_makes_a_file_reactor_serve_accepts(tmp_path: Path) -> None:
    seed = seed_here(tmp_path)
    saved = tmp_path / "reactor.toml"
    made = reactor("config", "import-seed", str(seed), "--node-index", "1", stdout_to=saved)
    assert made.returncode == 0, made.stderr
    config = parse_config(argparse.Namespace(), {}, read_config_file(saved))
    assert config.input_dir == tmp_path / "input_dir"
    assert config.allow  # the nodes' addresses
    assert made.stderr == (
        f"{PROG}printed reactor.toml, for reactor serve; for the engine's engine.toml, add "
        "--print engine (or give -o FILE for both)\n"
    )
    checked = reactor("check", "--config", str(saved))
    # 0 or 1 (this machine may have the port in use, say); 2 would be refused settings.
    assert checked.returncode in (0, 1), checked.stdout + checked.stderr
    assert "reactor check:" not in checked.stderr
    assert "input folder" in checked.stdout


def test_the_serve_file_needs_no_node_index(tmp_path: Path) -> None:
    saved = tmp_path / "reactor.toml"
    made = reactor("config", "import-seed", str(seed_here(tmp_path)), stdout_to=saved)
    assert made.returncode == 0, made.stderr
    assert "--print engine --node-index N" in made.stderr
    assert parse_config(argparse.Namespace(), {}, read_config_file(saved)).port == 40765


def test_print_engine_makes_a_file_reactor_engine_accepts(tmp_path: Path) -> None:
    saved = tmp_path / "engine.toml"
    made = reactor(
        "config", "import-seed", str(seed_here(tmp_path)), "--node-index", "1",
        "--print", "engine", stdout_to=saved,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    engine = parse_engine_config(argparse.Namespace(), {}, read_engine_config_file(saved), saved)
    assert engine.engine_id == "gpunode02"
    assert engine.input_dir == tmp_path / "input_dir"
    assert made.stderr.count("\n") == 1
    assert "printed engine.toml for node 1 gpunode02 (10.20.1.12)" in made.stderr
    assert "without --print engine" in made.stderr


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--print", "engine"], "--print engine needs --node-index N, the engine's node: 0 to 2 "
         "(0 gpunode01 (10.20.1.11), 1 gpunode02 (10.20.1.12), 2 (any node Slurm picks))"),
        (["-o", "reactor.toml"], "-o needs --node-index N, the engine's node: 0 to 2"),
        (["-o", "reactor.toml", "--node-index", "1", "--print", "serve"],
         "-o writes both files and --print prints one: give one of them"),
        (["--print", "engine", "--node-index", "3"], "--node-index 3 is out of range"),
        (["--node-index", "3"], "--node-index 3 is out of range"),
    ],
)  # fmt: skip
def test_a_missing_or_conflicting_option_is_one_line_and_exit_2(
    tmp_path: Path, extra: list[str], problem: str
) -> None:
    result = reactor("config", "import-seed", str(EXAMPLE), *extra)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(PROG)
    assert problem in result.stderr
    assert not (REPO / "reactor.toml").exists()


def test_print_rejects_another_file_name(tmp_path: Path) -> None:
    result = reactor("config", "import-seed", str(EXAMPLE), "--print", "both")
    assert result.returncode == 2
    assert "invalid choice: 'both' (choose from 'serve', 'engine')" in result.stderr


def test_output_still_writes_both_files(tmp_path: Path) -> None:
    serve_path = tmp_path / "reactor.toml"
    made = reactor(
        "config", "import-seed", str(seed_here(tmp_path)), "--node-index", "0",
        "-o", str(serve_path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [
        f"wrote {serve_path}; use it on the manager's node: reactor serve --config {serve_path}",
        f"wrote {tmp_path / 'engine.toml'}; use it on node 0 gpunode01 (10.20.1.11): "
        f"reactor engine --config {tmp_path / 'engine.toml'}",
    ]
    parse_config(argparse.Namespace(), {}, read_config_file(serve_path))
    engine_path = tmp_path / "engine.toml"
    values = read_engine_config_file(engine_path)
    assert parse_engine_config(argparse.Namespace(), {}, values, engine_path).batch_size == 3
