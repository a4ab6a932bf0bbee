"""The fleet end to end: a real `reactor serve` with a `[fleet]`, a real single-node Slurm
(tests/support/slurm.py), engine jobs running the real `reactor engine` with the
stand-in basecaller, real `.pod5` files arriving. Each scenario ends with every read of
every file in the outputs exactly once, recounted by the test."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest

from tests.support.engine_run import slow_fake
from tests.support.fleet_run import FleetRun
from tests.support.served import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SLOW_FAKE = slow_fake(1.5)


def test_engines_follow_the_work_up_to_max_down_to_zero_and_up_again(fleet_run: FleetRun) -> None:
    fleet_run.configure()
    fleet_run.start_server()
    fleet_run.watch_queue()
    assert fleet_run.fleet()["submitted"] == 0 and fleet_run.jobs() == {}
    fleet_run.add_files(16)  # 8 batches of 2: more work than max_engines (3)
    wait_for_all_done(fleet_run, 90)
    first = fleet_run.fleet()["submitted"]
    assert 1 <= first <= 3
    # Idle: each engine exits after idle_s; the queue empties, nothing is cancelled.
    wait_until(
        lambda: fleet_run.jobs() == {} and fleet_run.fleet()["jobs"] == [], 60, "the fleet at zero"
    )
    assert fleet_run.fleet()["cancelled"] == 0
    fleet_run.add_files(4)  # new files after the fleet went to zero: engines again
    wait_for_all_done(fleet_run, 90)
    again = fleet_run.fleet()["submitted"]
    assert again > first
    assert fleet_run.peak_jobs <= 3
    submits = fleet_run.server_events("fleet_submit")
    assert len(submits) == again
    assert all(e["waiting_files"] > 0 for e in submits)
    engines = {e["engine_id"] for e in fleet_run.server_events("job_assigned")}
    assert engines and all(engine.startswith("slurm-") for engine in engines)
    metrics = scrape(fleet_run)
    assert metrics["reactor_fleet_submissions_total"] == again
    assert metrics["reactor_fleet_cancelled_total"] == 0
    assert metrics['reactor_fleet_jobs{phase="running"}'] == sum(
        1 for job in fleet_run.fleet()["jobs"] if job["phase"] == "running"
    )
    fleet_run.assert_exactly_once()


def test_a_killed_engine_job_loses_its_lease_and_is_replaced(fleet_run: FleetRun) -> None:
    """A node that hangs, then dies: the engine and its command are frozen (SIGSTOP to the
    whole job), the lease expires and the batch goes to another engine; the job is then
    killed, leaves the queue, and is replaced while work waits."""
    fleet_run.configure(command=SLOW_FAKE, max_engines=2)
    fleet_run.start_server()
    fleet_run.add_files(24)
    busy = wait_for_busy_job(fleet_run)
    engine_id = f"slurm-{busy}"
    fleet_run.slurm.run("scancel", "--full", "--signal=STOP", busy)
    wait_until(
        lambda: any(e["engine_id"] == engine_id for e in fleet_run.server_events("job_expired")),
        30,
        "the frozen engine's lease to expire",
    )
    fleet_run.slurm.run("scancel", "--signal=KILL", busy)
    wait_for_all_done(fleet_run, 120)
    lost = fleet_run.server_events("fleet_job_lost")
    assert [e["slurm_job"] for e in lost] == [busy]  # once, however it was seen
    replaced = fleet_run.server_events("fleet_replace")
    assert len(replaced) == 1 and replaced[0]["slurm_job"] != busy
    assert fleet_run.fleet()["lost"] == 1 and fleet_run.fleet()["replaced"] == 1
    fleet_run.assert_exactly_once()


def test_a_job_told_to_drain_finishes_its_batch_and_exits(fleet_run: FleetRun) -> None:
    """What Slurm does drain_s before the time limit (--signal=B:TERM@...), done by hand
    (time limits have a minute's resolution): the engine finishes its batch, takes no
    more, and its job ends; the fleet carries on without it."""
    fleet_run.configure(command=SLOW_FAKE, max_engines=2)
    fleet_run.start_server()
    fleet_run.add_files(8)
    busy = wait_for_busy_job(fleet_run)
    fleet_run.slurm.run("scancel", "--batch", "--signal=TERM", busy)
    wait_until(lambda: busy not in fleet_run.jobs(), 60, f"job {busy} to end")
    wait_for_all_done(fleet_run, 120)
    engine_id = f"slurm-{busy}"
    assert [e for e in fleet_run.server_events("job_done") if e["engine_id"] == engine_id]
    assert not [e for e in fleet_run.server_events("job_expired") if e["engine_id"] == engine_id]
    assert not [e for e in fleet_run.server_events("job_released") if e["engine_id"] == engine_id]
    assert not fleet_run.server_events("fleet_job_lost")
    fleet_run.assert_exactly_once()


def test_a_restarted_service_adopts_its_running_jobs(fleet_run: FleetRun) -> None:
    fleet_run.configure(max_engines=2, idle_s=60)  # engines wait for work across the restart
    fleet_run.start_server()
    fleet_run.add_files(6)
    wait_for_all_done(fleet_run, 90)
    wait_until(lambda: len(running(fleet_run)) == 2, 60, "two engine jobs running")
    before = set(fleet_run.jobs())
    assert fleet_run.stop_server() == 0
    fleet_run.start_server()
    wait_until(lambda: fleet_run.fleet()["adopted"] == 2, 30, "the jobs adopted")
    assert fleet_run.fleet()["submitted"] == 0
    assert {e["slurm_job"] for e in fleet_run.server_events("fleet_adopt")} == before
    fleet_run.add_files(6)  # the adopted engines take the new work: nothing more is submitted
    wait_for_all_done(fleet_run, 90)
    assert fleet_run.fleet()["submitted"] == 0
    assert set(fleet_run.jobs()) == before
    fleet_run.assert_exactly_once()


def test_a_failing_sbatch_is_reported_and_a_fixed_setting_completes_the_run(
    fleet_run: FleetRun,
) -> None:
    fleet_run.configure(partition="no-such-partition")
    fleet_run.start_server()
    fleet_run.add_files(4)
    wait_until(lambda: fleet_run.fleet()["submit_failures"] >= 1, 30, "a failed submission")
    fleet = fleet_run.fleet()
    assert "partition" in (fleet["last_error"] or "").lower()
    assert fleet["retry_in_s"] is not None and fleet["retry_in_s"] > 0
    failed = fleet_run.server_events("fleet_submit_failed")
    assert failed and "partition" in failed[0]["hint"]
    assert fleet_run.stop_server() == 0
    fleet_run.monkeypatch.setenv("REACTOR_FLEET_PARTITION", fleet_run.slurm.partition)
    fleet_run.start_server()
    wait_for_all_done(fleet_run, 90)
    fleet_run.assert_exactly_once()


# --------------------------------------------------------------------- helpers


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    wait_for(check, timeout_s, what)


def scrape(fleet_run: FleetRun) -> dict[str, float]:
    """/metrics as series -> value (the fleet's lines only)."""
    with urllib.request.urlopen(f"{fleet_run.url}/metrics", timeout=5) as reply:  # noqa: S310
        text = reply.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("reactor_fleet_"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def wait_for_all_done(fleet_run: FleetRun, timeout_s: float) -> None:
    wait_until(fleet_run.all_done, timeout_s, f"all {len(fleet_run.read_ids)} files done")


def running(fleet_run: FleetRun) -> list[str]:
    return [job_id for job_id, state in fleet_run.jobs().items() if state == "RUNNING"]


def wait_for_busy_job(fleet_run: FleetRun) -> str:
    """A fleet job whose engine holds a batch now."""
    found: list[str] = []

    def busy() -> bool:
        for job in fleet_run.fleet()["jobs"]:
            if job["engine"] and job["engine"]["live_jobs"] > 0 and job["phase"] == "running":
                found.append(job["slurm_job"])
                return True
        return False

    wait_until(busy, 60, "an engine job holding a batch")
    return found[0]
