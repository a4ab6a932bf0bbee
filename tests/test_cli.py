"""The `reactor` command line: a person's mistake is one line on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reactor import cli
from reactor.cli import main
from tests.support.runs import RunDirs


def test_serve_without_input_dir_says_how_to_set_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REACTOR_INPUT_DIR", raising=False)
    monkeypatch.delenv("REACTOR_CONFIG", raising=False)
    assert main(["serve", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "input_dir" in err
    assert "--input-dir" in err


def test_serve_with_missing_folder_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    assert main(["serve", "--input-dir", str(missing), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "Traceback" not in err


def test_serve_refuses_a_public_address_without_an_access_rule(
    capsys: pytest.CaptureFixture[str], run_dirs: RunDirs
) -> None:
    """Listening beyond loopback needs a token or an allow list; serve says why it stops."""
    code = main(
        [
            "serve",
            "--input-dir", str(run_dirs.input_dir),
            "--output-dir", str(run_dirs.output_dir),
            "--listen", "0.0.0.0:40765",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "token" in err
    assert "allow" in err


def test_serve_with_bad_number_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], run_dirs: RunDirs
) -> None:
    code = main(
        [
            "serve",
            "--input-dir", str(run_dirs.input_dir),
            "--output-dir", str(run_dirs.output_dir),
            "--batch-size", "lots",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "batch_size" in err
    assert err.count("\n") == 1


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_console_script_entry_runs_as_module() -> None:
    """`python -m reactor --version` works (the console script calls the same main)."""
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("reactor ")


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--input-dir", "/a", "--output-dir", "/b", "--batch-size", "7"],
        ["status", "--json"],
        ["engine", "--manager", "http://127.0.0.1:1", "--exit-when-idle", "30", "--once"],
        ["config", "import-seed", "seed.json"],
        ["status", "--bogus"],
    ],
)
def test_a_verb_alone_parses_as_the_whole_command_line(argv: list[str]) -> None:
    """`main` builds only the verb's own parser: the same arguments come out of it."""
    whole = cli._parser().parse_known_args(argv)
    alone = cli._parser(argv[0]).parse_known_args(argv)
    assert vars(alone[0]) == vars(whole[0])
    assert alone[1] == whole[1]


def test_starting_a_verb_imports_no_other_verb() -> None:
    """`reactor status --help` loads the status command's module, not serve's or the
    engine's (each would add to every start)."""
    code = (
        "import sys\n"
        "from reactor.cli import main\n"
        "try:\n"
        "    main(['status', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('reactor.commands.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = result.stdout.strip().splitlines()[-1]
    assert "'reactor.commands.status'" in loaded
    for other in ("serve", "engine", "demo", "simulate_run"):
        assert f"'reactor.commands.{other}'" not in loaded
