"""Engines that wait for work: `/assignwork?...&wait_s=N` (long-poll).

A request with nothing to hand out is held until a file becomes ready or `wait_s`
passes; the waiting are served last come first, a client that hung up is given nothing,
and shutdown answers them all. Files are made ready here through the service's own
reconcile (the app runs without a watcher), so nothing is timed by sleeping.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from reactor.serve.app_keys import REACTOR, SERVED
from tests.support.api import Client, MakeClient, add_files, get_json
from tests.support.runs import RunDirs

EMPTY = "-1"


async def until(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    """Bounded: poll `condition` on the loop every 10 ms."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def waiting(client: Client) -> int:
    return len(client.app[SERVED].waiters)


async def ask(client: Client, engine: str, wait_s: float) -> dict[str, Any]:
    answer: dict[str, Any] = await get_json(
        client, "/assignwork", engineid=engine, batchsize=1, wait_s=wait_s
    )
    return answer


async def test_a_waiting_engine_gets_the_file_that_becomes_ready(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    client = await make_client()
    asked = asyncio.create_task(ask(client, "gpu", 30))
    await until(lambda: waiting(client) == 1, "the request to wait")
    (name,) = add_files(run_dirs, 1)
    client.app[REACTOR].reconcile("test")  # the file is seen: ready
    answer = await asyncio.wait_for(asked, 10)
    assert answer["batch"] == [name]
    assert waiting(client) == 0


async def test_with_nothing_coming_the_wait_ends_empty_and_without_wait_s_at_once(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await ask(client, "gpu", 0.2))["jobid"] == EMPTY
    assert waiting(client) == 0
    answer = await get_json(client, "/assignwork", engineid="seed", batchsize=1)
    assert answer["jobid"] == EMPTY  # a seed engine is answered at once, as before


async def test_the_waiting_are_served_last_come_first(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    """The engine that began waiting last takes the file; the one waiting longest waits
    on (so surplus engines stay idle long enough to exit), and gets the next file."""
    client = await make_client()
    first = asyncio.create_task(ask(client, "gpu-a", 30))
    await until(lambda: waiting(client) == 1, "the first to wait")
    second = asyncio.create_task(ask(client, "gpu-b", 30))
    await until(lambda: waiting(client) == 2, "the second to wait")
    (one,) = add_files(run_dirs, 1)
    client.app[REACTOR].reconcile("test")
    assert (await asyncio.wait_for(second, 10))["batch"] == [one]
    await until(lambda: waiting(client) == 1, "the first to wait again")
    assert not first.done()
    (two,) = add_files(run_dirs, 1, start=1)
    client.app[REACTOR].reconcile("test")
    assert (await asyncio.wait_for(first, 10))["batch"] == [two]


async def test_shutdown_answers_the_waiting_with_no_work(make_client: MakeClient) -> None:
    client = await make_client()
    asked = asyncio.create_task(ask(client, "gpu", 60))
    await until(lambda: waiting(client) == 1, "the request to wait")
    client.app[SERVED].waiters.close()  # what the app's on_shutdown does
    assert (await asyncio.wait_for(asked, 10))["jobid"] == EMPTY
    assert (await ask(client, "gpu", 60))["jobid"] == EMPTY, "none waits once closed"


async def test_an_engine_that_hung_up_while_waiting_is_given_nothing(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    client = await make_client()
    asked = asyncio.create_task(ask(client, "gone", 30))
    await until(lambda: waiting(client) == 1, "the request to wait")
    asked.cancel()  # the client hangs up
    await asyncio.gather(asked, return_exceptions=True)
    add_files(run_dirs, 1)
    reactor = client.app[REACTOR]
    reactor.reconcile("test")
    await until(lambda: waiting(client) == 0, "the held handler to finish")
    assert list(reactor.state.live_jobs()) == []
    assert reactor.count_fields()["ready"] == 1, "the file waits for an engine still there"


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


async def test_a_waiting_engine_is_woken_when_a_low_disk_has_room_again(
    make_client: MakeClient, run_dirs: RunDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file ready while work was paused (output disk below min_free_percent) goes to
    the engine waiting as soon as there is room again, not when its wait runs out."""
    free_percent = [40]

    def disk_usage(path: str | Path) -> _Usage:
        return _Usage(100, 100 - free_percent[0], free_percent[0])

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    client = await make_client(min_free_percent=50)
    reactor = client.app[REACTOR]
    await reactor.check_space()
    assert reactor.paused is not None
    (name,) = add_files(run_dirs, 1)
    reactor.reconcile("test")
    assert reactor.count_fields()["ready"] == 1
    asked = asyncio.create_task(ask(client, "gpu", 60))
    await until(lambda: waiting(client) == 1, "the request to wait while paused")
    free_percent[0] = 60
    await reactor.check_space()
    assert reactor.paused is None
    await until(asked.done, "the waiting engine to be answered once work resumed")
    assert (await asked)["batch"] == [name]


@pytest.mark.parametrize("wait_s", ["-1", "61", "soon", "nan"])
async def test_a_wait_out_of_bounds_is_a_400(make_client: MakeClient, wait_s: str) -> None:
    client = await make_client()
    answer = await get_json(
        client, "/assignwork", status=400, engineid="gpu", batchsize=1, wait_s=wait_s
    )
    assert "wait_s" in answer["detail"]


async def test_the_time_held_is_not_counted_as_request_latency(make_client: MakeClient) -> None:
    """reactor_request_seconds measures the service's own time: a request held a second
    waiting for work records its own milliseconds, not the second (else every idle
    engine would put 60 s into /assignwork's top bucket)."""
    client = await make_client()
    metric = client.app[SERVED].metrics.request_seconds.labels(route="/assignwork")
    before = metric._sum.get()
    loop = asyncio.get_running_loop()
    began = loop.time()
    answer = await ask(client, "gpu", 1.0)
    held = loop.time() - began
    assert answer["jobid"] == EMPTY and held >= 1.0
    recorded = metric._sum.get() - before
    assert 0 < recorded < held / 2
