"""Trial 3: requests per second and latency of each engine verb, at two queue sizes, with
8, 32 and 128 concurrent clients; the ceiling is the bare aiohttp handler (`bare`) with
the same client at the same concurrency.

The server is `reactor serve` on a cached tree (nothing done, jobs in flight) with a
throwaway copy of its OUTPUTDIR. Verbs, each a cell bounded by `requests` and `seconds`:

- `/keepalive`: on KEEPALIVE_JOBS jobs assigned beforehand, at random, each cell right
  after the ceiling's cell at the same concurrency (the ceiling is measured per size);
- `/assignwork` with batch 1, 10 and 100: every answer must hold a batch; a cell takes at
  most `files_per_cell` files, so that the small queue holds what every cell takes (the
  server is restarted on a fresh copy of the tree when the queue would run short);
- `/completed` DONE: each worker first gets a job of one file (not timed), writes its
  FASTQ as an engine would (not timed), then reports it (timed).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench import client
from tests.bench.client import Cell
from tests.bench.figures import Figure
from tests.bench.servers import Served, bare_handler, reactor_serve
from tests.bench.trees import FILES_PER_JOB, Tree
from tests.load import basecall

CONCURRENCY = (8, 32, 128)
BATCHES = (1, 10, 100)
KEEPALIVE_JOBS = 64
READY_TIMEOUT_S = 600.0
TARGET_GROWTH = 0.9  # throughput at the large size / at the small size
TARGET_KEEPALIVE_SHARE = 0.5  # of the bare handler's


@dataclass
class Settings:
    concurrency: tuple[int, ...] = CONCURRENCY
    requests: int = 2000
    seconds: float = 3.0
    files_per_cell: int = 5000


@dataclass
class ServerUnderTest:
    """`reactor serve` on a tree, restarted on a fresh copy when its queue runs short."""

    tree: Tree
    work: Path
    logs: Path
    server: Served | None = None
    queued: int = 0  # ready files left, counted from the answers
    starts: int = 0
    ready_s: list[float] = field(default_factory=list)

    def fresh(self) -> None:
        self.stop()
        self.tree.clean_input()
        self.tree.touch_leases()
        output = self.tree.fresh_output(self.work / "api-output")
        self.starts += 1
        log = self.logs / f"api-{self.tree.files}-{self.starts}.jsonl"
        self.server = reactor_serve(self.tree.input_dir, output, log)
        self.ready_s.append(self.server.start(READY_TIMEOUT_S))
        self.queued = self.tree.files - FILES_PER_JOB * self.tree.jobs

    def ensure(self, files: int) -> None:
        if self.server is None or self.queued < files:
            self.fresh()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


async def _assign(http: aiohttp.ClientSession, url: str, engine: str, batch: int) -> Any:
    return await client.get_json(http, f"{url}/assignwork", engineid=engine, batchsize=batch)


async def keepalive_cells(
    sut: ServerUnderTest, settings: Settings, bare_url: str
) -> tuple[dict[int, Cell], dict[int, Cell]]:
    """/keepalive cells and the ceiling's cells, alternating at each concurrency so that
    both see the same machine (other load on a shared machine drifts)."""
    sut.ensure(KEEPALIVE_JOBS)
    url = sut.url
    jobs = []
    async with client.session(8) as http:
        for k in range(KEEPALIVE_JOBS):
            work = await _assign(http, url, f"bench-ka{k % 8}", 1)
            jobs.append(work["jobid"])
            sut.queued -= len(work["batch"])
    rng = random.Random(1)

    def request_to(base: str) -> client.Request:
        async def request(worker: int, http: aiohttp.ClientSession) -> float:
            job = rng.choice(jobs)
            return await client.timed_get(
                http, f"{base}/keepalive", job_id=job, job_state="PROCESSING"
            )

        return request

    served: dict[int, Cell] = {}
    ceiling: dict[int, Cell] = {}
    for concurrency in settings.concurrency:
        for cells, base in ((ceiling, bare_url), (served, url)):
            async with client.session(concurrency) as http:
                cells[concurrency] = await client.run_cell(
                    http, request_to(base), concurrency, settings.requests, settings.seconds
                )
    return served, ceiling


async def assign_cells(sut: ServerUnderTest, batch: int, settings: Settings) -> dict[int, Cell]:
    count = max(1, min(settings.requests, settings.files_per_cell // batch))
    cells = {}
    for concurrency in settings.concurrency:
        sut.ensure(count * batch)
        url = sut.url

        async def request(worker: int, http: aiohttp.ClientSession, url: str = url) -> float:
            engine = f"bench-gpu{worker:03d}"
            began = time.perf_counter()
            work = await _assign(http, url, engine, batch)
            elapsed = time.perf_counter() - began
            sut.queued -= len(work["batch"])
            if not work["batch"]:
                msg = "the queue ran dry"
                raise RuntimeError(msg)
            return elapsed

        async with client.session(concurrency) as http:
            cells[concurrency] = await client.run_cell(
                http, request, concurrency, count, settings.seconds
            )
    return cells


async def completed_cells(sut: ServerUnderTest, settings: Settings) -> dict[int, Cell]:
    count = max(1, min(settings.requests, settings.files_per_cell))
    cells = {}
    for concurrency in settings.concurrency:
        sut.ensure(count)
        url = sut.url
        assert sut.server is not None
        output_dir = Path(sut.server.args[sut.server.args.index("--output-dir") + 1])

        async def request(
            worker: int, http: aiohttp.ClientSession, url: str = url, output: Path = output_dir
        ) -> float:
            work = await _assign(http, url, f"bench-gpu{worker:03d}", 1)
            sut.queued -= len(work["batch"])
            if not work["batch"]:
                msg = "the queue ran dry"
                raise RuntimeError(msg)
            basecall(output / work["job_output_dir"], work["batch"])
            return await client.timed_get(
                http, f"{url}/completed", job_id=work["jobid"], job_state="DONE"
            )

        async with client.session(concurrency) as http:
            cells[concurrency] = await client.run_cell(
                http, request, concurrency, count, settings.seconds
            )
    return cells


async def measure_tree(
    sut: ServerUnderTest, settings: Settings, bare_url: str
) -> tuple[dict[str, dict[int, Cell]], dict[int, Cell]]:
    verbs: dict[str, dict[int, Cell]] = {}
    verbs["/keepalive"], ceiling = await keepalive_cells(sut, settings, bare_url)
    for batch in BATCHES:
        verbs[f"/assignwork batch {batch}"] = await assign_cells(sut, batch, settings)
    verbs["/completed"] = await completed_cells(sut, settings)
    return verbs, ceiling


def run(
    trees: list[Tree], work: Path, logs: Path, settings: Settings
) -> tuple[list[Figure], dict[str, Any]]:
    measured: dict[int, dict[str, dict[int, Cell]]] = {}
    ceilings: dict[int, dict[int, Cell]] = {}
    raw: dict[str, Any] = {}
    bare = bare_handler(logs / "bare.log")
    bare.start(60)
    try:
        for tree in trees:
            sut = ServerUnderTest(tree, work, logs)
            try:
                measured[tree.files], ceilings[tree.files] = asyncio.run(
                    measure_tree(sut, settings, bare.url)
                )
            finally:
                sut.stop()
                tree.clean_input()
            raw[str(tree.files)] = {
                "server_starts": sut.starts,
                "ready_s": [round(s, 3) for s in sut.ready_s],
                "ceiling": {c: cell.summary() for c, cell in ceilings[tree.files].items()},
                "verbs": {
                    verb: {c: cell.summary() for c, cell in cells.items()}
                    for verb, cells in measured[tree.files].items()
                },
            }
    finally:
        bare.stop()
    return _figures(measured, ceilings), raw


def _figures(
    measured: dict[int, dict[str, dict[int, Cell]]], ceilings: dict[int, dict[int, Cell]]
) -> list[Figure]:
    figures = []
    sizes = sorted(measured)
    for files in sizes:
        ceiling = ceilings[files]
        for concurrency, cell in ceiling.items():
            name = f"bare handler (ceiling), {concurrency} clients, beside {files:,} files"
            figures.append(_rps_figure(name, cell))
        for verb, cells in measured[files].items():
            for concurrency, cell in cells.items():
                name = f"{verb}, {concurrency} clients, {files:,} files"
                figure = _rps_figure(name, cell, ceiling[concurrency].rps)
                if verb == "/keepalive":
                    figure.target = f">= {TARGET_KEEPALIVE_SHARE:.0%} of ceiling"
                    figure.met = (
                        cell.errors == 0
                        and cell.rps >= TARGET_KEEPALIVE_SHARE * ceiling[concurrency].rps
                    )
                figures.append(figure)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for verb, cells in measured[large].items():
            for concurrency, cell in cells.items():
                before = measured[small][verb][concurrency]
                figures.append(
                    Figure(
                        f"{verb}, {concurrency} clients: rps at {large:,} vs {small:,} files",
                        cell.rps,
                        "rps",
                        before.rps,
                        f"at {small:,}",
                        target=f">= {TARGET_GROWTH:.2f}x",
                        met=before.rps > 0 and cell.rps >= TARGET_GROWTH * before.rps,
                    )
                )
    return figures


def _rps_figure(name: str, cell: Cell, ceiling_rps: float | None = None) -> Figure:
    summary = cell.summary()
    label = f"{name} (p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms)"
    if cell.errors:
        label += f" [{cell.errors} errors]"
    return Figure(
        label,
        cell.rps,
        "rps",
        ceiling_rps,
        "ceiling" if ceiling_rps is not None else "",
        detail=summary,
    )
