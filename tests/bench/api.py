"""Trial 3: requests per second and latency of each engine verb, at two queue sizes, with
8, 32 and 128 concurrent clients; the ceiling is the bare aiohttp handler (`bare`) with
the same client at the same concurrency.

One `reactor serve` per size runs at once, and the cells alternate between them (and the
ceiling), so drift on a shared machine hits every size alike. Each server is `reactor
serve` on a cached tree (nothing done, jobs in flight) with a
throwaway copy of its OUTPUTDIR. Verbs, each a cell bounded by `requests` and `seconds`:

- `/keepalive`: on KEEPALIVE_JOBS jobs assigned beforehand, at random; KEEPALIVE_REPEATS
  short cells a round, each size first in turn, the median kept;
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
from tests.support.stand_in import basecall

CONCURRENCY = (8, 32, 128)
BATCHES = (1, 10, 100)
KEEPALIVE_JOBS = 64
KEEPALIVE_REPEATS = 3  # /keepalive cells per round and concurrency (each ~0.3 s)
READY_TIMEOUT_S = 600.0
TARGET_GROWTH = 0.9  # throughput at the large size / at the small size
TARGET_KEEPALIVE_SHARE = 0.5  # of the bare handler's


@dataclass
class Settings:
    concurrency: tuple[int, ...] = CONCURRENCY
    requests: int = 2000
    seconds: float = 3.0
    files_per_cell: int = 5000
    rounds: int = 3


@dataclass
class ServerUnderTest:
    """`reactor serve` on a tree, restarted on a fresh copy when its queue runs short."""

    tree: Tree
    work: Path
    logs: Path
    server: Served | None = None
    queued: int = 0  # ready files left, counted from the answers
    starts: int = 0
    keepalive_start: int = -1  # the start whose jobs /keepalive uses
    ready_s: list[float] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)  # of `reactor serve`

    def fresh(self) -> None:
        self.stop()
        self.tree.clean_input()
        self.tree.touch_leases()
        output = self.tree.fresh_output(self.work)
        self.starts += 1
        log = self.logs / f"api-{self.tree.files}-{self.starts}.jsonl"
        self.server = reactor_serve(self.tree.input_dir, output, log, **self.settings)
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

    def threads(self) -> int | None:
        return self.server.threads() if self.server is not None else None


async def _assign(http: aiohttp.ClientSession, url: str, engine: str, batch: int) -> Any:
    return await client.get_json(http, f"{url}/assignwork", engineid=engine, batchsize=batch)


async def one_cell(
    request: client.Request, concurrency: int, count: int, settings: Settings
) -> Cell:
    async with client.session(concurrency) as http:
        return await client.run_cell(http, request, concurrency, count, settings.seconds)


async def keepalive_jobs(sut: ServerUnderTest) -> list[str]:
    """KEEPALIVE_JOBS live jobs of one file each, for the /keepalive cells (made again
    when the server was restarted on a fresh tree, which forgets them)."""
    sut.ensure(KEEPALIVE_JOBS)
    sut.keepalive_start = sut.starts
    jobs = []
    async with client.session(8) as http:
        for k in range(KEEPALIVE_JOBS):
            work = await _assign(http, sut.url, f"bench-ka{k % 8}", 1)
            jobs.append(work["jobid"])
            sut.queued -= len(work["batch"])
    return jobs


def keepalive_request(base: str, jobs: list[str]) -> client.Request:
    rng = random.Random(1)

    async def request(worker: int, http: aiohttp.ClientSession) -> float:
        job = rng.choice(jobs)
        return await client.timed_get(http, f"{base}/keepalive", job_id=job, job_state="PROCESSING")

    return request


def assign_request(sut: ServerUnderTest, batch: int) -> client.Request:
    url = sut.url

    async def request(worker: int, http: aiohttp.ClientSession) -> float:
        began = time.perf_counter()
        work = await _assign(http, url, f"bench-gpu{worker:03d}", batch)
        elapsed = time.perf_counter() - began
        sut.queued -= len(work["batch"])
        if not work["batch"]:
            msg = "the queue ran dry"
            raise RuntimeError(msg)
        return elapsed

    return request


def completed_request(sut: ServerUnderTest) -> client.Request:
    url = sut.url
    assert sut.server is not None
    args = sut.server.args
    output_dir = Path(args[args.index("--output-dir") + 1])

    async def request(worker: int, http: aiohttp.ClientSession) -> float:
        work = await _assign(http, url, f"bench-gpu{worker:03d}", 1)
        sut.queued -= len(work["batch"])
        if not work["batch"]:
            msg = "the queue ran dry"
            raise RuntimeError(msg)
        basecall(output_dir / work["job_output_dir"], work["batch"])
        return await client.timed_get(
            http, f"{url}/completed", job_id=work["jobid"], job_state="DONE"
        )

    return request


Measured = dict[int, dict[str, dict[int, Cell]]]  # files -> verb -> concurrency -> cell


async def measure(
    suts: list[ServerUnderTest], settings: Settings, bare_url: str
) -> tuple[Measured, dict[int, Cell]]:
    """Every cell `settings.rounds` times; in each round, each size's cell comes right
    after the others' at the same verb and concurrency, so that drift on a shared
    machine hits all sizes alike. A figure is the median round (by requests/s)."""
    rounds: list[tuple[Measured, dict[int, Cell]]] = []
    jobs = {sut.tree.files: await keepalive_jobs(sut) for sut in suts}
    for _ in range(settings.rounds):
        rounds.append(await _round(suts, settings, bare_url, jobs))
    measured: Measured = {}
    for files in rounds[0][0]:
        measured[files] = {
            verb: {c: median_cell([r[0][files][verb][c] for r in rounds]) for c in cells}
            for verb, cells in rounds[0][0][files].items()
        }
    ceiling = {c: median_cell([r[1][c] for r in rounds]) for c in rounds[0][1]}
    return measured, ceiling


def median_cell(cells: list[Cell]) -> Cell:
    return sorted(cells, key=lambda cell: cell.rps)[len(cells) // 2]


async def _round(
    suts: list[ServerUnderTest], settings: Settings, bare_url: str, jobs: dict[int, list[str]]
) -> tuple[Measured, dict[int, Cell]]:
    measured: Measured = {sut.tree.files: {} for sut in suts}
    ceiling: dict[int, Cell] = {}
    for concurrency in settings.concurrency:
        # Short cells, compared size against size: KEEPALIVE_REPEATS of each, the sizes
        # in turn first (the server measured last in the round before may still be
        # finishing its work), the median kept.
        tries: dict[int, list[Cell]] = {sut.tree.files: [] for sut in suts}
        ceilings: list[Cell] = []
        for repeat in range(KEEPALIVE_REPEATS):
            request = keepalive_request(bare_url, ["1"])
            ceilings.append(await one_cell(request, concurrency, settings.requests, settings))
            for sut in suts[repeat % len(suts) :] + suts[: repeat % len(suts)]:
                if sut.server is None or sut.starts != sut.keepalive_start:
                    jobs[sut.tree.files] = await keepalive_jobs(sut)
                request = keepalive_request(sut.url, jobs[sut.tree.files])
                cell = await one_cell(request, concurrency, settings.requests, settings)
                cell.server_threads = sut.threads()
                tries[sut.tree.files].append(cell)
        ceiling[concurrency] = median_cell(ceilings)
        for files, cells in tries.items():
            measured[files].setdefault("/keepalive", {})[concurrency] = median_cell(cells)
    for batch in BATCHES:
        count = max(1, min(settings.requests, settings.files_per_cell // batch))
        for concurrency in settings.concurrency:
            for sut in suts:
                sut.ensure(count * batch)
                cell = await one_cell(assign_request(sut, batch), concurrency, count, settings)
                cell.server_threads = sut.threads()
                verbs = measured[sut.tree.files]
                verbs.setdefault(f"/assignwork batch {batch}", {})[concurrency] = cell
    count = max(1, min(settings.requests, settings.files_per_cell))
    for concurrency in settings.concurrency:
        for sut in suts:
            sut.ensure(count)
            cell = await one_cell(completed_request(sut), concurrency, count, settings)
            cell.server_threads = sut.threads()
            measured[sut.tree.files].setdefault("/completed", {})[concurrency] = cell
    return measured, ceiling


def run(
    trees: list[Tree], work: Path, logs: Path, settings: Settings
) -> tuple[list[Figure], dict[str, Any]]:
    suts = [ServerUnderTest(tree, work / f"api-{tree.files}", logs) for tree in trees]
    bare = bare_handler(logs / "bare.log")
    try:
        bare.start(60)
        measured, ceiling = asyncio.run(measure(suts, settings, bare.url))
    finally:
        bare.stop()
        for sut in suts:
            sut.stop()
            sut.tree.clean_input()
    raw: dict[str, Any] = {"ceiling": {c: cell.summary() for c, cell in ceiling.items()}}
    for sut in suts:
        raw[str(sut.tree.files)] = {
            "server_starts": sut.starts,
            "ready_s": [round(s, 3) for s in sut.ready_s],
            "verbs": {
                verb: {c: cell.summary() for c, cell in cells.items()}
                for verb, cells in measured[sut.tree.files].items()
            },
        }
    return _figures(measured, ceiling), raw


def _figures(measured: Measured, ceiling: dict[int, Cell]) -> list[Figure]:
    figures = []
    for concurrency, cell in ceiling.items():
        figures.append(_rps_figure(f"bare handler (ceiling), {concurrency} clients", cell))
    sizes = sorted(measured)
    for files in sizes:
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
                threads = f"server threads {before.server_threads} vs {cell.server_threads}"
                figures.append(
                    Figure(
                        f"{verb}, {concurrency} clients: rps at {large:,} vs {small:,} files"
                        f" ({threads})",
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
