"""Live status for the dashboard: a frame built once per tick, the same bytes to every viewer.

Browsers cannot set headers on `EventSource` or a WebSocket, and the data needs the
bearer token, so the page reads `GET /status/stream` with `fetch()` and a readable
stream; each line of the answer is one frame, the JSON `/status` would answer at that
moment (newline-delimited JSON). docs/dashboard.md says why it is built this way.

The cost follows the ticks, not the viewers. Frames are grouped by topic (the service as
a whole, or one run of a host): while a topic has viewers, one producer task builds its
frame once per tick and offers the same bytes to each viewer. A viewer keeps only the
latest frame it has not sent yet: one that reads slowly skips frames, and no queue grows
behind it. A viewer that disconnected is found at its next write and dropped; a topic
left without viewers stops its producer, so nobody watching costs nothing.

Everything here runs on the event loop; nothing is locked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("reactor.stream")

STREAM_INTERVAL_S = 1.0  # a frame per second per topic: "a few per second at most"
MAX_VIEWERS = 64  # connections streaming at once, every topic together


class TooManyViewers(Exception):
    """Every viewer place is taken (MAX_VIEWERS)."""


class TopicEnded(Exception):
    """The topic is gone (a run retired while viewers watched it): `frame` is its last
    word, sent to every viewer before their streams end."""

    def __init__(self, frame: bytes) -> None:
        super().__init__("topic ended")
        self.frame = frame


class Viewer:
    """One connection's mailbox: the latest frame not sent yet, never anything older."""

    __slots__ = ("_frame", "_fresh", "closed", "offered", "skipped")

    def __init__(self) -> None:
        self._frame: bytes | None = None
        self._fresh = asyncio.Event()
        self.closed = False
        self.offered = 0  # frames offered to it
        self.skipped = 0  # frames replaced before it took them (it read too slowly)

    def offer(self, frame: bytes) -> None:
        if self._frame is not None:
            self.skipped += 1
        self._frame = frame
        self.offered += 1
        self._fresh.set()

    def close(self) -> None:
        self.closed = True
        self._fresh.set()

    async def next(self) -> bytes | None:
        """The latest frame, waiting for one if it has none; a frame offered before the
        viewer was closed is still given (a topic's last word); None once closed and empty."""
        while self._frame is None:
            if self.closed:
                return None
            self._fresh.clear()
            await self._fresh.wait()
        frame, self._frame = self._frame, None
        return frame


Build = Callable[[str | None], bytes]
Tick = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Topic:
    key: str | None
    viewers: set[Viewer] = field(default_factory=set)
    latest: bytes | None = None
    task: asyncio.Task[None] | None = None


class Broadcast:
    """The producers and their viewers. `build(topic)` makes a frame (the topic is None
    for the whole service, or a run's name); `tick()` waits until the next frame is due
    (a sleep of `interval_s` unless a test drives the ticks)."""

    def __init__(
        self,
        build: Build,
        *,
        interval_s: float = STREAM_INTERVAL_S,
        max_viewers: int = MAX_VIEWERS,
        tick: Tick | None = None,
    ) -> None:
        self._build = build
        self._tick = tick or (lambda: asyncio.sleep(interval_s))
        self.max_viewers = max_viewers
        self._topics: dict[str | None, _Topic] = {}
        self.builds = 0  # frames built since start, every topic together
        self._closed = False

    @property
    def viewers(self) -> int:
        return sum(len(topic.viewers) for topic in self._topics.values())

    @property
    def producers(self) -> int:
        return sum(1 for t in self._topics.values() if t.task is not None and not t.task.done())

    def subscribe(self, key: str | None) -> Viewer:
        """A new viewer of `key`, given the topic's latest frame at once if there is one."""
        if self._closed or self.viewers >= self.max_viewers:
            msg = f"{self.max_viewers} viewers are streaming already"
            raise TooManyViewers(msg)
        viewer = Viewer()
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic(key)
        topic.viewers.add(viewer)
        if topic.latest is not None:
            viewer.offer(topic.latest)
        if topic.task is None:
            topic.task = asyncio.get_running_loop().create_task(
                self._produce(topic), name=f"reactor-stream-{key or 'all'}"
            )
        return viewer

    def unsubscribe(self, key: str | None, viewer: Viewer) -> None:
        """The viewer is gone; the last one of a topic stops its producer."""
        viewer.close()
        topic = self._topics.get(key)
        if topic is None:
            return
        topic.viewers.discard(viewer)
        if not topic.viewers:
            self._drop(topic)

    def _drop(self, topic: _Topic) -> None:
        if self._topics.get(topic.key) is topic:
            del self._topics[topic.key]
        for viewer in topic.viewers:
            viewer.close()
        if topic.task is not None and topic.task is not asyncio.current_task():
            topic.task.cancel()

    async def _produce(self, topic: _Topic) -> None:
        try:
            while topic.viewers:
                try:
                    frame = self._build(topic.key)
                except TopicEnded as ended:
                    for viewer in topic.viewers:
                        viewer.offer(ended.frame)
                    return
                finally:
                    self.builds += 1
                topic.latest = frame
                for viewer in topic.viewers:
                    viewer.offer(frame)
                await self._tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream_failed", topic=topic.key)
        finally:
            self._drop(topic)

    async def close(self) -> None:
        """Shutdown: every stream ends now (a stream never ends on its own, and the
        server waits for requests in flight), and no new one starts."""
        self._closed = True
        topics = list(self._topics.values())
        for topic in topics:
            self._drop(topic)
        tasks = [t.task for t in topics if t.task is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
