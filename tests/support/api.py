"""The HTTP API through the real app (`aiohttp_client`): files to hand out, engine outputs,
and a JSON GET that checks the status. The `make_client` fixture is in conftest.py."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.pod5files import write_pod5
from tests.support.runs import RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
MakeClient = Callable[..., Awaitable[Client]]
LEASE_S = 30.0  # the lease of `make_client`'s apps, unless a test sets another


def add_files(run_dirs: RunDirs, count: int, start: int = 0) -> list[str]:
    """`count` one-read `.pod5` files in INPUTDIR, oldest first in name order."""
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(start, start + count)]
    for i, name in enumerate(names, start):
        write_pod5(run_dirs.input_dir / name, n_reads=1, seed=i)
        # distinct mtimes, so the queue order (oldest first) is the name order
        os.utime(run_dirs.input_dir / name, (1_000_000 + i, 1_000_000 + i))
    return names


async def get_json(client: Client, path: str, status: int = 200, **params: Any) -> Any:
    """GET `path` with `params`; the JSON body, after checking the status is `status`."""
    response = await client.get(path, params=params)
    body = await response.json()
    assert response.status == status, body
    return body


def write_outputs(run_dirs: RunDirs, job: dict[str, Any]) -> None:
    """What an engine leaves in its job's output folder: a FASTQ per file, a log."""
    out = run_dirs.output_dir / job["job_output_dir"]
    for name in job["batch"]:
        (out / "pass" / f"{name.removesuffix('.pod5')}.fastq").write_text("@r\nA\n+\n!\n")
    (out / "fail" / "rejects.fastq").write_text("")
    (out / "engine.log").write_text("log")
