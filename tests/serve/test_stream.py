"""The live status stream (`reactor.serve.stream`, `GET /status/stream`): one frame built
per tick whatever the number of viewers, the same bytes to each, a slow viewer skipping
frames instead of queueing them, a viewer gone dropped, nobody watching costing nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from reactor.serve import api
from reactor.serve.app import create_app
from reactor.serve.app_keys import STREAM
from reactor.serve.stream import Broadcast, TooManyViewers, TopicEnded
from tests.support.api import AiohttpClient, Client, add_files
from tests.support.openapi import assert_documented
from tests.support.runs import ManualClock, RunDirs

BOUND_S = 5.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until `condition` holds; fail after BOUND_S."""
    async with asyncio.timeout(BOUND_S):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


class Ticks:
    """Ticks the test gives by hand: the producer waits in `wait` until `give`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[None] = asyncio.Queue()

    async def wait(self) -> None:
        await self.queue.get()

    def give(self, count: int = 1) -> None:
        for _ in range(count):
            self.queue.put_nowait(None)


def counting_build() -> tuple[Callable[[str | None], bytes], list[str | None]]:
    built: list[str | None] = []

    def build(topic: str | None) -> bytes:
        built.append(topic)
        return f'{{"frame":{len(built)}}}\n'.encode()

    return build, built


@pytest.mark.parametrize("viewers", [1, 25])
async def test_one_frame_is_built_per_tick_whatever_the_number_of_viewers(viewers: int) -> None:
    """Five ticks build six frames (one at the start) for one viewer or for 25, and every
    viewer is handed the very same bytes."""
    build, built = counting_build()
    ticks = Ticks()
    broadcast = Broadcast(build, tick=ticks.wait)
    watching = [broadcast.subscribe(None) for _ in range(viewers)]
    for n in range(1, 6):
        await until(lambda n=n: len(built) == n, f"frame {n} built")  # type: ignore[misc]
        frames = [await viewer.next() for viewer in watching]
        assert all(frame is frames[0] for frame in frames)
        ticks.give()
    await until(lambda: len(built) == 6, "the sixth frame")
    assert broadcast.builds == 6
    assert broadcast.producers == 1
    await broadcast.close()


async def test_a_slow_viewer_skips_frames_and_holds_only_the_latest() -> None:
    """A viewer that does not read while ten frames are built holds one frame, the
    latest; the one that reads gets every frame."""
    build, built = counting_build()
    ticks = Ticks()
    broadcast = Broadcast(build, tick=ticks.wait)
    slow = broadcast.subscribe(None)
    quick = broadcast.subscribe(None)
    seen = []
    for n in range(1, 11):
        await until(lambda n=n: len(built) == n, f"frame {n}")  # type: ignore[misc]
        seen.append(await quick.next())
        ticks.give()
    await until(lambda: len(built) == 11, "frame 11")
    seen.append(await quick.next())
    assert seen == [f'{{"frame":{n}}}\n'.encode() for n in range(1, 12)]
    assert await slow.next() == b'{"frame":11}\n'
    assert (slow.offered, slow.skipped) == (11, 10)
    await broadcast.close()


async def test_topics_build_apart_and_a_topic_without_viewers_stops_building() -> None:
    build, built = counting_build()
    ticks = Ticks()
    broadcast = Broadcast(build, tick=ticks.wait)
    everything = broadcast.subscribe(None)
    one_run = broadcast.subscribe("PAW00001_abcdef12")
    await until(lambda: len(built) == 2, "a first frame for each topic")
    assert sorted(built, key=str) == [None, "PAW00001_abcdef12"]
    broadcast.unsubscribe("PAW00001_abcdef12", one_run)
    broadcast.unsubscribe(None, everything)
    await until(lambda: broadcast.producers == 0, "the producers stopped")
    ticks.give(5)
    await asyncio.sleep(0.05)  # would let a leftover producer build: none must
    assert len(built) == 2
    assert broadcast.viewers == 0


async def test_a_late_viewer_gets_the_latest_frame_at_once() -> None:
    build, built = counting_build()
    ticks = Ticks()
    broadcast = Broadcast(build, tick=ticks.wait)
    broadcast.subscribe(None)
    await until(lambda: len(built) == 1, "the first frame")
    late = broadcast.subscribe(None)
    assert await asyncio.wait_for(late.next(), BOUND_S) == b'{"frame":1}\n'
    assert len(built) == 1
    await broadcast.close()


async def test_a_topic_that_ends_says_so_and_closes_its_viewers() -> None:
    def build(topic: str | None) -> bytes:
        last = b'{"error":"unknown_run"}\n'
        raise TopicEnded(last)

    broadcast = Broadcast(build)
    viewer = broadcast.subscribe("gone")
    assert await asyncio.wait_for(viewer.next(), BOUND_S) == b'{"error":"unknown_run"}\n'
    assert await asyncio.wait_for(viewer.next(), BOUND_S) is None
    await until(lambda: broadcast.producers == 0 and broadcast.viewers == 0, "topic dropped")


async def test_viewers_are_bounded() -> None:
    build, _ = counting_build()
    broadcast = Broadcast(build, max_viewers=2)
    broadcast.subscribe(None)
    broadcast.subscribe("run")
    with pytest.raises(TooManyViewers):
        broadcast.subscribe(None)
    await broadcast.close()
    with pytest.raises(TooManyViewers):
        broadcast.subscribe(None)  # closed: no new stream once shutdown began


# ------------------------------------------------------------------- over HTTP


Make = Callable[..., Awaitable[tuple[Client, Ticks]]]


@pytest.fixture
def stream_client(aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock) -> Make:
    """The app with its stream's ticks given by the test."""

    async def make(**settings: object) -> tuple[Client, Ticks]:
        add_files(run_dirs, 2)
        app = create_app(run_dirs.config(**settings), clock=clock, watch=False, sweep=False)
        ticks = Ticks()
        app[STREAM] = api.new_broadcast(app, tick=ticks.wait)
        return await aiohttp_client(app), ticks

    return make


async def test_the_stream_sends_status_frames_as_json_lines(stream_client: Make) -> None:
    client, ticks = await stream_client()
    response = await client.get("/status/stream")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    first = json.loads(await asyncio.wait_for(response.content.readline(), BOUND_S))
    assert_documented("/status", 200, first)
    assert first["files"]["ready"] == 2
    await client.get("/assignwork", params={"engineid": "gpu-1", "batchsize": "1"})
    ticks.give()
    second = json.loads(await asyncio.wait_for(response.content.readline(), BOUND_S))
    assert second["files"]["assigned"] == 1
    response.close()


async def test_a_viewer_that_disconnects_is_dropped(stream_client: Make) -> None:
    """The connection closed: at the next frame its viewer is gone and, being the last,
    its producer stops."""
    client, ticks = await stream_client()
    broadcast = client.server.app[STREAM]
    response = await client.get("/status/stream")
    await asyncio.wait_for(response.content.readline(), BOUND_S)
    assert broadcast.viewers == 1
    response.close()
    ticks.give(3)
    await until(lambda: broadcast.viewers == 0, "the viewer dropped")
    await until(lambda: broadcast.producers == 0, "the producer stopped")


async def test_the_stream_needs_the_token_and_the_page_does_not(stream_client: Make) -> None:
    client, _ = await stream_client(token="s3cret-dashboard-token")
    refused = await client.get("/status/stream")
    assert refused.status == 401
    assert_documented("/status/stream", 401, await refused.json())
    wrong = await client.get("/status/stream", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    good = await client.get(
        "/status/stream", headers={"Authorization": "Bearer s3cret-dashboard-token"}
    )
    assert good.status == 200
    assert json.loads(await asyncio.wait_for(good.content.readline(), BOUND_S))["ready"]
    good.close()


async def test_a_run_is_asked_for_only_in_host_mode(stream_client: Make) -> None:
    client, _ = await stream_client()
    for path in ("/status", "/status/stream"):
        response = await client.get(path, params={"run": "PAW00001_abcdef12"})
        assert response.status == 404
        body = await response.json()
        assert body["error"] == "not_host_mode"
        assert_documented(path, 404, body)


async def test_shutdown_ends_every_stream(stream_client: Make) -> None:
    """A stream never ends on its own: the service ends it as shutdown begins, so it does
    not hold the shutdown for its requests in flight."""
    client, _ = await stream_client()
    response = await client.get("/status/stream")
    await asyncio.wait_for(response.content.readline(), BOUND_S)
    await client.server.app[STREAM].close()
    assert await asyncio.wait_for(response.content.read(), BOUND_S) == b""


async def test_stream_has_no_head(stream_client: Make) -> None:
    client, _ = await stream_client()
    response = await client.head("/status/stream")
    assert response.status == 405
    assert isinstance(client.server.app, web.Application)
