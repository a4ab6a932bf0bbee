"""End of run through the real app: a run served by `aiohttp_client` whose sweeper is
driven by hand, the `on_complete` commands the tests give it, and bounded waits for what
the command leaves on disk. The `start_run` fixture is in conftest.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from reactor.disk.marker import MarkerState, marker_path, read_marker
from reactor.serve.app_keys import REACTOR, SWEEPER
from reactor.settings.serve import add_config_arguments
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
SUMMARY = "final_summary_PAK00000_abcdef12_0123abcd.txt"

# Appends the REACTOR_RUN_* part of its environment, as one JSON line, to argv[1].
RECORD_ENV = (
    "import json, os, sys\n"
    "run = {k: v for k, v in os.environ.items() if k.startswith('REACTOR_RUN_')}\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps(run) + '\\n')\n"
    "print('aligned', run['REACTOR_RUN_FILES_DONE'], 'files')\n"
)


def cli(*argv: str) -> argparse.Namespace:
    """`reactor serve`'s settings flags parsed from `argv`, as `load_config` takes them."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


def python_command(code: str, *args: object) -> str:
    return shlex.join([sys.executable, "-c", code, *map(str, args)])


def runs_of(env_file: Path) -> list[dict[str, str]]:
    if not env_file.exists():
        return []
    return [json.loads(line) for line in env_file.read_text().splitlines()]


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Poll `condition` every 20 ms on the loop; fail after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def marker_state(run_dirs: RunDirs) -> MarkerState | None:
    marker = read_marker(marker_path(run_dirs.output_dir))
    return marker.state if marker else None


def command_ended(run_dirs: RunDirs) -> Callable[[], bool]:
    return lambda: marker_state(run_dirs) not in (None, MarkerState.CLAIMED)


class Run:
    """A run folder served by the app, with helpers to finish its files."""

    def __init__(self, client: Client, run_dirs: RunDirs, clock: ManualClock) -> None:
        self.client = client
        self.run_dirs = run_dirs
        self.clock = clock
        self.app = client.app
        assert self.app is not None

    async def sweep(self) -> None:
        await self.app[SWEEPER].sweep_once(self.clock())

    @property
    def phase(self) -> str:
        return self.app[REACTOR].phase

    async def status_phase(self) -> str:
        response = await self.client.get("/status")
        body = await response.json()
        phase: str = body["phase"]
        return phase

    async def finish_all(self) -> None:
        """An engine takes every ready file and reports DONE."""
        while True:
            response = await self.client.get("/assignwork", params={"engineid": "gpu-0"})
            job = await response.json()
            if job["jobid"] == "-1":
                return
            params = {"job_id": job["jobid"], "job_state": "DONE"}
            assert (await self.client.get("/completed", params=params)).status == 200


def no_exit() -> None:
    """Never SIGTERM the test process: a test that expects an exit passes its own."""
    pytest.fail("the app asked to exit, but exit_on_complete was not set by this test")


StartRun = Callable[..., Awaitable[Run]]
