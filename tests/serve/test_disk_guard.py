"""The sequencer protected: below `min_free_percent` on the output filesystem (a real,
small tmpfs here), no work is handed out; free space back, work resumes by itself, and
every file ends up done once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR
from reactor.settings.serve import ServeConfig
from tests.support.api import AiohttpClient
from tests.support.pod5files import write_pod5

TMPFS_BYTES = 4 * 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: the output filesystem of this run."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_below_the_floor_no_work_goes_out_and_it_resumes_by_itself(
    aiohttp_client: AiohttpClient, tmp_path: Path, small_disk: Path
) -> None:
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    names = [f"PAK00000_pass_abc_def_{i}.pod5" for i in range(3)]
    for i, name in enumerate(names):
        write_pod5(input_dir / name, n_reads=1, seed=i)
    config = ServeConfig(input_dir=input_dir, output_dir=small_disk, min_free_percent=50)
    app: web.Application = create_app(config, watch=False, sweep=False)
    client = await aiohttp_client(app)
    reactor = app[REACTOR]
    assert reactor.paused is None

    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (TMPFS_BYTES * 6 // 10))  # 40 % free: below 50 %
    await reactor.check_space()
    answer = await (await client.get("/assignwork?engineid=gpu1&batchsize=3")).json()
    assert answer["jobid"] == "-1", "nothing handed out while the disk is low"
    status = await (await client.get("/status")).json()
    assert "below min_free_percent (50 %)" in status["paused"]
    assert status["files"]["ready"] == 3
    metrics = await (await client.get("/metrics")).text()
    assert "reactor_assigning_paused 1.0" in metrics

    ballast.unlink()
    await reactor.check_space()
    assert reactor.paused is None
    done = 0
    while (job := await (await client.get("/assignwork?engineid=gpu1&batchsize=3")).json())[
        "jobid"
    ] != "-1":
        out = small_disk / job["job_output_dir"] / "pass"
        for name in job["batch"]:
            (out / f"{name.removesuffix('.pod5')}.fastq").write_text("@r\nA\n+\n!\n")
        reply = await client.get(f"/completed?job_id={job['jobid']}&job_state=DONE")
        assert reply.status == 200
        done += len(job["batch"])
    assert done == 3
    merged = sorted(path.name for path in (small_disk / "pass").iterdir())
    assert len(merged) == 3
    for name in names:  # each file's output merged once
        assert sum(m.endswith(f"_{name.removesuffix('.pod5')}.fastq") for m in merged) == 1
    assert (await (await client.get("/status")).json())["files"]["done"] == 3
