"""`GET /status` for `reactor status`: phase, a recent rate and the ETA it gives,
quarantined files, benched engines; every answer true to the OpenAPI document, and the
cost independent of how many files the run tracks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from reactor.core.model import FileRecord
from reactor.core.status import QUARANTINE_LISTED
from reactor.serve.app_keys import REACTOR, SWEEPER
from reactor.serve.service import Reactor
from tests.support.api import Client, MakeClient, add_files, get_json, write_outputs
from tests.support.openapi import DOCUMENT, assert_documented
from tests.support.runs import ManualClock, RunDirs


async def status_of(client: Client) -> Any:
    body = await get_json(client, "/status")
    assert_documented("/status", 200, body)
    return body


async def finish_job(client: Client, run_dirs: RunDirs, engine: str, size: int) -> None:
    job = await get_json(client, "/assignwork", engineid=engine, batchsize=size)
    assert job["batch_size"] == size
    write_outputs(run_dirs, job)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")


async def test_phase_is_starting_until_ready_then_running(make_client: MakeClient) -> None:
    """The placeholder phase (end-of-run detection will add finishing and complete)."""
    client = await make_client()
    assert (await status_of(client))["phase"] == "running"
    client.server.app[REACTOR].ready = False
    body = await status_of(client)
    assert (body["phase"], body["ready"]) == ("starting", False)


async def test_rate_and_eta_follow_the_recent_past(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """A burst early on, then nothing for 10 minutes: the recent rate falls to 0 and
    the ETA becomes unknown, while the since-start figure remembers the burst."""
    add_files(run_dirs, 10)
    client = await make_client()
    clock.advance(60)
    await finish_job(client, run_dirs, "gpu-01", 6)
    early = (await status_of(client))["throughput"]
    assert early["files_done_since_start"] == 6
    assert early["files_per_s"] == round(6 / 60, 3)
    assert early["eta_s"] == round(4 / (6 / 60), 1)
    assert early["window_s"] == 300.0
    clock.advance(600)
    late = (await status_of(client))["throughput"]
    assert late["files_per_s"] == 0.0
    assert late["eta_s"] is None
    assert late["files_per_s_since_start"] == round(6 / 660, 3)
    await finish_job(client, run_dirs, "gpu-01", 3)
    now = (await status_of(client))["throughput"]
    assert now["files_per_s"] == round(3 / 300, 3)
    assert now["eta_s"] == round(1 / (3 / 300), 1)


async def test_quarantined_files_are_listed_with_their_failures(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    names = add_files(run_dirs, 2)
    client = await make_client(max_attempts=1)
    job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    body = await status_of(client)
    folder = f"FAILED_{job['jobid']}_gpu-01"  # what POST /requeue?folder= releases
    listed = [{"name": names[0], "failures": 1, "folder": folder}]
    assert body["quarantined"] == {"total": 1, "files": listed}
    assert body["files"]["quarantined"] == 1


async def test_quarantine_list_is_bounded_and_the_total_is_exact(make_client: MakeClient) -> None:
    client = await make_client()
    reactor = client.server.app[REACTOR]
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(QUARANTINE_LISTED + 50)]
    for name in names:
        reactor.state.restore_quarantined(name, 3, reactor.clock())
    body = await status_of(client)
    assert body["quarantined"]["total"] == len(names)
    assert [f["name"] for f in body["quarantined"]["files"]] == names[:QUARANTINE_LISTED]
    schema = DOCUMENT["components"]["schemas"]["Status"]["properties"]["quarantined"]
    assert schema["properties"]["files"]["maxItems"] == QUARANTINE_LISTED


async def test_released_files_leave_the_quarantine_list(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 1)
    client = await make_client(max_attempts=1)
    job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    response = await client.post("/requeue", params={"all": "true"})
    assert response.status == 200
    body = await status_of(client)
    assert body["quarantined"] == {"total": 0, "files": []}
    assert body["files"]["ready"] == 1


async def test_a_benched_engine_says_for_how_long(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    add_files(run_dirs, 4)
    client = await make_client(bench_after=1, bench_seconds=120.0)
    await get_json(client, "/assignwork", engineid="gpu-02", batchsize=1)  # another engine works
    job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=2)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    clock.advance(20)
    engines = {e["engine_id"]: e for e in (await status_of(client))["engines"]}
    assert engines["gpu-01"]["benched_s"] == 100.0
    assert engines["gpu-01"]["jobs_failed"] == 1
    assert engines["gpu-02"]["benched_s"] == 0.0


class NoWalking(dict[str, FileRecord]):
    """The files of a run, refusing to be walked: lookups by name only."""

    def _walked(self) -> Any:
        msg = "/status walked every file"
        raise AssertionError(msg)

    def __iter__(self) -> Iterator[str]:
        return self._walked()  # type: ignore[no-any-return]

    keys = values = items = _walked


async def test_status_never_walks_the_files(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """A site may track a million files: /status reads kept counts and sets, not files."""
    add_files(run_dirs, 3)
    client = await make_client(max_attempts=1)
    await finish_job(client, run_dirs, "gpu-01", 1)
    job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
    reactor: Reactor = client.server.app[REACTOR]
    for i in range(1000):
        reactor.state.restore_done(f"old_{i}.pod5", clock())
    reactor.state.files = NoWalking(reactor.state.files)
    body = await status_of(client)
    assert body["files"] == {
        "incomplete": 0, "ready": 0, "assigned": 1, "done": 1001, "quarantined": 1
    }  # fmt: skip
    assert len(body["jobs"]["live"]) == 1


async def test_status_lists_the_engines_seen_last_and_counts_them_all(
    make_client: MakeClient, clock: ManualClock
) -> None:
    """However many engine ids a run has seen, /status lists at most 100, most recently
    seen first, and says how many there are."""
    client = await make_client()
    for number in range(150):
        await get_json(client, "/assignwork", engineid=f"slurm-{number}", batchsize=1)
        clock.advance(1.0)
    body = await status_of(client)
    assert body["engines_total"] == 150
    listed = [engine["engine_id"] for engine in body["engines"]]
    assert listed == [f"slurm-{number}" for number in range(149, 49, -1)]


async def test_silent_engines_are_forgotten_by_the_sweeper_unless_they_hold_work(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """An engine silent for an hour with no live job and not benched is forgotten; one
    holding a job (its lease runs out, and it comes back) is kept while it holds it."""
    add_files(run_dirs, 1)
    client = await make_client(report_back_interval=7200.0)
    await get_json(client, "/assignwork", engineid="holder", batchsize=1)
    await get_json(client, "/assignwork", engineid="idle", batchsize=1)  # nothing left
    sweeper = client.server.app[SWEEPER]
    await sweeper.sweep_once(clock.advance(3599.0))
    assert (await status_of(client))["engines_total"] == 2
    await sweeper.sweep_once(clock.advance(2.0))
    body = await status_of(client)
    assert [engine["engine_id"] for engine in body["engines"]] == ["holder"]


async def test_a_refused_job_is_held_in_status_with_its_reason(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    """A DONE whose outputs hold a link is refused; /status lists the job, held for a
    person with what was found, and counts it; the answer is true to the document."""
    add_files(run_dirs, 1)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="gpu-bad", batchsize=1)
    (run_dirs.output_dir / job["job_output_dir"] / "pass" / "x.fastq").symlink_to("/etc/hostname")
    await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    held = (await status_of(client))["held"]
    assert held["total"] == 1
    (entry,) = held["jobs"]
    assert (entry["job_id"], entry["engine_id"], entry["state"]) == (
        job["jobid"],
        "gpu-bad",
        "refused",
    )
    assert "symbolic link" in entry["reason"]
    metrics = await (await client.get("/metrics")).text()
    assert "reactor_jobs_held 1.0" in metrics


async def test_status_stays_small_however_many_jobs_are_live(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """300 live jobs on 300 engines: /status lists the 100 oldest jobs and the 100 engines
    seen last, with totals, and stays under 64 KB (it was O(live jobs) before: 300 jobs
    listed, ~45 KB of jobs alone, growing with every engine of a fleet)."""
    add_files(run_dirs, 300)
    client = await make_client()
    for number in range(300):
        await get_json(client, "/assignwork", engineid=f"slurm-{number}", batchsize=1)
        clock.advance(0.1)
    body = await status_of(client)
    assert body["jobs"]["live_total"] == 300
    assert [job["engine_id"] for job in body["jobs"]["live"]] == [
        f"slurm-{number}" for number in range(100)
    ]
    assert len(body["engines"]) == 100
    assert len(json.dumps(body)) < 64_000


async def test_work_waiting_with_no_engine_is_an_alert(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    assert (await status_of(client))["alerts"] == []
    clock.advance(601)
    body = await status_of(client)
    assert body["backlog"] == {"files": 2, "waiting_s": 601.0}
    assert [alert["kind"] for alert in body["alerts"]] == ["no_engine"]
    await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
    assert (await status_of(client))["alerts"] == []  # an engine came: it is taking work
