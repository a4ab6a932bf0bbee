"""SLURM_CONF in this process for the fleet's own commands (the cluster: tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.slurm import SlurmCluster


@pytest.fixture
def slurm_env(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The cluster, with SLURM_CONF set in this process for the fleet's commands."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm
