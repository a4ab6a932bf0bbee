"""Trial 8: what open dashboards cost the service (docs/dashboard.md, "Cost").

One host-mode `reactor serve` on `host.build`'s MinKNOW-like root (`live` runs of
`files` `.pod5` each, `finished` finished runs), no engine: what is measured is the
service's cost of its viewers. The server process's CPU (utime + stime of
/proc/PID/stat, as the host trial reads it) over `window_s` seconds, in turn:

- **nobody watching**: the baseline, measured first and again last (their mean is the
  baseline; both are in the raw figures);
- **the host view**: `viewers` clients (aiohttp, in this process) each holding
  `GET /status/stream` open and reading every frame;
- **the run view**: `viewers` clients each on `GET /status/stream?run=R`, a different run
  each (cycling when there are fewer runs than viewers), as the page's run view reads it;
- **polling**: `viewers` clients each asking `GET /status` once a second, what the same
  screens would cost if each built its own `/status` (no fan-out): context, no target.

Each client counts its frames, their arrival times and their bytes: frames per viewer
per second, and bytes per frame (the host view's is the host's `/status`). The target,
"< 5 % of a core", is held by the difference from the baseline: that is what viewers
cost, while the baseline is what the 48 runs cost anyway (watchers, sweeps, discovery)
and moves with the root, not with the viewers.

Then `/status` with many live jobs: the busiest run prioritised, batches of one file
handed out (`/assignwork`, one engine id per job, leases of an hour) until the run has
`LIVE_LISTED` live jobs, then `jobs`; the host's `/status` and the run's
`/status?run=` are measured at both, to show their size stops growing at the lists' cap.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from reactor.core.status import LIVE_LISTED
from tests.bench import host
from tests.bench.figures import Figure
from tests.bench.host import cpu_seconds
from tests.bench.servers import Served

READY_TIMEOUT_S = 600.0
TARGET_CPU = 5.0  # % of one core, over the baseline, for `viewers` viewers
TARGET_FRAMES_PER_S = 0.9  # each viewer, of the one frame a second the stream sends
TARGET_GROWTH = 1.05  # /status at `jobs` live jobs over /status at LIVE_LISTED
FIRST_FRAME_S = 10.0  # bound on every viewer's first frame
SETTLE_S = 1.0  # after the viewers' first frames, before the window opens
AFTER_READY_S = 3.0  # the host's first discovery and pins done before any window
REQUEST_TIMEOUT_S = 30.0
PRIORITY = 1000.0  # the busiest run's weight while jobs are handed out
JOBS_S = 120.0  # bound on handing the live jobs out


@dataclass(frozen=True)
class Shape:
    """The trial's size: the root, the viewers, the live jobs, the window."""

    live: int = 48
    files: int = 500
    finished: int = 2000
    viewers: int = 20
    jobs: int = 300
    window_s: float = 30.0


@dataclass
class Client:
    """One viewer: when each of its frames arrived, and their bytes."""

    arrivals: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    first: dict[str, Any] | None = None  # its first frame, decoded

    def within(self, began: float, ended: float) -> list[int]:
        return [i for i, t in enumerate(self.arrivals) if began <= t <= ended]

    def rate(self, began: float, ended: float) -> float:
        """Frames a second within the window: from the gaps between them, so the
        window's edges cut no frame in half."""
        inside = self.within(began, ended)
        if len(inside) < 2:
            return len(inside) / (ended - began)
        first, last = self.arrivals[inside[0]], self.arrivals[inside[-1]]
        return (len(inside) - 1) / (last - first)


def _session() -> aiohttp.ClientSession:
    # sock_read bounds a stream that stops sending: its task fails instead of hanging
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(timeout=timeout)


async def _watch(http: aiohttp.ClientSession, url: str, run: str | None, client: Client) -> None:
    params = {} if run is None else {"run": run}
    async with http.get(f"{url}/status/stream", params=params) as reply:
        if reply.status != 200:
            msg = f"HTTP {reply.status} from /status/stream: {(await reply.read())[:200]!r}"
            raise RuntimeError(msg)
        pending = bytearray()  # the frame being read
        async for chunk in reply.content.iter_any():
            start = 0
            while (end := chunk.find(b"\n", start)) != -1:
                pending += chunk[start : end + 1]
                client.arrivals.append(time.monotonic())
                client.sizes.append(len(pending))
                if client.first is None:
                    client.first = json.loads(pending)
                pending.clear()
                start = end + 1
            pending += chunk[start:]


async def _poll(http: aiohttp.ClientSession, url: str, offset_s: float, client: Client) -> None:
    """`GET /status` once a second, at `offset_s` into each second."""
    began = time.monotonic()
    tick = 0
    while True:
        await asyncio.sleep(max(0.0, began + offset_s + tick - time.monotonic()))
        tick += 1
        async with http.get(f"{url}/status") as reply:
            body = await reply.read()
            if reply.status != 200:
                msg = f"HTTP {reply.status} from /status: {body[:200]!r}"
                raise RuntimeError(msg)
        client.arrivals.append(time.monotonic())
        client.sizes.append(len(body))


async def _until_all_seen(clients: list[Client], tasks: list[asyncio.Task[None]]) -> None:
    deadline = time.monotonic() + FIRST_FRAME_S
    while not all(c.arrivals for c in clients):
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # raises the client's error
            msg = "a viewer's stream ended before its first frame"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"a viewer had no frame within {FIRST_FRAME_S:g} s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.05)


async def _window(pid: int, window_s: float, tasks: list[asyncio.Task[None]]) -> dict[str, Any]:
    """The server's CPU over `window_s`; fails if a client fails or ends meanwhile."""
    before, began = cpu_seconds(pid), time.monotonic()
    if tasks:
        done, _ = await asyncio.wait(tasks, timeout=window_s, return_when=asyncio.FIRST_COMPLETED)
    else:
        await asyncio.sleep(window_s)
        done = set()
    ended = time.monotonic()
    cpu = (cpu_seconds(pid) - before) / (ended - began)
    for task in done:
        task.result()  # a client that failed fails the trial
    if done:
        msg = "a client's stream ended during the window"
        raise RuntimeError(msg)
    return {"cpu": cpu, "began": began, "ended": ended}


async def _measure(
    served: Served, kind: str, targets: list[str | None], window_s: float
) -> dict[str, Any]:
    """`kind` is "idle", "stream" (one client per target: None the host view, else a
    run) or "poll"; the server's CPU over the window and what each client received."""
    assert served.process is not None
    pid = served.process.pid
    clients = [Client() for _ in targets]
    async with _session() as http:
        if kind == "stream":
            pairs = zip(targets, clients, strict=True)
            jobs = [_watch(http, served.url, run, c) for run, c in pairs]
        elif kind == "poll":
            n = len(clients)
            jobs = [_poll(http, served.url, i / n, c) for i, c in enumerate(clients)]
        else:
            jobs = []
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            if kind == "stream":
                await _until_all_seen(clients, tasks)
            if tasks:
                await asyncio.sleep(SETTLE_S)
            window = await _window(pid, window_s, tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    began, ended = window["began"], window["ended"]
    return {
        "cpu": window["cpu"],
        "window_s": ended - began,
        "clients": [
            {
                "target": target,
                "frames": len(c.within(began, ended)),
                "per_s": c.rate(began, ended),
                "bytes": statistics.median(c.sizes) if c.sizes else 0,
                "runs": len(c.first["runs"]) if c.first and "runs" in c.first else None,
                "named": c.first["run"]["run"] if c.first and "run" in c.first else None,
            }
            for target, c in zip(targets, clients, strict=True)
        ],
    }


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> bytes:
    async with http.get(url, params=params) as reply:
        body = await reply.read()
        if reply.status != 200:
            msg = f"HTTP {reply.status} from {url}: {body[:200]!r}"
            raise RuntimeError(msg)
        return body


async def _sizes(http: aiohttp.ClientSession, url: str, run: str) -> dict[str, int]:
    whole = await _get(http, f"{url}/status")
    one = await _get(http, f"{url}/status", run=run)
    return {
        "live_jobs": json.loads(one)["jobs"]["live_total"],
        "host_bytes": len(whole),
        "run_bytes": len(one),
    }


async def _with_jobs(url: str, run: str, steps: list[int], bound: int) -> list[dict[str, int]]:
    """`/status` sizes at 0 live jobs in `run`, then at each of `steps` (batches of one
    file handed out, one engine id each, until `run` has that many live)."""
    async with _session() as http:
        await _post(http, f"{url}/runs/prioritise", run=run, weight=f"{PRIORITY:g}")
        measured = [{**await _sizes(http, url, run), "handed": 0}]
        handed, live = 0, measured[0]["live_jobs"]
        deadline = time.monotonic() + JOBS_S
        for step in steps:
            while live < step:
                if handed >= bound or time.monotonic() > deadline:
                    msg = f"{handed} batches handed out, and {run} has not {step} live jobs"
                    raise RuntimeError(msg)
                engine = f"viewer{handed}"
                answer = json.loads(
                    await _get(http, f"{url}/assignwork", engineid=engine, batchsize="1")
                )
                if answer["jobid"] == "-1":
                    msg = f"no work left to hand out after {handed} batches"
                    raise RuntimeError(msg)
                handed += 1
                one = json.loads(await _get(http, f"{url}/status", run=run))
                live = one["jobs"]["live_total"]
            measured.append({**await _sizes(http, url, run), "handed": handed})
    return measured


async def _post(http: aiohttp.ClientSession, url: str, **params: str) -> None:
    async with http.post(url, params=params) as reply:
        if reply.status != 200:
            msg = f"HTTP {reply.status} from {url}: {(await reply.read())[:200]!r}"
            raise RuntimeError(msg)


def run(data: Path, logs: Path, shape: Shape) -> tuple[list[Figure], dict[str, Any]]:
    root = host.build(data, host.Shape(shape.live, shape.files, shape.finished, 0))
    host.reset(root)
    raw: dict[str, Any] = {"shape": shape.__dict__}
    served = host.host_serve(root, logs / "dashboard.jsonl")
    try:
        served.start(READY_TIMEOUT_S)
        time.sleep(min(AFTER_READY_S, shape.window_s))
        status = json.loads(asyncio.run(_status(served.url)))
        runs = [r["run"] for r in status["runs"]]
        if len(runs) != shape.live:
            msg = f"{len(runs)} runs served, not {shape.live}; see {served.log}"
            raise RuntimeError(msg)
        everyone: list[str | None] = [None] * shape.viewers
        each: list[str | None] = [runs[i % len(runs)] for i in range(shape.viewers)]
        window = shape.window_s
        raw["idle_first"] = asyncio.run(_measure(served, "idle", [], window))
        raw["host_view"] = asyncio.run(_measure(served, "stream", everyone, window))
        raw["run_view"] = asyncio.run(_measure(served, "stream", each, window))
        raw["polling"] = asyncio.run(_measure(served, "poll", everyone, window))
        raw["idle_last"] = asyncio.run(_measure(served, "idle", [], window))
        steps = [min(LIVE_LISTED, shape.jobs // 3), shape.jobs]
        bound = shape.jobs + shape.live + 10
        raw["jobs"] = asyncio.run(_with_jobs(served.url, runs[0], steps, bound))
    finally:
        served.stop()
    return _figures(shape, raw), raw


async def _status(url: str) -> bytes:
    async with _session() as http:
        return await _get(http, f"{url}/status")


def _frames(measured: dict[str, Any]) -> tuple[float, float]:
    """The slowest viewer's frames a second, and the median bytes of a frame."""
    clients = measured["clients"]
    return (min(c["per_s"] for c in clients), statistics.median(c["bytes"] for c in clients))


def _figures(shape: Shape, raw: dict[str, Any]) -> list[Figure]:
    n = shape.viewers
    label = f"dashboard, host of {shape.live} live runs + {shape.finished:,} finished"
    baseline = 100 * (raw["idle_first"]["cpu"] + raw["idle_last"]["cpu"]) / 2
    target = f"< {TARGET_CPU:g} % over the baseline"
    figures = []
    views = (("host_view", "the host view"), ("run_view", "the run view, a run each"))
    for key, what in views:
        cpu = 100 * raw[key]["cpu"]
        figures.append(
            Figure(f"{label}: CPU, share of a core, {n} viewers of {what}", cpu, "%",
                   baseline, "nobody watching", compare="difference", target=target,
                   met=cpu - baseline < TARGET_CPU)
        )  # fmt: skip
    polling = 100 * raw["polling"]["cpu"]
    figures.append(
        Figure(f"{label}: CPU, share of a core, {n} clients polling /status each second",
               polling, "%", baseline, "nobody watching", compare="difference")
    )  # fmt: skip
    for key, what in views:
        rate, size = _frames(raw[key])
        figures += [
            Figure(f"{label}: frames a second, slowest of {n} viewers of {what}", rate, "/s",
                   1.0, "one a tick", target=f">= {TARGET_FRAMES_PER_S:g} /s",
                   met=rate >= TARGET_FRAMES_PER_S),
            Figure(f"{label}: bytes per frame, {what}", size, "B"),
        ]  # fmt: skip
    first, capped, last = raw["jobs"]
    for key, what in (("host_bytes", "/status"), ("run_bytes", "/status?run=, the busiest run")):
        figures.append(
            Figure(f"{label}: {what} at {last['live_jobs']} live jobs", last[key], "B",
                   capped[key], f"at {capped['live_jobs']}", target=f"<= {TARGET_GROWTH:g}x",
                   met=last[key] <= TARGET_GROWTH * capped[key],
                   detail={"at_0": first[key]})
        )  # fmt: skip
    return figures
