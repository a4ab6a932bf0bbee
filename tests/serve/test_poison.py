"""Poison files and bad engines, through the real app.

A corrupt `.pod5` (valid signatures, garbage inside) makes the basecaller fail its
whole batch. Reactor retries failed batches in halves, so the poison file ends up alone
in quarantine while every other file of its batch is basecalled; and an engine that
fails batch after batch is benched so it cannot quarantine the run.

The same poison file among real processes: tests/system/test_poison_served.py.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR
from reactor.sim.pod5_files import read_ids
from tests.support.pod5files import write_corrupt_pod5, write_pod5
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
POISON = "PAK00000_pass_abc_def_7.pod5"


def make_files(run_dirs: RunDirs, count: int) -> list[str]:
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(count)]
    for i, name in enumerate(names):
        if name == POISON:
            write_corrupt_pod5(run_dirs.input_dir / name)
        else:
            write_pod5(run_dirs.input_dir / name, n_reads=2, seed=i)
        os.utime(run_dirs.input_dir / name, (1_000_000 + i, 1_000_000 + i))
    return names


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> Callable[..., Awaitable[Client]]:
    async def make(**overrides: Any) -> Client:
        return await aiohttp_client(
            create_app(run_dirs.config(**overrides), clock=clock, watch=False, sweep=False)
        )

    return make


async def call(client: Client, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def basecall_or_fail(run_dirs: RunDirs, job: dict[str, Any]) -> str:
    """A stand-in engine's outcome: FAILED if the poison file is in the batch."""
    if POISON in job["batch"]:
        return "FAILED"
    out = run_dirs.output_dir / job["job_output_dir"] / "pass"
    for name in job["batch"]:
        records = "".join(f"@{rid}\nA\n+\n!\n" for rid in read_ids(run_dirs.input_dir / name))
        (out / f"{name.removesuffix('.pod5')}.fastq").write_text(records)
    return "DONE"


async def drive(client: Client, run_dirs: RunDirs, engines: list[str], rounds: int) -> list[int]:
    """Engines take turns asking for work and reporting; returns the batch sizes that
    contained the poison file, in order."""
    poison_batches = []
    for turn in range(rounds):
        engine = engines[turn % len(engines)]
        job = await call(client, "/assignwork", engineid=engine, batchsize=8)
        if job["batch_size"] == 0:
            status = await call(client, "/status")
            if status["files"]["ready"] == 0 and status["files"]["assigned"] == 0:
                return poison_batches
            continue
        if POISON in job["batch"]:
            poison_batches.append(job["batch_size"])
        outcome = basecall_or_fail(run_dirs, job)
        await call(client, "/completed", job_id=job["jobid"], job_state=outcome)
    pytest.fail(f"the run did not end in {rounds} turns")


async def test_poison_file_is_isolated_by_halving_and_quarantined_alone(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """Batch of 8 with one poison file: halves 4, 2, 1, then alone until max_attempts
    on two engines; every other file is basecalled exactly once."""
    make_files(run_dirs, 16)
    client = await make_client(max_attempts=2, bench_after=0)
    poison_batches = await drive(client, run_dirs, ["gpu-a", "gpu-b"], rounds=200)
    assert poison_batches == [8, 4, 2, 1, 1]
    quarantine = list(run_dirs.input_dir.glob("FAILED_*"))
    assert len(quarantine) == 1
    assert os.listdir(quarantine[0]) == [POISON]
    verdict = check_exactly_once_without(run_dirs, POISON)
    assert verdict == (30, 30)


def check_exactly_once_without(run_dirs: RunDirs, skip: str) -> tuple[int, int]:
    """(reads expected outside `skip`, reads found once in pass/+fail/)."""
    expected = {
        rid
        for path in run_dirs.input_dir.glob("*.pod5")
        if path.name != skip
        for rid in read_ids(path)
    }
    found: list[str] = []
    for kind in ("pass", "fail"):
        for path in (run_dirs.output_dir / kind).glob("*.fastq"):
            found += [line[1:] for line in path.read_text().splitlines()[0::4]]
    assert len(found) == len(set(found)), "a read was basecalled twice"
    assert set(found) == expected
    return len(expected), len(found)


async def test_one_engine_failing_alone_does_not_quarantine_while_another_works(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """A file that fails only on gpu-a (a broken node) is skipped by gpu-a and done by
    gpu-b, instead of being quarantined."""
    write_pod5(run_dirs.input_dir / "x.pod5", n_reads=1, seed=1)
    client = await make_client(max_attempts=1, bench_after=0)
    job = await call(client, "/assignwork", engineid="gpu-a", batchsize=1)
    assert (await call(client, "/assignwork", engineid="gpu-b", batchsize=1))["batch"] == []
    await call(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    assert not list(run_dirs.input_dir.glob("FAILED_*"))
    assert (await call(client, "/assignwork", engineid="gpu-a", batchsize=1))["batch"] == []
    retry = await call(client, "/assignwork", engineid="gpu-b", batchsize=1)
    assert retry["batch"] == ["x.pod5"]


async def test_engine_failing_batch_after_batch_is_benched(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, clock: ManualClock
) -> None:
    """After bench_after failed batches in a row, a broken engine gets empty answers for
    bench_seconds (logged once), while a healthy engine gets the work."""
    make_files(run_dirs, 12)
    client = await make_client(bench_after=3, bench_seconds=60.0, max_attempts=3)

    async def healthy_turn() -> dict[str, Any]:
        job: dict[str, Any] = await call(client, "/assignwork", engineid="healthy", batchsize=1)
        if job["batch_size"]:
            outcome = basecall_or_fail(run_dirs, job)
            await call(client, "/completed", job_id=job["jobid"], job_state=outcome)
        return job

    await healthy_turn()
    with capture_logs() as logs:
        for _ in range(3):
            job = await call(client, "/assignwork", engineid="broken", batchsize=2)
            assert job["batch_size"] == 2
            await call(client, "/completed", job_id=job["jobid"], job_state="FAILED")
            # the healthy engine takes the failed files (retried in halves of one), so
            # the broken engine's next batch is fresh: only fresh failures count
            await healthy_turn()
            await healthy_turn()
    assert [e["engine_id"] for e in logs if e["event"] == "engine_benched"] == ["broken"]
    assert (await call(client, "/assignwork", engineid="broken", batchsize=2))["batch"] == []
    assert (await healthy_turn())["batch_size"] == 1
    clock.advance(61.0)
    await healthy_turn()  # still working
    assert (await call(client, "/assignwork", engineid="broken", batchsize=2))["batch_size"] > 0


async def test_restart_remembers_failures_and_halves(
    make_client: Callable[..., Awaitable[Client]],
    aiohttp_client: AiohttpClient,
    run_dirs: RunDirs,
    clock: ManualClock,
) -> None:
    """After a restart, files of a failed batch come back first, in halves, and solo
    failures still count towards quarantine."""
    make_files(run_dirs, 6)
    client = await make_client(max_attempts=2, bench_after=0)
    job = await call(client, "/assignwork", engineid="e", batchsize=4)
    await call(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    await client.close()
    again = await aiohttp_client(
        create_app(
            run_dirs.config(max_attempts=2, bench_after=0), clock=clock, watch=False, sweep=False
        )
    )
    state = again.server.app[REACTOR].state
    assert list(state.ready_names())[:4] == job["batch"]
    first = await call(again, "/assignwork", engineid="e", batchsize=8)
    assert first["batch"] == job["batch"][:2]


async def test_requeue_releases_a_quarantine_with_fresh_attempts(
    make_client: Callable[..., Awaitable[Client]],
    aiohttp_client: AiohttpClient,
    run_dirs: RunDirs,
    clock: ManualClock,
) -> None:
    """POST /requeue puts a quarantined file back at the front with fresh attempts, also
    after a restart; unknown folders are 404, and a request must name what to release."""
    write_pod5(run_dirs.input_dir / "x.pod5", n_reads=1, seed=1)
    write_pod5(run_dirs.input_dir / "y.pod5", n_reads=1, seed=2)
    client = await make_client(max_attempts=1, bench_after=0)
    job = await call(client, "/assignwork", engineid="e", batchsize=1)
    await call(client, "/completed", job_id=job["jobid"], job_state="FAILED")
    (quarantine,) = run_dirs.input_dir.glob("FAILED_*")
    nothing = await client.post("/requeue")
    assert (nothing.status, await nothing.json()) == (200, {"released": {}})
    assert (await client.post("/requeue", params={"all": "maybe"})).status == 400
    missing = await client.post("/requeue", params={"folder": "FAILED_1_nobody"})
    assert missing.status == 404
    response = await client.post("/requeue", params={"folder": quarantine.name})
    assert response.status == 200
    assert await response.json() == {"released": {quarantine.name: job["batch"]}}
    assert not quarantine.exists()
    record = quarantine.name.removeprefix("FAILED_") + ".json"
    assert (run_dirs.output_dir / ".reactor" / "requeued" / record).is_file()
    await client.close()
    again = await aiohttp_client(
        create_app(
            run_dirs.config(max_attempts=1, bench_after=0), clock=clock, watch=False, sweep=False
        )
    )
    state = again.server.app[REACTOR].state
    record = state.files[job["batch"][0]]
    assert (record.state.value, record.solo_failures) == ("ready", 0)
    assert next(iter(state.ready_names())) == job["batch"][0]
