"""The load client: N concurrent workers on one aiohttp session, bounded by count and time.

Every trial (reactor and the bare handler alike) goes through `run_cell`, so floors,
ceilings and the service are measured by the same code. Latency is `time.perf_counter`
around the request and its body, per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.stats import percentile

REQUEST_TIMEOUT_S = 30.0

# One request of a worker: (worker number, session) -> seconds the timed part took, or
# None when the worker has nothing more to do. Raising counts as an error.
Request = Callable[[int, aiohttp.ClientSession], Awaitable[float | None]]


@dataclass
class Cell:
    """The figures of one (verb, concurrency) measurement."""

    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_threads: int | None = None  # of the server after the cell: must not grow with jobs

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "concurrency": self.concurrency,
            "requests": len(ordered),
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": _ms(percentile(ordered, 50)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "max_ms": _ms(ordered[-1] if ordered else None),
            "server_threads": self.server_threads,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    )


async def get_json(http: aiohttp.ClientSession, url: str, **params: Any) -> Any:
    """GET and decode; raises on a non-2xx answer."""
    async with http.get(url, params=params) as reply:
        body = await reply.read()
        if not 200 <= reply.status < 300:
            msg = f"HTTP {reply.status} from {url}: {body[:200]!r}"
            raise RuntimeError(msg)
        return json.loads(body)


async def timed_get(http: aiohttp.ClientSession, url: str, **params: Any) -> float:
    """One timed GET whose answer must be 2xx; the seconds it took."""
    began = time.perf_counter()
    async with http.get(url, params=params) as reply:
        body = await reply.read()
        elapsed = time.perf_counter() - began
        if not 200 <= reply.status < 300:
            msg = f"HTTP {reply.status}: {body[:200]!r}"
            raise RuntimeError(msg)
    return elapsed


async def run_cell(
    http: aiohttp.ClientSession, request: Request, concurrency: int, count: int, seconds: float
) -> Cell:
    """`concurrency` workers send `request` until `count` requests were sent or `seconds`
    passed, whichever comes first; each worker finishes the request it is in."""
    cell = Cell(concurrency)
    remaining = count
    deadline = time.perf_counter() + seconds

    async def worker(number: int) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                elapsed = await request(number, http)
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
                cell.errors += 1
                cell.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            if elapsed is None:
                return
            cell.latencies_s.append(elapsed)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    cell.elapsed_s = time.perf_counter() - began
    return cell
