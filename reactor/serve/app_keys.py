"""Typed keys for everything stored on the aiohttp application (one place, one owner)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from reactor.serve.finisher import Finisher
from reactor.serve.held_events import HeldEvents
from reactor.serve.sdnotify import SystemdLifecycle
from reactor.serve.served import Served
from reactor.serve.service import Reactor
from reactor.serve.stream import Broadcast
from reactor.serve.sweeper import Sweeper
from reactor.settings.serve import ServeConfig

if TYPE_CHECKING:  # imported where they are made, only when used: host mode, a [fleet]
    from reactor.cluster.fleet import Fleet
    from reactor.serve.host import Host

CONFIG: web.AppKey[ServeConfig] = web.AppKey("config")
REACTOR: web.AppKey[Reactor] = web.AppKey("reactor")
# What the API serves: the one run's Reactor, or the Host of every run (host mode).
SERVED: web.AppKey[Served] = web.AppKey("served")
HOST: web.AppKey[Host] = web.AppKey("host")
SWEEPER: web.AppKey[Sweeper] = web.AppKey("sweeper")
FINISHER: web.AppKey[Finisher] = web.AppKey("finisher")
SYSTEMD: web.AppKey[SystemdLifecycle] = web.AppKey("systemd")
# True when READY=1 waits for the caller to say the port is open (see create_app).
READY_WHEN_LISTENING: web.AppKey[bool] = web.AppKey("ready_when_listening", bool)
# Where the listening socket came from, for the `serving` log (see create_app).
LISTENING: web.AppKey[dict[str, object]] = web.AppKey("listening")
# The observer's events, held until recovery is done (see reactor.serve.app).
HELD_EVENTS: web.AppKey[HeldEvents] = web.AppKey("held_events")
# Checks the observer and restarts it if it died (on the watch worker thread).
WATCH_HEALTH: web.AppKey[Callable[[], None]] = web.AppKey("watch_health")
# Engine jobs on Slurm, with a [fleet] table (see reactor.cluster.fleet).
FLEET: web.AppKey[Fleet] = web.AppKey("fleet")
# The live status the dashboard reads (`GET /status/stream`): one producer per topic.
STREAM: web.AppKey[Broadcast] = web.AppKey("stream")
