"""One real single-node Slurm cluster for the session (tests/support/slurm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.slurm import SlurmCluster, start_cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    cluster = start_cluster(Path(tmp_path_factory.mktemp("slurm")))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_env(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The cluster, with SLURM_CONF set in this process for the fleet's commands."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm
