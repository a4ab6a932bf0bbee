"""Hostile and unlucky engines, and the proof that they touched nothing they should not.

- `Untouched` takes a picture of folders (every entry's kind, mode, size, mtime, link
  count and link target, never following a link) and says what differs in a later one:
  a hostile job may change its own folders, nothing else.
- `basecall` is a well-behaved engine's work: every read of every `.pod5` of the batch,
  read through the job's folder of links with the `pod5` library, becomes one FASTQ
  record named by its read id in the job's `pass/` or `fail/` (by a fixed rule on the read
  id), so `tests.support.exactly_once` can recount the whole run.
- `make_canary` is a folder outside the run folders for hostile links to point at.
- `Scene` is a run served by the real app, with an engine's verbs, what the tests look
  at (/status, held jobs, metrics) and `finish_run`, which drives every remaining file
  through a well-behaved engine.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.exactly_once import Recount, recount_run
from tests.support.pod5files import read_ids, write_pod5

Client = TestClient[web.Request, web.Application]

# kind, permission bits, size, mtime (ns), link count, link target (links only)
Entry = tuple[str, int, int, int, int, str | None]
CANARY_READ = "canary-read-0001"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "link"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISREG, "file"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "char-device"),
        (stat.S_ISBLK, "block-device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "other"


def entry(path: Path) -> Entry:
    """What one entry is, looked at without following it."""
    info = path.lstat()
    target = str(path.readlink()) if stat.S_ISLNK(info.st_mode) else None
    return (
        _kind(info.st_mode),
        stat.S_IMODE(info.st_mode),
        info.st_size,
        info.st_mtime_ns,
        info.st_nlink,
        target,
    )


@dataclass(frozen=True)
class Untouched:
    """Folders (and files) a hostile job must leave alone. `roots` are walked (never
    following a link); a root's own entry counts unless it is in `walk_only` (INPUTDIR and OUTPUTDIR
    themselves change when the job's folders are renamed or removed); `skip` are the
    job's own folders (and reactor's state folder), left out with all they hold."""

    roots: tuple[Path, ...]
    skip: frozenset[Path] = frozenset()
    walk_only: frozenset[Path] = frozenset()

    def take(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for root in self.roots:
            if root not in self.walk_only:
                found[str(root)] = entry(root)
            if entry(root)[0] == "folder":
                self._walk(root, found)
        return found

    def _walk(self, folder: Path, found: dict[str, Entry]) -> None:
        for child in sorted(folder.iterdir()):
            if child in self.skip:
                continue
            found[str(child)] = entry(child)
            if found[str(child)][0] == "folder":
                self._walk(child, found)

    def differences(self, before: dict[str, Entry]) -> list[str]:
        """What was added, removed or changed since `before`, one line each."""
        after = self.take()
        return [
            *(f"added {path}" for path in sorted(set(after) - set(before))),
            *(f"removed {path}" for path in sorted(set(before) - set(after))),
            *(
                f"changed {path}: {before[path]} -> {after[path]}"
                for path in sorted(set(before) & set(after))
                if before[path] != after[path]
            ),
        ]

    def assert_same(self, before: dict[str, Entry]) -> None:
        """Nothing added, removed or changed since `before` (each difference listed)."""
        assert self.differences(before) == [], "touched outside the job's folders"


def make_canary(root: Path) -> Path:
    """A folder outside the run folders, holding what a hostile engine would like reactor
    to move or read: a FASTQ of a read no `.pod5` has, and a folder with a file."""
    canary = root / "canary"
    (canary / "inner").mkdir(parents=True)
    (canary / "secret.fastq").write_text(f"@{CANARY_READ}\nACGT\n+\nIIII\n")
    (canary / "inner" / "notes.txt").write_text("not reactor's\n")
    return canary


def fastq(read_ids_: Iterable[str]) -> str:
    return "".join(f"@{read_id}\nACGT\n+\nIIII\n" for read_id in read_ids_)


def basecall(input_dir: Path, output_dir: Path, job: dict[str, Any]) -> None:
    """What a well-behaved engine writes for `job` (an /assignwork answer): one FASTQ
    per file and kind, every read once, read through the job's folder of links."""
    job_in = input_dir / job["job_input_dir"]
    job_out = output_dir / job["job_output_dir"]
    for name in job["batch"]:
        ids = read_ids(job_in / name)
        stem = name.removesuffix(".pod5")
        for kind in ("pass", "fail"):
            mine = [read_id for read_id in ids if (read_id[0] in "01234567") == (kind == "pass")]
            if mine:
                (job_out / kind / f"{stem}.fastq").write_text(fastq(mine))
    (job_out / "engine.log").write_text("basecalled\n")


def add_pod5(input_dir: Path, count: int, reads: int = 3, start: int = 0) -> list[str]:
    """`count` `.pod5` files of `reads` reads each, oldest first in name order."""
    names = [f"PAK00000_pass_hostile_{i:04d}.pod5" for i in range(start, start + count)]
    for i, name in enumerate(names, start):
        write_pod5(input_dir / name, n_reads=reads, seed=1000 + i)
        os.utime(input_dir / name, (1_000_000 + i, 1_000_000 + i))
    return names


class Scene:
    """A run served by the real app (`aiohttp_client`), with the verbs an engine uses and
    what the tests look at: job folders, /status, and the run driven to its end by a
    well-behaved engine."""

    def __init__(self, client: Client, input_dir: Path, output_dir: Path) -> None:
        self.client = client
        self.input_dir = input_dir
        self.output_dir = output_dir

    async def get(self, path: str, status: int = 200, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        body = await response.json()
        assert response.status == status, body
        return body

    async def assign(self, engine_id: str, batch: int) -> dict[str, Any]:
        job: dict[str, Any] = await self.get("/assignwork", engineid=engine_id, batchsize=batch)
        assert job["batch_size"] > 0, f"no work for {engine_id}"
        return job

    async def report(self, job: dict[str, Any], state: str = "DONE") -> dict[str, Any]:
        body: dict[str, Any] = await self.get("/completed", job_id=job["jobid"], job_state=state)
        return body

    def out(self, job: dict[str, Any], kind: str = "TMPOUTPUT") -> Path:
        return self.output_dir / f"{kind}_{job['jobid']}_{job['bc_engine_id']}"

    def links(self, job: dict[str, Any]) -> Path:
        return self.input_dir / job["job_input_dir"]

    def basecall(self, job: dict[str, Any]) -> None:
        basecall(self.input_dir, self.output_dir, job)

    async def basecalled(self, engine_id: str, batch: int) -> dict[str, Any]:
        """A well-behaved engine's whole job: assigned, basecalled, DONE, merged."""
        job = await self.assign(engine_id, batch)
        self.basecall(job)
        assert await self.report(job) == {"ok": True}
        return job

    def untouched(self, canary: Path, *jobs: dict[str, Any]) -> Untouched:
        """Everything but `jobs`' own folders (and reactor's state folder)."""
        skip = {self.output_dir / ".reactor"}
        for job in jobs:
            skip.add(self.links(job))
            for kind in ("TMPOUTPUT", "REFUSEDOUTPUT", "LOGOUTPUT"):
                skip.add(self.out(job, kind))
        return Untouched(
            roots=(self.input_dir, self.output_dir, canary),
            skip=frozenset(skip),
            walk_only=frozenset({self.input_dir, self.output_dir}),
        )

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.get("/status")
        return body

    async def held(self) -> list[dict[str, Any]]:
        held: dict[str, Any] = (await self.status())["held"]
        assert held["total"] == len(held["jobs"])
        jobs: list[dict[str, Any]] = held["jobs"]
        return jobs

    async def metric(self, name: str) -> float:
        text = await (await self.client.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        msg = f"no metric {name}"
        raise AssertionError(msg)

    async def finish_run(self, engine_id: str = "cleanup", batch: int = 4) -> list[str]:
        """Drive every remaining file through a well-behaved engine (bounded); the files
        it basecalled, in order. Ends with nothing waiting and nothing live."""
        done: list[str] = []
        for _ in range(1000):
            job = await self.get("/assignwork", engineid=engine_id, batchsize=batch)
            if job["batch_size"] == 0:
                break
            self.basecall(job)
            assert await self.report(job) == {"ok": True}
            done += job["batch"]
        else:
            msg = "the run did not end in 1000 batches"
            raise AssertionError(msg)
        files = (await self.status())["files"]
        assert (files["incomplete"], files["ready"], files["assigned"]) == (0, 0, 0), files
        return done

    def recount(self) -> Recount:
        """Every read of every `.pod5` in INPUTDIR against pass/ + fail/ (recounted)."""
        return recount_run(self.input_dir, self.output_dir)
