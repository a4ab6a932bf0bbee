"""The worker process that reads jobs' outputs: replaced when it dies, gone when the
service goes, whatever way the service goes (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reactor.serve.read_worker import ReadWorker
from tests.support.paths import REPO

# A service stand-in: starts its worker on a first (empty) job, says the worker's pid,
# then waits to be killed.
SERVICE = """
import asyncio, os, sys, time
from reactor.serve.read_worker import ReadWorker

async def main():
    worker = ReadWorker()
    loop = asyncio.get_running_loop()
    pid = await loop.run_in_executor(worker._executor(), os.getpid)
    print(pid, flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: its parent (init) reaps it
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_worker_dies_when_the_service_is_killed(tmp_path: Path) -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert service.stdout is not None
        worker_pid = int(service.stdout.readline())
        assert alive(worker_pid)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker_pid), "the worker outlived the service"
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=10)
        if service.stdout is not None:
            service.stdout.close()


async def test_a_worker_that_dies_is_replaced_and_the_job_read(tmp_path: Path) -> None:
    """A worker killed under a job: the job is tried again in a new worker."""
    from reactor.disk.read_requests import SplitRequest

    output = tmp_path / "output"
    (output / "TMPOUTPUT_1_e" / "pass").mkdir(parents=True)
    (output / "TMPOUTPUT_1_e" / "pass" / "a.fastq").write_text("@r1\tqs:f:12\nACGT\n+\nIIII\n")
    worker = ReadWorker()
    try:
        request = SplitRequest(str(output), "TMPOUTPUT_1_e", "job_id_1_", (), 10.0)
        first = await worker.split(request)
        pool = worker._executor()
        for process in list(pool._processes.values()):  # the worker, killed under us
            process.kill()
            process.join(10)
        again = await worker.split(request)
        assert (first.reads.records, again.reads.records) == (1, 1)
        assert worker._executor() is not pool, "a new pool took the broken one's place"
    finally:
        worker.close()


async def test_a_gzip_bomb_fails_its_job_in_the_worker_not_the_host(tmp_path: Path) -> None:
    """An engine's output that decompresses to more than the worker may hold (one read of
    a gigabyte): the job fails with MemoryError in the worker, which goes on serving."""
    import gzip

    from reactor.disk.read_requests import SplitRequest

    output = tmp_path / "output"
    (output / "TMPOUTPUT_1_e" / "pass").mkdir(parents=True)
    member = gzip.compress(b"A" * (64 << 20), compresslevel=1)  # 64 MiB of bases
    with (output / "TMPOUTPUT_1_e" / "pass" / "bomb.fastq.gz").open("wb") as bomb:
        bomb.write(gzip.compress(b"@r1\tqs:f:12\n"))
        for _ in range(16):  # one sequence line of 1 GiB, 1 MB on disk
            bomb.write(member)
    (output / "TMPOUTPUT_2_e" / "pass").mkdir(parents=True)
    (output / "TMPOUTPUT_2_e" / "pass" / "a.fastq").write_text("@r2\tqs:f:12\nACGT\n+\nIIII\n")
    worker = ReadWorker(1, memory_bytes=2560 << 20)  # a worker takes ~1.5 GB at rest
    try:
        with pytest.raises(MemoryError):
            await worker.split(SplitRequest(str(output), "TMPOUTPUT_1_e", "job_id_1_", (), 9.0))
        fine = await worker.split(SplitRequest(str(output), "TMPOUTPUT_2_e", "job_id_2_", (), 9.0))
        assert fine.reads.records == 1
    finally:
        worker.close()
