"""Staging (`stage_to`): each complete POD5 copied to storage engines can read, before it
is handed out. For clusters whose nodes cannot mount the sequencer's disk.

In host mode with `stage_to`, a run's coordinator serves the run's *staging folder*
(`{stage_to}/{group}/{sample}/{run}/`): the links engines get lead to the copies there,
never to the sequencer. The stager watches the run's own POD5 folders (the run's
watches deliver to it, not to the coordinator): a complete file is copied under a
hidden name, its size and both POD5 signatures checked, fsynced, renamed into the
staging folder and the folder fsynced; only then does the coordinator hear of it (as a
closed file). A copy that does not match is removed and tried again later. Copies are
made one at a time on a worker thread; the loop never waits on either disk.

A copy is removed once its file is done (unless `stage_keep`), and at most
`stage_max_gb` is staged at once: beyond it, copying waits for removals. The run cannot
end while files wait to be staged (`waiting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from reactor.core.names import POD5_SIGNATURE
from reactor.disk.durable import fsync_folder
from reactor.disk.signature import check_pod5

log = structlog.get_logger("reactor.stager")

STAGING_PREFIX = ".reactor-staging-"
_SIGNATURE = len(POD5_SIGNATURE)


class CopyFailed(Exception):
    """The copy does not match its source (size or signatures)."""


def copy_verified(source: Path, folder: Path, name: str) -> int:
    """(On a worker thread.) Copy `source` into `folder/name` durably and checked;
    returns the bytes copied. Raises CopyFailed or OSError (nothing left behind)."""
    staging = folder / f"{STAGING_PREFIX}{name}"
    size = source.stat().st_size
    try:
        shutil.copyfile(source, staging)  # the kernel's copy (copy_file_range, sendfile)
        with staging.open("rb") as copy:
            os.fsync(copy.fileno())
            copied = os.fstat(copy.fileno()).st_size
            head = copy.read(_SIGNATURE)
            copy.seek(max(copied - _SIGNATURE, 0))
            tail = copy.read(_SIGNATURE)
        if copied != size or head != POD5_SIGNATURE or tail != POD5_SIGNATURE:
            msg = f"the copy of {source} has {copied} bytes of {size}, or no POD5 signature"
            raise CopyFailed(msg)
        staging.replace(folder / name)
        fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise
    return size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def staged_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total


class RunStager:
    """One run's staging: what waits to be copied, copying, removing done copies."""

    def __init__(
        self,
        folder: Path,
        *,
        worker: ThreadPoolExecutor,
        deliver: Callable[[str], None],
        max_bytes: int = 0,
        keep: bool = False,
    ) -> None:
        self.folder = folder
        self._worker = worker
        self._deliver = deliver  # a staged name: the coordinator hears of it
        self.max_bytes = max_bytes
        self.keep = keep
        self.waiting: dict[str, Path] = {}  # name -> its source, to be staged
        self._copying = False
        self.copied = 0
        self.copied_bytes = 0
        self.copy_seconds = 0.0

    def offer(self, name: str, source: Path) -> None:
        """A file of the run was seen (complete or not: the copy checks); stage it."""
        if not (self.folder / name).exists():
            self.waiting[name] = source

    async def run_once(self, skip: Callable[[str], bool]) -> None:
        """Copy what waits, one at a time, within the space bound. `skip(name)`: a file
        the coordinator has done already (never copied again)."""
        if self._copying:
            return
        self._copying = True
        loop = asyncio.get_running_loop()
        try:
            for name, source in list(self.waiting.items()):
                if skip(name):
                    self.waiting.pop(name, None)
                    continue
                complete = await loop.run_in_executor(self._worker, check_pod5, source)
                if complete is None or not complete.complete:
                    continue  # still being written (or gone): offered again later
                if self.max_bytes:
                    used = await loop.run_in_executor(self._worker, staged_bytes, self.folder)
                    size = await loop.run_in_executor(self._worker, _size, source)
                    # one file always fits when nothing is staged: no file waits for ever
                    if used and used + size > self.max_bytes:
                        log.debug("staging_full", folder=str(self.folder), staged_bytes=used)
                        return
                began = time.perf_counter()
                try:
                    size = await loop.run_in_executor(
                        self._worker, copy_verified, source, self.folder, name
                    )
                except (OSError, CopyFailed) as exc:
                    log.warning("staging_failed", name=name, source=str(source), detail=str(exc))
                    continue
                self.copy_seconds += time.perf_counter() - began
                self.copied += 1
                self.copied_bytes += size
                self.waiting.pop(name, None)
                self._deliver(name)
        finally:
            self._copying = False

    async def remove_done(self, done: set[str]) -> int:
        """Remove the copies of these files, which are done (unless `keep`); how many.
        (The names are the coordinator's, taken on the loop; the removing is not.)"""
        if self.keep or not done:
            return 0

        def remove() -> int:
            removed = 0
            for name in done:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / name).unlink()
                    removed += 1
            return removed

        return await asyncio.get_running_loop().run_in_executor(self._worker, remove)
