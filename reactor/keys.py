"""Typed keys for everything stored on the aiohttp application (one place, one owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from reactor.config import Config
    from reactor.finisher import Finisher
    from reactor.service import Reactor
    from reactor.sweeper import Sweeper

CONFIG: web.AppKey[Config] = web.AppKey("config")
REACTOR: web.AppKey[Reactor] = web.AppKey("reactor")
SWEEPER: web.AppKey[Sweeper] = web.AppKey("sweeper")
FINISHER: web.AppKey[Finisher] = web.AppKey("finisher")
