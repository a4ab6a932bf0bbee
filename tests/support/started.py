"""Reactors a test started by hand (not through an app): each has a writer thread that
must end with the test. A test module appends them to `STARTED` and uses the fixture
`stop_started_reactors` (tests/conftest.py), which stops every one after the test."""

from __future__ import annotations

from reactor.serve.service import Reactor

STARTED: list[Reactor] = []


async def stop_all() -> None:
    while STARTED:
        await STARTED.pop().stop()
