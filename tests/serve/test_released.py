"""RELEASED through the real app: an engine hands its batch back unfinished.

The files go back to the front of the queue with no attempt counted, the engine is not
blamed, and the job's outputs are kept aside in `RELEASEDOUTPUT_…`, never merged. A
repeat is harmless, a contradiction is a 409, and after an expiry it changes nothing.
Real engines handing batches back to a real `reactor serve`: tests/system/test_engine.py.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from reactor.core.names import parse_job_folder
from reactor.serve.app_keys import SWEEPER
from tests.support.api import LEASE_S, Client, add_files, get_json, write_outputs
from tests.support.records import job_record
from tests.support.runs import ManualClock, RunDirs

MakeClient = Callable[..., Awaitable[Client]]


def manifest_of(run_dirs: RunDirs, folder: str) -> dict[str, Any]:
    """The record reactor keeps of the job whose folder this is."""
    parsed = parse_job_folder(folder)
    assert parsed is not None
    return job_record(run_dirs.output_dir, parsed.job_id)


def job_folders(run_dirs: RunDirs) -> list[str]:
    """Every job folder of both run folders, by kind: what the disk says happened."""
    return sorted(
        str(folder.kind)
        for root in (run_dirs.input_dir, run_dirs.output_dir)
        for entry in os.listdir(root)
        if (folder := parse_job_folder(entry)) is not None
    )


async def metric(client: Client, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def test_released_hands_the_files_back_in_front_and_keeps_the_outputs_aside(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    names = add_files(run_dirs, 3)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=2)
    jid = job["jobid"]
    write_outputs(run_dirs, job)
    clock.advance(7.0)
    with capture_logs() as logs:
        answer = await get_json(client, "/completed", job_id=jid, job_state="RELEASED")
    assert answer == {"ok": True}
    (event,) = [entry for entry in logs if entry["event"] == "job_released"]
    assert {key: event[key] for key in ("job_id", "engine_id", "files", "duration_s")} == {
        "job_id": jid, "engine_id": "gpu-01", "files": 2, "duration_s": 7.0,
    }  # fmt: skip

    kept = run_dirs.output_dir / f"RELEASEDOUTPUT_{jid}_gpu-01"
    assert (kept / "engine.log").read_text() == "log"
    assert sorted(os.listdir(kept / "pass")) == [
        f"{n.removesuffix('.pod5')}.fastq" for n in job["batch"]
    ]
    assert manifest_of(run_dirs, kept.name)["state"] == "released"
    assert job_folders(run_dirs) == ["RELEASEDOUTPUT"]  # ASSIGNED_ and TMPOUTPUT_ are gone
    assert os.listdir(run_dirs.output_dir / "pass") == []
    assert os.listdir(run_dirs.output_dir / "fail") == []

    status = await get_json(client, "/status")
    assert status["files"] == {
        "incomplete": 0, "ready": 3, "assigned": 0, "done": 0, "quarantined": 0
    }  # fmt: skip
    (engine,) = status["engines"]
    assert (engine["jobs_released"], engine["jobs_failed"], engine["benched_s"]) == (1, 0, 0)
    assert await metric(client, "reactor_completions_total", outcome="RELEASED") == 1
    assert await metric(client, "reactor_released_files_total") == 2
    assert await metric(client, "reactor_retried_files_total") == 0

    again = await get_json(client, "/assignwork", engineid="gpu-02", batchsize=3)
    assert again["batch"] == names  # the released files first, in their order
    assert manifest_of(run_dirs, again["job_output_dir"])["files"] == dict.fromkeys(names, 1)


async def test_a_repeated_released_is_harmless_and_a_contradiction_is_409(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    jid = job["jobid"]
    await get_json(client, "/completed", job_id=jid, job_state="RELEASED")
    before = job_folders(run_dirs)
    assert await get_json(client, "/completed", job_id=jid, job_state="released") == {"ok": True}
    for state in ("DONE", "FAILED", "STOPPED"):
        body = await get_json(client, "/completed", 409, job_id=jid, job_state=state)
        assert body["error"] == "conflict"
        assert "already completed as RELEASED" in body["detail"]
    assert job_folders(run_dirs) == before
    assert (await get_json(client, "/status"))["engines"][0]["jobs_released"] == 1
    assert await get_json(client, "/keepalive", job_id=jid, job_state="PROCESSING") == {
        "late": True
    }


async def test_released_after_done_or_failed_is_409(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    for state in ("DONE", "FAILED"):
        job = await get_json(client, "/assignwork", engineid="e", batchsize=1)
        write_outputs(run_dirs, job)
        await get_json(client, "/completed", job_id=job["jobid"], job_state=state)
        before = job_folders(run_dirs)
        body = await get_json(client, "/completed", 409, job_id=job["jobid"], job_state="RELEASED")
        assert f"already completed as {state}" in body["detail"]
        assert job_folders(run_dirs) == before
    assert "RELEASEDOUTPUT" not in job_folders(run_dirs)


async def test_released_after_expiry_changes_nothing(
    make_client: MakeClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Like a late FAILED: the files were already put back by the expiry."""
    names = add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="slow", batchsize=2)
    await client.server.app[SWEEPER].sweep_once(clock.advance(LEASE_S + 1))
    before = job_folders(run_dirs)
    answer = await get_json(client, "/completed", job_id=job["jobid"], job_state="RELEASED")
    assert answer == {"ok": True}
    assert job_folders(run_dirs) == before == ["TMPOUTPUT"]
    status = await get_json(client, "/status")
    (engine,) = status["engines"]
    assert (engine["jobs_expired"], engine["jobs_released"]) == (1, 0)
    assert status["files"]["ready"] == 2
    assert (await get_json(client, "/assignwork", engineid="e", batchsize=2))["batch"] == names


async def test_a_file_released_again_and_again_goes_out_next_and_is_never_quarantined(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    """max_attempts=1: a single FAILED alone would quarantine it. Ten releases do not: each
    time it is the next file handed out, at the same attempt, and the engine stays in work."""
    busy, *names = add_files(run_dirs, 3)
    client = await make_client(max_attempts=1, bench_after=1)
    taken = await get_json(client, "/assignwork", engineid="other", batchsize=1)
    assert taken["batch"] == [busy]  # another engine works: benching would be possible
    for _ in range(10):
        job = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=1)
        assert job["batch"] == names[:1]
        assert manifest_of(run_dirs, job["job_output_dir"])["files"] == {names[0]: 1}
        write_outputs(run_dirs, job)
        await get_json(client, "/completed", job_id=job["jobid"], job_state="RELEASED")
    status = await get_json(client, "/status")
    assert status["files"]["quarantined"] == 0
    engine = next(e for e in status["engines"] if e["engine_id"] == "gpu-01")
    assert (engine["jobs_released"], engine["jobs_failed"], engine["benched_s"]) == (10, 0, 0)
    assert job_folders(run_dirs) == ["ASSIGNED", *["RELEASEDOUTPUT"] * 10, "TMPOUTPUT"]

    last = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=2)
    assert last["batch"] == names
    write_outputs(run_dirs, last)
    await get_json(client, "/completed", job_id=last["jobid"], job_state="DONE")
    merged = sorted(os.listdir(run_dirs.output_dir / "pass"))
    assert merged == sorted(
        f"job_id_{last['jobid']}_{n.removesuffix('.pod5')}.fastq" for n in names
    )
