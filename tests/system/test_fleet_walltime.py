"""A real time limit, outside `make test` (it takes minutes: Slurm's limits are whole
minutes): `make fleet-walltime`.

Engine jobs with a three-minute limit and `drain_s` 60, batches of 70 s: Slurm signals
each engine (`--signal=B:TERM@60`, up to a minute early) while it holds a batch. The
engine takes no more work and finishes the batch if it can within `release_after` (30
s here), else hands it back (RELEASED) before the limit; either way nothing is killed
mid-way: no lease expires, no job is lost (TIMEOUT), the fleet submits the replacement
while the old job drains, and every read is there exactly once."""

from __future__ import annotations

import pytest

from tests.support.engine_run import slow_fake
from tests.support.fleet_run import FleetRun
from tests.support.served import wait_for

pytestmark = [pytest.mark.walltime, pytest.mark.timeout(900)]

BATCH_S = 70  # a batch in hand at the signal may or may not end within 30 s
LONG_BATCH = slow_fake(BATCH_S)


def test_engines_at_their_time_limit_drain_and_are_replaced_in_time(fleet_run: FleetRun) -> None:
    fleet_run.configure(command=LONG_BATCH, max_engines=1, time_limit="3", drain_s=60, idle_s=30)
    fleet_run.start_server()
    fleet_run.add_files(8)
    wait_for(fleet_run.all_done, 900, "every file done")
    submitted = fleet_run.server_events("fleet_submit") + fleet_run.server_events("fleet_replace")
    assert len(submitted) >= 2  # the first job could not do all 8 files in 3 minutes
    first = submitted[0]["slurm_job"]
    ended = [e for e in fleet_run.server_events("fleet_job_ended") if e["slurm_job"] == first]
    assert ended and ended[0]["timestamp"] > submitted[1]["timestamp"]  # replaced while draining
    signalled = [
        line
        for line in (fleet_run.job_logs / f"reactor-engine-{first}.log").read_text().splitlines()
        if '"event": "stopping"' in line and "SIGTERM" in line
    ]
    assert signalled, "Slurm's signal did not reach the engine"
    engine_id = f"slurm-{first}"
    finished = [
        e
        for e in fleet_run.server_events("job_done") + fleet_run.server_events("job_released")
        if e["engine_id"] == engine_id
    ]
    assert finished  # its batches done or handed back, none left to expire
    assert not fleet_run.server_events("job_expired")
    assert not fleet_run.server_events("fleet_job_lost")
    fleet_run.assert_exactly_once()
