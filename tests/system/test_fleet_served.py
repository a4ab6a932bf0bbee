"""The fleet end to end: a real `reactor serve` with a `[fleet]`, a real single-node Slurm
(tests/support/slurm.py), engine jobs running the real `reactor engine` with the
stand-in basecaller, real `.pod5` files arriving. Each scenario ends with every read of
every file in the outputs exactly once, recounted by the test."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fleet_run import FleetRun
from tests.support.served import wait_for
from tests.support.slurm import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SLOW_FAKE = 'sh -c \'sleep 1.5; exec "$0" -m reactor fake-basecaller "$1" "$2"\' ' + (
    "{python} {input_dir} {output_dir}"
)


@pytest.fixture
def run(tmp_path: Path, slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[FleetRun]:
    the_run = FleetRun(tmp_path, slurm, monkeypatch)
    yield the_run
    the_run.stop()


def test_engines_follow_the_work_up_to_max_down_to_zero_and_up_again(run: FleetRun) -> None:
    run.configure()
    run.start_server()
    run.watch_queue()
    assert run.fleet()["submitted"] == 0 and run.jobs() == {}
    run.add_files(16)  # 8 batches of 2: more work than max_engines (3)
    wait_for_all_done(run, 90)
    first = run.fleet()["submitted"]
    assert 1 <= first <= 3
    # Idle: each engine exits after idle_s; the queue empties, nothing is cancelled.
    wait_until(lambda: run.jobs() == {} and run.fleet()["jobs"] == [], 60, "the fleet at zero")
    assert run.fleet()["cancelled"] == 0
    run.add_files(4)  # new files after the fleet went to zero: engines again
    wait_for_all_done(run, 90)
    again = run.fleet()["submitted"]
    assert again > first
    assert run.peak_jobs <= 3
    submits = run.server_events("fleet_submit")
    assert len(submits) == again
    assert all(e["waiting_files"] > 0 for e in submits)
    engines = {e["engine_id"] for e in run.server_events("job_assigned")}
    assert engines and all(engine.startswith("slurm-") for engine in engines)
    metrics = scrape(run)
    assert metrics["reactor_fleet_submissions_total"] == again
    assert metrics["reactor_fleet_cancelled_total"] == 0
    assert metrics['reactor_fleet_jobs{phase="running"}'] == sum(
        1 for job in run.fleet()["jobs"] if job["phase"] == "running"
    )
    run.assert_exactly_once()


def test_a_killed_engine_job_loses_its_lease_and_is_replaced(run: FleetRun) -> None:
    """A node that hangs, then dies: the engine and its command are frozen (SIGSTOP to the
    whole job), the lease expires and the batch goes to another engine; the job is then
    killed, leaves the queue, and is replaced while work waits."""
    run.configure(command=SLOW_FAKE, max_engines=2)
    run.start_server()
    run.add_files(24)
    busy = wait_for_busy_job(run)
    engine_id = f"slurm-{busy}"
    run.slurm.run("scancel", "--full", "--signal=STOP", busy)
    wait_until(
        lambda: any(e["engine_id"] == engine_id for e in run.server_events("job_expired")),
        30,
        "the frozen engine's lease to expire",
    )
    run.slurm.run("scancel", "--signal=KILL", busy)
    wait_for_all_done(run, 120)
    lost = run.server_events("fleet_job_lost")
    assert [e["slurm_job"] for e in lost] == [busy]  # once, however it was seen
    replaced = run.server_events("fleet_replace")
    assert len(replaced) == 1 and replaced[0]["slurm_job"] != busy
    assert run.fleet()["lost"] == 1 and run.fleet()["replaced"] == 1
    run.assert_exactly_once()


def test_a_job_told_to_drain_finishes_its_batch_and_exits(run: FleetRun) -> None:
    """What Slurm does drain_s before the time limit (--signal=B:TERM@...), done by hand
    (time limits have a minute's resolution): the engine finishes its batch, takes no
    more, and its job ends; the fleet carries on without it."""
    run.configure(command=SLOW_FAKE, max_engines=2)
    run.start_server()
    run.add_files(8)
    busy = wait_for_busy_job(run)
    run.slurm.run("scancel", "--batch", "--signal=TERM", busy)
    wait_until(lambda: busy not in run.jobs(), 60, f"job {busy} to end")
    wait_for_all_done(run, 120)
    engine_id = f"slurm-{busy}"
    assert [e for e in run.server_events("job_done") if e["engine_id"] == engine_id]
    assert not [e for e in run.server_events("job_expired") if e["engine_id"] == engine_id]
    assert not [e for e in run.server_events("job_released") if e["engine_id"] == engine_id]
    assert not run.server_events("fleet_job_lost")
    run.assert_exactly_once()


def test_a_restarted_service_adopts_its_running_jobs(run: FleetRun) -> None:
    run.configure(max_engines=2, idle_s=60)  # engines wait for work across the restart
    run.start_server()
    run.add_files(6)
    wait_for_all_done(run, 90)
    wait_until(lambda: len(running(run)) == 2, 60, "two engine jobs running")
    before = set(run.jobs())
    assert run.stop_server() == 0
    run.start_server()
    wait_until(lambda: run.fleet()["adopted"] == 2, 30, "the jobs adopted")
    assert run.fleet()["submitted"] == 0
    assert {e["slurm_job"] for e in run.server_events("fleet_adopt")} == before
    run.add_files(6)  # the adopted engines take the new work: nothing more is submitted
    wait_for_all_done(run, 90)
    assert run.fleet()["submitted"] == 0
    assert set(run.jobs()) == before
    run.assert_exactly_once()


def test_a_failing_sbatch_is_reported_and_a_fixed_setting_completes_the_run(
    run: FleetRun,
) -> None:
    run.configure(partition="no-such-partition")
    run.start_server()
    run.add_files(4)
    wait_until(lambda: run.fleet()["submit_failures"] >= 1, 30, "a failed submission")
    fleet = run.fleet()
    assert "partition" in (fleet["last_error"] or "").lower()
    assert fleet["retry_in_s"] is not None and fleet["retry_in_s"] > 0
    failed = run.server_events("fleet_submit_failed")
    assert failed and "partition" in failed[0]["hint"]
    assert run.stop_server() == 0
    run.monkeypatch.setenv("REACTOR_FLEET_PARTITION", run.slurm.partition)
    run.start_server()
    wait_for_all_done(run, 90)
    run.assert_exactly_once()


# --------------------------------------------------------------------- helpers


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    wait_for(check, timeout_s, what)


def scrape(run: FleetRun) -> dict[str, float]:
    """/metrics as series -> value (the fleet's lines only)."""
    with urllib.request.urlopen(f"{run.url}/metrics", timeout=5) as reply:  # noqa: S310
        text = reply.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("reactor_fleet_"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def wait_for_all_done(run: FleetRun, timeout_s: float) -> None:
    wait_until(run.all_done, timeout_s, f"all {len(run.read_ids)} files done")


def running(run: FleetRun) -> list[str]:
    return [job_id for job_id, state in run.jobs().items() if state == "RUNNING"]


def wait_for_busy_job(run: FleetRun) -> str:
    """A fleet job whose engine holds a batch now."""
    found: list[str] = []

    def busy() -> bool:
        for job in run.fleet()["jobs"]:
            if job["engine"] and job["engine"]["live_jobs"] > 0 and job["phase"] == "running":
                found.append(job["slurm_job"])
                return True
        return False

    wait_until(busy, 60, "an engine job holding a batch")
    return found[0]
