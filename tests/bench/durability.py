"""Trial 4: what durability costs. Two `reactor serve`s on trees of the same size, one
with `durability = fsync` (the default) and one with `none`, measured cell after cell
with the same client: `/assignwork` batch 10 and `/completed` DONE (after an untimed
assignment of one file and its FASTQ written, as in trial 3), at 1, 8 and 32 clients.
Each fsync figure stands beside the same cell without fsync.

Two more figures say why the numbers are what they are: the disk's own rate of durable
record writes (write, fsync, rename, fsync of the folder: the floor of anything that
must survive a power cut, measured in the same data folder), and how many steps the
writer committed per group at 32 clients (its group commit at work, from the service's
`reactor_disk_group_steps` histogram).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.bench import api, trees
from tests.bench.client import Cell
from tests.bench.figures import Figure

MODES = ("fsync", "none")
CONCURRENCY = (1, 8, 32)
FLOOR_WRITES = 200


def durable_writes_per_second(folder: Path, count: int = FLOOR_WRITES) -> float:
    """The disk's floor: records written the durable way per second, one at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        began = time.perf_counter()
        for number in range(count):
            tmp, target = f"{number}.tmp", f"{number}.json"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=folder_fd)
            os.write(fd, b'{"state": "done", "files": {"x.pod5": 1}}\n' * 8)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, target, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            os.fsync(folder_fd)
        elapsed = time.perf_counter() - began
        for number in range(count):
            os.unlink(f"{number}.json", dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    return count / elapsed


def group_steps(url: str) -> tuple[float, float]:
    """(sum, count) of the service's reactor_disk_group_steps histogram."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:  # noqa: S310
        text = reply.read().decode()
    total = re.search(r"^reactor_disk_group_steps_sum (\S+)$", text, re.M)
    count = re.search(r"^reactor_disk_group_steps_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


Cells = dict[str, dict[str, dict[int, Cell]]]  # mode -> verb -> concurrency -> cell


async def _round(
    suts: dict[str, api.ServerUnderTest], settings: api.Settings, grouping: list[float]
) -> Cells:
    """Every cell once; `grouping` gets the fsync server's steps per group commit in its
    /completed cell at the most clients."""
    cells: Cells = {mode: {} for mode in suts}
    for concurrency in settings.concurrency:
        count = max(1, min(settings.requests, settings.files_per_cell // 10))
        for mode, sut in suts.items():  # one mode right after the other: drift hits both
            sut.ensure(count * 10)
            request = api.assign_request(sut, 10)
            cell = await api.one_cell(request, concurrency, count, settings)
            cells[mode].setdefault("/assignwork batch 10", {})[concurrency] = cell
        count = max(1, min(settings.requests, settings.files_per_cell))
        for mode, sut in suts.items():
            sut.ensure(count)
            watched = mode == "fsync" and concurrency == max(settings.concurrency)
            before = group_steps(sut.url)
            cell = await api.one_cell(api.completed_request(sut), concurrency, count, settings)
            after = group_steps(sut.url)
            if watched and after[1] > before[1]:
                grouping.append((after[0] - before[0]) / (after[1] - before[1]))
            cells[mode].setdefault("/completed", {})[concurrency] = cell
    return cells


def run(
    data: Path, work: Path, logs: Path, settings: api.Settings
) -> tuple[list[Figure], dict[str, Any]]:
    settings.concurrency = tuple(c for c in CONCURRENCY if c <= max(settings.concurrency)) or (1,)
    files = max(2_000, 4 * settings.files_per_cell)  # what the cells take, with room to spare
    suts = {
        mode: api.ServerUnderTest(
            trees.build(data / f"durability-{mode}", files, 0),
            work / f"durability-{mode}-output",
            logs,
            settings={"durability": mode},
        )
        for mode in MODES
    }
    floor = durable_writes_per_second(work / "durability-floor")
    rounds: list[Cells] = []
    grouping: list[float] = []
    try:
        for _ in range(settings.rounds):
            rounds.append(asyncio.run(_round(suts, settings, grouping)))
    finally:
        for sut in suts.values():
            sut.stop()
            sut.tree.clean_input()
    median: Cells = {
        mode: {
            verb: {c: api.median_cell([r[mode][verb][c] for r in rounds]) for c in by_c}
            for verb, by_c in rounds[0][mode].items()
        }
        for mode in MODES
    }
    figures = [
        Figure(
            "durable record writes on this disk (write, fsync, rename, fsync folder; floor)",
            floor,
            "per s",
        )
    ]
    for verb, by_c in median["fsync"].items():
        for concurrency, cell in by_c.items():
            plain = median["none"][verb][concurrency]
            summary, baseline = cell.summary(), plain.summary()
            figures.append(
                Figure(
                    f"{verb}, {concurrency} clients, fsync (p50 {summary['p50_ms']} ms,"
                    f" p99 {summary['p99_ms']} ms; without: {baseline['p50_ms']} ms,"
                    f" {baseline['p99_ms']} ms)",
                    cell.rps,
                    "rps",
                    plain.rps,
                    "no fsync",
                    detail={"fsync": summary, "none": baseline},
                )
            )
    top = max(settings.concurrency)
    grouped = sorted(grouping)[len(grouping) // 2] if grouping else None
    figures.append(
        Figure(
            f"/completed, {top} clients, fsync: steps per group commit",
            grouped,
            "steps",
            1.0,
            "one at a time",
        )
    )
    raw = {
        "floor_per_s": round(floor, 1),
        "steps_per_group": [round(g, 2) for g in grouping],
        "cells": {
            mode: {
                verb: {c: cell.summary() for c, cell in by_c.items()}
                for verb, by_c in verbs.items()
            }
            for mode, verbs in median.items()
        },
    }
    return figures, raw
