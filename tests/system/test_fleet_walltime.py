"""A real time limit, outside `make test` (it takes minutes: Slurm's limits are whole
minutes): `make fleet-walltime`.

One engine job with a three-minute limit and `drain_s` 60: Slurm signals the engine
(`--signal=B:TERM@60`, up to a minute early) while it holds a batch that takes longer
than it has left. The engine hands the batch back (RELEASED) before the limit instead of
being killed mid-way; the fleet has submitted the replacement, which does those files.
No lease expires, no job is lost, and every read is there exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet_run import FleetRun
from tests.support.served import wait_for
from tests.support.slurm import SlurmCluster

pytestmark = [pytest.mark.walltime, pytest.mark.timeout(900)]

BATCH_S = 70  # longer than the 30 s the engine gives a batch after the signal
LONG_BATCH = f'sh -c \'sleep {BATCH_S}; exec "$0" -m reactor fake-basecaller "$1" "$2"\' ' + (
    "{python} {input_dir} {output_dir}"
)


@pytest.fixture
def run(tmp_path: Path, slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[FleetRun]:
    the_run = FleetRun(tmp_path, slurm, monkeypatch)
    yield the_run
    the_run.stop()


def test_an_engine_at_its_time_limit_hands_its_batch_back_and_is_replaced(run: FleetRun) -> None:
    run.configure(command=LONG_BATCH, max_engines=1, time_limit="3", drain_s=60, idle_s=30)
    run.start_server()
    run.add_files(8)
    wait_for(lambda: bool(run.server_events("job_released")), 300, "a batch handed back")
    first = run.server_events("fleet_submit")[0]["slurm_job"]
    released = run.server_events("job_released")
    assert released[0]["engine_id"] == f"slurm-{first}"
    wait_for(run.all_done, 600, "every file done")
    assert len(run.server_events("fleet_submit")) + len(run.server_events("fleet_replace")) >= 2
    assert not run.server_events("job_expired")
    assert not run.server_events("fleet_job_lost")
    run.assert_exactly_once()
