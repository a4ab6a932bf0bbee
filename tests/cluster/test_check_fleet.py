"""`reactor check`'s fleet line against a real Slurm: squeue here or through a prefix,
and what it says when the commands are missing, fail or answer in another shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.ops.checks.fleet import check_fleet
from reactor.ops.checks.result import Status
from reactor.settings.fleet import FleetConfig
from reactor.settings.serve import ServeConfig
from tests.support.slurm import SlurmCluster

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **fleet: object) -> ServeConfig:
    return ServeConfig(
        input_dir=tmp_path / "in",
        output_dir=tmp_path / "out",
        fleet=FleetConfig(manager_url="http://127.0.0.1:1", name="reactor-check", **fleet),  # type: ignore[arg-type]
    )


def test_without_a_fleet_the_check_is_skipped(tmp_path: Path) -> None:
    config = ServeConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out")
    assert check_fleet(config).status is Status.SKIP


def test_squeue_here_and_through_a_prefix_answers(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    here = check_fleet(_config(tmp_path))
    assert here.status is Status.OK, here
    assert "squeue here answers; 0 jobs named reactor-check" in here.message
    via = check_fleet(_config(tmp_path, submit_via=("sh", "-c")))
    assert via.status is Status.OK, via
    assert "through sh -c" in via.message


@pytest.mark.parametrize(
    ("submit_via", "says"),
    [
        (("no-such-ssh", "login-node"), "no-such-ssh is not installed"),
        (("sh", "-c", "echo 'cannot reach login-node' >&2; exit 255"), "cannot reach login-node"),
        (("sh", "-c", "echo 'JOBID PARTITION NAME'"), "not id|state|node|time left|reason"),
    ],
)
def test_a_problem_says_what_and_how_to_fix_it(
    slurm_env: SlurmCluster, tmp_path: Path, submit_via: tuple[str, ...], says: str
) -> None:
    found = check_fleet(_config(tmp_path, submit_via=submit_via))
    assert found.status is Status.FAIL
    assert says in found.message, found
    assert found.fix
