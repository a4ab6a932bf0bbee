"""Requests served while a journal step is on the disk.

The writer's thread carries the steps out while the loop serves everything else, so an
operation claims what it plans on. Each test stalls the writer inside a real step (a
journal checkpoint that waits on an event, on the writer's thread) and sends what could
collide with it: the loop must answer what needs no disk, and nothing may be handed
out, merged or expired twice.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientTimeout

from reactor.disk import fsops
from reactor.disk.journal import Journal
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from tests.support.api import LEASE_S, AiohttpClient, Client, add_files, get_json, write_outputs
from tests.support.runs import ManualClock, RunDirs

WAIT_S = 10.0


async def in_flight(client: Client, count: int) -> None:
    """Wait (bounded) until `count` operations are under way in the service."""
    reactor = client.server.app[REACTOR]

    async def reached() -> None:
        while reactor.operations_in_flight != count:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(reached(), WAIT_S)


class Gate:
    """A journal checkpoint that holds the writer's thread at one step until opened."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.reached = threading.Event()
        self.opened = threading.Event()

    def hold_at(self, step: str) -> None:
        self.step = step
        self.reached.clear()
        self.opened.clear()

    def __call__(self, step: str) -> None:
        if step == self.step:
            self.step = None
            self.reached.set()
            self.opened.wait(WAIT_S)

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, WAIT_S), "the step was not reached"

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()  # never leave the writer's thread waiting


async def start(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> Client:
    config = run_dirs.config(report_back_interval=LEASE_S)
    journal = Journal(config.input_dir, config.output_dir, gate)
    app = create_app(config, clock=clock, journal=journal, watch=False, sweep=False)
    return await aiohttp_client(app)


async def test_the_loop_answers_while_a_step_is_held_on_the_disk(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    """An assignment held on the disk: /status, /heartbeat and a keepalive of another
    job are answered meanwhile; the assignment answers once the step is done."""
    add_files(run_dirs, 4)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    live = await get_json(client, "/assignwork", engineid="e1", batchsize=2)
    gate.hold_at("assign:output_placed")
    held = asyncio.ensure_future(get_json(client, "/assignwork", engineid="e2", batchsize=2))
    await gate.wait_reached()
    status = await get_json(client, "/status")
    assert status["files"]["assigned"] == 2  # the held assignment is not in memory yet
    assert await get_json(client, "/keepalive", job_id=live["jobid"], job_state="X") == {
        "late": False
    }
    await get_json(client, "/heartbeat")
    assert not held.done()
    gate.open()
    second = await asyncio.wait_for(held, WAIT_S)
    assert set(second["batch"]).isdisjoint(live["batch"])
    assert (await get_json(client, "/status"))["files"]["assigned"] == 4


async def test_two_assignments_in_flight_never_share_a_file(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    names = add_files(run_dirs, 6)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    gate.hold_at("assign:recorded")
    first = asyncio.ensure_future(get_json(client, "/assignwork", engineid="e1", batchsize=3))
    await gate.wait_reached()
    second = asyncio.ensure_future(get_json(client, "/assignwork", engineid="e2", batchsize=3))
    await in_flight(client, 2)  # planned while the first is held, its files reserved
    third = asyncio.ensure_future(get_json(client, "/assignwork", engineid="e3", batchsize=3))
    assert (await asyncio.wait_for(third, WAIT_S))["batch"] == []  # nothing left to plan
    gate.open()
    jobs = await asyncio.wait_for(asyncio.gather(first, second, third), WAIT_S)
    batches = [job["batch"] for job in jobs]
    handed_out = [name for batch in batches for name in batch]
    assert sorted(handed_out) == sorted(names)  # each file once, all of them
    assert sorted(len(batch) for batch in batches) == [0, 3, 3]
    folders = [p.name for p in run_dirs.input_dir.glob("ASSIGNED_*")]
    assert sorted(folders) == sorted(
        f"ASSIGNED_{job['jobid']}_{job['bc_engine_id']}" for job in jobs if job["batch"]
    )


async def test_a_repeated_done_waits_for_the_first_and_merges_nothing_twice(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    add_files(run_dirs, 2)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    job = await get_json(client, "/assignwork", engineid="e1", batchsize=2)
    write_outputs(run_dirs, job)
    gate.hold_at("merge:output_moved")
    first = asyncio.ensure_future(
        get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    )
    await gate.wait_reached()
    again = asyncio.ensure_future(
        get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    )
    await in_flight(client, 2)
    assert not again.done()  # its turn comes after the first report's step
    gate.open()
    assert await asyncio.wait_for(first, WAIT_S) == {"ok": True}
    assert await asyncio.wait_for(again, WAIT_S) == {"ok": True}
    merged = sorted(p.name for p in (run_dirs.output_dir / "pass").iterdir())
    assert merged == sorted(
        f"job_id_{job['jobid']}_{name.removesuffix('.pod5')}.fastq" for name in job["batch"]
    )
    assert (await get_json(client, "/status"))["files"]["done"] == 2


async def test_the_sweeper_leaves_a_job_whose_report_is_on_the_disk(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    """A DONE in flight when the lease runs out: the sweep does not expire the job, the
    DONE merges, and the files are done once."""
    add_files(run_dirs, 2)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    job = await get_json(client, "/assignwork", engineid="e1", batchsize=2)
    write_outputs(run_dirs, job)
    gate.hold_at("merge:output_moved")
    done = asyncio.ensure_future(
        get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    )
    await gate.wait_reached()
    app = client.server.app
    assert await app[SWEEPER].sweep_once(clock.advance(LEASE_S + 1)) == []
    gate.open()
    assert await asyncio.wait_for(done, WAIT_S) == {"ok": True}
    assert await app[SWEEPER].sweep_once(clock.advance(1)) == []
    status = await get_json(client, "/status")
    assert status["files"]["done"] == 2
    assert status["files"]["ready"] == 0


async def test_a_late_done_on_the_disk_keeps_its_files_from_other_engines(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    """An expired job's late DONE is merging its files (ready again in memory) when
    another engine asks for work: it gets none of them."""
    add_files(run_dirs, 3)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    job = await get_json(client, "/assignwork", engineid="e1", batchsize=2)
    write_outputs(run_dirs, job)
    app = client.server.app
    assert len(await app[SWEEPER].sweep_once(clock.advance(LEASE_S + 1))) == 1
    gate.hold_at("merge:output_moved")
    late = asyncio.ensure_future(
        get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    )
    await gate.wait_reached()
    asked = asyncio.ensure_future(get_json(client, "/assignwork", engineid="e2", batchsize=10))
    await in_flight(client, 2)  # planned while the late DONE is held; queued behind it
    gate.open()
    assert await asyncio.wait_for(late, WAIT_S) == {"ok": True}
    other = await asyncio.wait_for(asked, WAIT_S)
    assert set(other["batch"]).isdisjoint(job["batch"])
    assert len(other["batch"]) == 1
    status = await get_json(client, "/status")
    assert (status["files"]["done"], status["files"]["assigned"]) == (2, 1)


async def test_a_client_that_hangs_up_mid_step_still_gets_its_job_recorded(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, gate: Gate
) -> None:
    """The operation runs to its end without the request: memory follows the disk, so
    the files are assigned (and expire later) rather than lost or handed out twice."""
    add_files(run_dirs, 2)
    client = await start(aiohttp_client, run_dirs, clock, gate)
    gate.hold_at("assign:output_placed")
    with pytest.raises(asyncio.TimeoutError):
        await client.get(
            "/assignwork",
            params={"engineid": "gone", "batchsize": "2"},
            timeout=ClientTimeout(total=0.2),
        )
    await gate.wait_reached()
    gate.open()
    reactor = client.server.app[REACTOR]

    async def assigned() -> dict[str, Any]:
        while (status := await get_json(client, "/status"))["files"]["assigned"] != 2:
            await asyncio.sleep(0.01)
        return status

    await asyncio.wait_for(assigned(), WAIT_S)
    (job,) = reactor.state.live_jobs()
    assert job.engine_id == "gone"
    assert (run_dirs.input_dir / f"ASSIGNED_{job.job_id}_gone").is_dir()


async def test_a_failed_fsync_answers_503_and_stops_the_service(
    aiohttp_client: AiohttpClient,
    run_dirs: RunDirs,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An fsync that fails (EIO from the disk) is not retried: the request that waited
    for it, and every one after it that needs the disk, gets 503 storage_failed; the
    service stops being ready and asks to stop; answers that need no disk go on."""
    add_files(run_dirs, 2)
    exits: list[bool] = []
    config = run_dirs.config(report_back_interval=LEASE_S)
    app = create_app(
        config, clock=clock, watch=False, sweep=False, request_exit=lambda: exits.append(True)
    )
    client = await aiohttp_client(app)
    real_fsync = fsops.fsync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fsops, "fsync", failing)
    failed = await get_json(client, "/assignwork", status=503, engineid="e1", batchsize=1)
    assert failed["error"] == "storage_failed"
    assert "check the disk and restart reactor" in failed["detail"]
    monkeypatch.setattr(fsops, "fsync", real_fsync)  # the disk "works" again: too late
    again = await get_json(client, "/assignwork", status=503, engineid="e1", batchsize=1)
    assert again["error"] == "storage_failed"

    async def stopping() -> None:
        while not exits:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(stopping(), WAIT_S)
    assert (await client.get("/readyz")).status == 503
    assert (await get_json(client, "/status"))["files"]["assigned"] == 0
