"""Trial 8: throughput against the seed. Engines basecall a run of `files` files in
batches of 10, as fast as the manager lets them, against three servers in turn on the
same tree with the same client:

- the seed-like baseline (`tests.bench.seedbase`: Flask, the seed's list and dicts);
- `reactor serve` with `durability = fsync` (the default) and with `none`;

and beside them the journal's floor: the same engines driving reactor's journal and
disk writer in this process, with no HTTP, no state machine and no logs
(`Journal.assign_step` and `Journal.merge_step` through `DiskWriter`, group commit
included): the system calls and fsyncs any server that keeps reactor's guarantees must
make for these batches, with durability on and off.

An engine is a coroutine with a fixed engine id: `/assignwork?batchsize=10`, then one
small FASTQ per file in the job's `pass/` (made if missing, as an engine would), then
`/completed?job_state=DONE`, until the answer is the empty batch. Files per second is
files merged over the seconds from the first request to the last answer; each server is
left idle for `settle_s` (2 s) between ready and the first request, so that what it
starts in the background (reactor's read workers) is not counted as throughput. Each trial
starts on a fresh OUTPUTDIR with every file ready, and ends by counting the outputs in
`pass/`: each file exactly once. Rounds alternate the servers (seed, reactor fsync,
reactor none, the floors) at each engine count, so drift on a shared machine hits them
alike; a figure is the median round.

Beside them, two ceilings (`tests.bench.ceiling`): the engines against a server that
touches no disk (what the engines alone allow), and against a bare aiohttp server making
only the seed protocol's own folder changes, nothing recorded, fsynced or logged (what any
server that keeps the wire protocol can reach). When that ceiling is under the target
over the seed, the target is out of reach on this machine and the table says so.

The trial runs on a freshly made ext4 (`tests.bench.scratchfs`) when it can: on a
filesystem with a long history of removed files a new file can cost 30 times what it
costs on a fresh one, and the figures would measure that history. The label says where
it ran and what a new file cost there and in the data folder.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from reactor.core.names import job_tag
from reactor.disk.journal import Journal
from reactor.disk.read_files import SplitRequest
from reactor.serve.read_worker import ReadWorker
from reactor.serve.writer import DiskWriter
from tests.bench import client, scratchfs, trees
from tests.bench.durability import group_steps
from tests.bench.figures import Figure
from tests.bench.servers import Served, reactor_serve
from tests.support.launch import free_port
from tests.support.stand_in import basecall

BATCH = 10
MIN_QSCORE = 10.0  # where the floor splits pass from fail (it only counts here)
ENGINES = (8, 32)
READY_TIMEOUT_S = 120.0
TARGET_OVER_SEED = 3.0  # reactor with durability on, files/s over the baseline's
TARGET_OVER_FLOOR = 2.0  # reactor's time per file over the journal floor's, at most
SERVERS = (
    "seed",
    "ceiling memory",
    "ceiling protocol",
    "reactor fsync",
    "reactor none",
    "reactor fsync no reads",
    "floor fsync",
    "floor none",
    "floor fsync no reads",
)


@dataclass
class Settings:
    files: int = 5000
    engines: tuple[int, ...] = ENGINES
    rounds: int = 3
    seconds: float = 300.0  # bound of one trial
    settle_s: float = 2.0  # each server idle between ready and the first engine
    fresh_fs: bool = True  # on a freshly made ext4 when root can make one


@dataclass
class Trial:
    """One server, one engine count: files merged and the seconds it took."""

    files: int = 0
    elapsed_s: float = 0.0
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    outputs: int = 0  # in pass/ at the end: must be the tree's files
    steps_per_group: float | None = None  # the disk writer's group commit at work

    @property
    def files_per_s(self) -> float:
        return self.files / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "elapsed_s": round(self.elapsed_s, 3),
            "files_per_s": round(self.files_per_s, 1),
            "requests": self.requests,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "outputs": self.outputs,
            "steps_per_group": _round(self.steps_per_group),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _write_outputs(output: Path, batch: list[str]) -> None:
    """What an engine leaves: `pass/` (the seed makes no subfolders; reactor does) with
    one FASTQ per file."""
    (output / "pass").mkdir(exist_ok=True)
    basecall(output, batch)


async def _engines(count: int, seconds: float, one: Any, trial: Trial) -> None:
    """`count` engines each run `one(engine number)` until it says the run is done
    (False), an error, or `seconds` pass."""
    deadline = time.perf_counter() + seconds

    async def engine(number: int) -> None:
        while time.perf_counter() < deadline:
            try:
                if not await one(number):
                    return
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
                trial.errors += 1
                trial.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                return

    began = time.perf_counter()
    await asyncio.gather(*(engine(k) for k in range(count)))
    trial.elapsed_s = time.perf_counter() - began


async def over_http(url: str, output_dir: Path, engines: int, seconds: float) -> Trial:
    """The engines against a server at `url` whose OUTPUTDIR is `output_dir`."""
    trial = Trial()
    async with client.session(engines) as http:

        async def one(number: int) -> bool:
            work = await client.get_json(
                http, f"{url}/assignwork", engineid=f"thru-eng{number:02d}", batchsize=BATCH
            )
            trial.requests += 1
            if not work["batch"]:
                return False
            _write_outputs(output_dir / work["job_output_dir"], work["batch"])
            await client.get_json(http, f"{url}/completed", job_id=work["jobid"], job_state="DONE")
            trial.requests += 1
            trial.files += len(work["batch"])
            return True

        await _engines(engines, seconds, one, trial)
    return trial


def started_read_worker(settle_s: float) -> ReadWorker:
    """The service's pool of read workers, started and given the time a server is."""
    worker = ReadWorker()
    worker.warm()
    time.sleep(settle_s)
    return worker


async def journal_floor(
    input_dir: Path,
    output_dir: Path,
    engines: int,
    seconds: float,
    *,
    durable: bool,
    reads: ReadWorker | None = None,
) -> Trial:
    """The same engines on reactor's journal and disk writer directly (no HTTP), and,
    given `reads`, each DONE's outputs read in the service's read workers first, as the
    service does with `read_qc` on (its default)."""
    trial = Trial()
    queue = sorted(entry.name for entry in os.scandir(input_dir) if entry.name.endswith(".pod5"))
    queue.reverse()
    journal = Journal(input_dir, output_dir, durable=durable)
    writer = DiskWriter(durable=durable)
    journal.open()
    writer.start()

    async def one(number: int) -> bool:
        batch = [queue.pop() for _ in range(min(BATCH, len(queue)))]
        if not batch:
            return False
        job = trees.first_job(f"thru-eng{number:02d}", batch, time.time())
        await writer.run(journal.assign_step(job))
        _write_outputs(journal.output_folder(job), batch)
        if reads is None:
            await writer.run(journal.merge_step(job))
        else:
            request = SplitRequest(
                output_dir=str(output_dir.absolute()),
                folder=journal.output_folder(job).name,
                tag=job_tag(job.job_id),
                pod5_paths=tuple(str((input_dir / name).absolute()) for name in sorted(batch)),
                min_qscore=MIN_QSCORE,
            )
            read = await reads.split(request)
            await writer.run(journal.merge_step(job, read.outputs, read.reads.to_json()))
        trial.requests += 2
        trial.files += len(batch)
        return True

    try:
        await _engines(engines, seconds, one, trial)
    finally:
        await writer.stop()
        journal.close()
    trial.steps_per_group = writer.shared / writer.groups if writer.groups else None
    return trial


def _count_outputs(output_dir: Path) -> int:
    return sum(1 for entry in os.scandir(output_dir / "pass") if entry.name.endswith(".fastq"))


def seed_server(input_dir: Path, output_dir: Path, log: Path) -> Served:
    port = free_port()
    args = ["-m", "tests.bench.seedbase", str(input_dir), str(output_dir), str(port), str(BATCH)]
    return Served(args=args, log=log, ready_path="/heartbeat", port=port)


def ceiling_server(kind: str, input_dir: Path, output_dir: Path, log: Path) -> Served:
    port = free_port()
    args = ["-m", "tests.bench.ceiling", kind, str(input_dir), str(output_dir), str(port)]
    return Served(args=[*args, str(BATCH)], log=log, ready_path="/heartbeat", port=port)


def one_trial(
    kind: str, tree: trees.Tree, work: Path, logs: Path, engines: int, settings: Settings
) -> Trial:
    """A fresh OUTPUTDIR, the server started and left to settle (not timed), the engines
    run, outputs counted."""
    seconds = settings.seconds
    tree.clean_input()
    output = tree.fresh_output(work / "thru-output")
    log = logs / f"thru-{kind.replace(' ', '-')}-{engines}.log"
    if kind.startswith("floor"):
        reads = None if kind.endswith("no reads") else started_read_worker(settings.settle_s)
        floor = journal_floor(
            tree.input_dir, output, engines, seconds, durable="fsync" in kind, reads=reads
        )
        try:
            trial = asyncio.run(floor)
        finally:
            if reads is not None:
                reads.close()
    else:
        if kind == "seed":
            server = seed_server(tree.input_dir, output, log)
        elif kind.startswith("ceiling"):
            server = ceiling_server(kind.split()[1], tree.input_dir, output, log)
        else:
            qc = {"read_qc": False} if kind.endswith("no reads") else {}
            server = reactor_serve(tree.input_dir, output, log, durability=kind.split()[1], **qc)
        try:
            server.start(READY_TIMEOUT_S)
            # What a server starts in the background once it is ready (reactor's read
            # workers, spawned, take about a second to import) is not throughput.
            time.sleep(settings.settle_s)
            trial = asyncio.run(over_http(server.url, output, engines, seconds))
            if kind.startswith("reactor"):
                total, groups = group_steps(server.url)
                trial.steps_per_group = total / groups if groups else None
        finally:
            server.stop()
    trial.outputs = _count_outputs(output)
    if trial.outputs != tree.files or trial.files != tree.files:
        trial.errors += 1
        trial.error_samples.append(
            f"{kind}: {trial.files} files reported done, {trial.outputs} outputs in pass/, "
            f"of {tree.files}"
        )
    return trial


Trials = dict[int, dict[str, Trial]]  # engines -> server -> trial


def run(data: Path, logs: Path, settings: Settings) -> tuple[list[Figure], dict[str, Any]]:
    data_create_us = scratchfs.create_cost_us(data)
    if not settings.fresh_fs:
        where = scratchfs.Scratch(data, "the data folder, no fresh filesystem asked for")
        return _run_in(where, data_create_us, logs, settings)
    with scratchfs.fresh_ext4(data / "throughput-fs") as where:
        return _run_in(where, data_create_us, logs, settings)


def _run_in(
    where: scratchfs.Scratch, data_create_us: float, logs: Path, settings: Settings
) -> tuple[list[Figure], dict[str, Any]]:
    create_us = scratchfs.create_cost_us(where.folder)
    tree = trees.build(where.folder / "throughput", settings.files, 0)
    work = where.folder
    rounds: list[Trials] = []
    try:
        for _ in range(settings.rounds):
            found: Trials = {}
            for engines in settings.engines:
                found[engines] = {
                    kind: one_trial(kind, tree, work, logs, engines, settings) for kind in SERVERS
                }
            rounds.append(found)
    finally:
        tree.clean_input()
    median: Trials = {
        engines: {
            kind: sorted((r[engines][kind] for r in rounds), key=lambda t: t.files_per_s)[
                len(rounds) // 2
            ]
            for kind in SERVERS
        }
        for engines in settings.engines
    }
    raw = {
        "files": settings.files,
        "batch": BATCH,
        "where": where.what,
        "create_us": {"trial": round(create_us, 1), "data folder": round(data_create_us, 1)},
        "rounds": [
            {str(e): {k: t.summary() for k, t in by.items()} for e, by in r.items()} for r in rounds
        ],
        "median": {str(e): {k: t.summary() for k, t in by.items()} for e, by in median.items()},
    }
    place = f"{where.what} (a new file {create_us:.0f} us"
    place += f"; {data_create_us:.0f} us in the data folder)" if where.fresh else ")"
    return _figures(median, settings.files, place), raw


def _figures(median: Trials, files: int, place: str) -> list[Figure]:
    figures = []
    for engines, by in median.items():
        shape = f"{engines} engines x batch {BATCH}, {files:,} files"
        seed = by["seed"]
        figures.append(_rate(f"seed-like baseline (Flask), {shape}, on {place}", seed))
        memory, protocol = by["ceiling memory"], by["ceiling protocol"]
        figures.append(_rate(f"ceiling: no disk at all, {shape}", memory, seed, "seed"))
        protocol_figure = _rate(
            f"ceiling: the seed protocol's folder changes only, {shape}", protocol, seed, "seed"
        )
        figures.append(protocol_figure)
        for mode in ("fsync", "none", "fsync no reads"):
            served = by[f"reactor {mode}"]
            name = f"reactor, durability {mode.replace(' no reads', ', read_qc off')}, {shape}"
            figure = _rate(name, served, seed, "seed")
            if mode == "fsync":
                figure.target = f">= {TARGET_OVER_SEED:.0f}x"
                figure.met = (
                    served.errors == 0
                    and figure.ratio is not None
                    and (figure.ratio >= TARGET_OVER_SEED)
                )
                # Out of reach while the journal keeps its guarantees: its own system
                # calls, with no server around them, do not reach the target.
                journal = by["floor fsync no reads"]
                reach = journal.files_per_s / seed.files_per_s if seed.files_per_s else None
                if reach is not None and reach < TARGET_OVER_SEED and journal.errors == 0:
                    figure.out_of_reach = (
                        f"reactor's journal alone is {reach:.2f}x the seed "
                        f"(the protocol's folder changes alone {protocol_figure.ratio or 0:.2f}x)"
                    )
            figures.append(figure)
        for mode in ("fsync", "none", "fsync no reads"):
            floor, served = by[f"floor {mode}"], by[f"reactor {mode}"]
            durability, _, no_reads = mode.partition(" ")
            what = "journal" if no_reads else "journal and read workers"
            label = f"floor: the {what} alone (no HTTP), durability {durability}, {shape}"
            figures.append(_rate(label, floor))
            figure = Figure(
                f"reactor, {mode.replace(' no reads', ', read_qc off')}: ms per file against "
                f"that floor, {shape}",
                _ms_per_file(served),
                "ms",
                _ms_per_file(floor),
                "floor",
            )
            if mode == "fsync":
                figure.target = f"<= {TARGET_OVER_FLOOR:.0f}x"
                figure.met = figure.ratio is not None and figure.ratio <= TARGET_OVER_FLOOR
            figures.append(figure)
    return figures


def _ms_per_file(trial: Trial) -> float | None:
    return 1000 / trial.files_per_s if trial.files_per_s > 0 else None


def _rate(name: str, trial: Trial, against: Trial | None = None, kind: str = "") -> Figure:
    label = f"{name} ({trial.elapsed_s:.2f} s)"
    if trial.errors:
        label += f" [{trial.errors} errors]"
    return Figure(
        label,
        trial.files_per_s,
        "files/s",
        against.files_per_s if against is not None else None,
        kind,
        detail=trial.summary(),
    )
