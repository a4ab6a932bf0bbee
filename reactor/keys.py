"""Typed keys for everything stored on the aiohttp application (one place, one owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

    from reactor.app import HeldEvents
    from reactor.config import Config
    from reactor.finisher import Finisher
    from reactor.sdnotify import Heartbeat
    from reactor.service import Reactor
    from reactor.sweeper import Sweeper

CONFIG: web.AppKey[Config] = web.AppKey("config")
REACTOR: web.AppKey[Reactor] = web.AppKey("reactor")
SWEEPER: web.AppKey[Sweeper] = web.AppKey("sweeper")
FINISHER: web.AppKey[Finisher] = web.AppKey("finisher")
HEARTBEAT: web.AppKey[Heartbeat] = web.AppKey("heartbeat")
# True when READY=1 waits for the caller to say the port is open (see create_app).
READY_WHEN_LISTENING: web.AppKey[bool] = web.AppKey("ready_when_listening", bool)
# The observer's events, held until recovery is done (see reactor.app).
HELD_EVENTS: web.AppKey[HeldEvents] = web.AppKey("held_events")
# Checks the observer and restarts it if it died (on the watch worker thread).
WATCH_HEALTH: web.AppKey[Callable[[], None]] = web.AppKey("watch_health")
