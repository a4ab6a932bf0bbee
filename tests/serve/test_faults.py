"""Storage faults, injected for real where the machine allows it.

The output folder lives on a small tmpfs mounted by the test (root only): filled up, it
answers ENOSPC; remounted read-only, EROFS. The service must answer a JSON 503, lose
nothing already basecalled, and carry on by itself once the fault clears. Faults that
cannot be made for real (an error between two journal steps) go through the journal's
checkpoint hook. Also: a `.pod5` symlink leading outside INPUTDIR, pass/ removed by hand,
and a `.pod5` deleted while its job runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from reactor.core.state import FileState
from reactor.disk.journal import Journal
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from tests.support.pod5files import write_pod5
from tests.support.runs import ManualClock, RunDirs
from tests.support.tools import require_tool, skip_for_missing_tool

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def small_output(tmp_path: Path) -> Iterator[RunDirs]:
    """A run whose OUTPUTDIR is a 1 MiB tmpfs of its own."""
    require_tool(
        shutil.which("mount") is not None, "`mount` mounts the tmpfs (Debian: package mount)"
    )
    require_tool(os.geteuid() == 0, "mounting a tmpfs needs root")
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(output_dir)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        skip_for_missing_tool(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        yield RunDirs(input_dir, output_dir)
    finally:
        subprocess.run(["umount", "-l", str(output_dir)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full; return it."""
    filler = folder / "filler.bin"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    with pytest.raises(OSError) as full:
        (folder / "probe").write_bytes(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC
    (folder / "probe").unlink(missing_ok=True)
    return filler


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, timeout=10)


async def call(client: Client, path: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(path, params=params)
    body = await response.json()
    assert response.status == status, body
    return body


async def start(aiohttp_client: AiohttpClient, dirs: RunDirs, **kw: Any) -> Client:
    # No grace: these tests see the 503 a longer fault ends in (the ride-out is below).
    config = dirs.config(report_back_interval=60.0, storage_grace=0.0)
    return await aiohttp_client(create_app(config, watch=False, sweep=False, **kw))


def write_outputs(dirs: RunDirs, job: dict[str, Any]) -> None:
    out = dirs.output_dir / job["job_output_dir"] / "pass"
    for name in job["batch"]:
        (out / f"{name.removesuffix('.pod5')}.fastq").write_text("@r\nA\n+\n!\n")


def merged(dirs: RunDirs) -> list[str]:
    return sorted(os.listdir(dirs.output_dir / "pass"))


async def test_full_output_disk_answers_503_and_resumes_when_space_returns(
    aiohttp_client: AiohttpClient, small_output: RunDirs
) -> None:
    dirs = small_output
    for i in range(3):
        write_pod5(dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    client = await start(aiohttp_client, dirs)
    job = await call(client, "/assignwork", engineid="e", batchsize=2)
    write_outputs(dirs, job)
    filler = fill(dirs.output_dir)
    body = await call(client, "/completed", 503, job_id=job["jobid"], job_state="DONE")
    assert body["error"] == "storage_unavailable"
    assert (await call(client, "/assignwork", 503, engineid="e", batchsize=1))["error"] == (
        "storage_unavailable"
    )
    # the failed assign left nothing: no staged folder of links, in or beside the staging folder
    staged = [
        *dirs.input_dir.glob(".reactor-staging-*/*"),
        *dirs.input_dir.glob(".reactor-staging-[0-9]*"),
    ]
    assert staged == []
    filler.unlink()
    assert await call(client, "/completed", job_id=job["jobid"], job_state="DONE") == {"ok": True}
    assert len(merged(dirs)) == 2
    assert (await call(client, "/assignwork", engineid="e", batchsize=1))["batch_size"] == 1


async def test_read_only_output_answers_503_and_resumes_when_writable(
    aiohttp_client: AiohttpClient, small_output: RunDirs
) -> None:
    dirs = small_output
    write_pod5(dirs.input_dir / "f.pod5", n_reads=1, seed=1)
    client = await start(aiohttp_client, dirs)
    job = await call(client, "/assignwork", engineid="e", batchsize=1)
    write_outputs(dirs, job)
    remount(dirs.output_dir, "ro")
    try:
        await call(client, "/completed", 503, job_id=job["jobid"], job_state="DONE")
        assert client.server.app[REACTOR].state.jobs[job["jobid"]].live
    finally:
        remount(dirs.output_dir, "rw")
    await call(client, "/completed", job_id=job["jobid"], job_state="DONE")
    assert merged(dirs) == [f"job_id_{job['jobid']}_f.fastq"]


class FailOnce:
    """A journal checkpoint that raises an OSError (EIO) the first time `step` is reached."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.fired = False

    def __call__(self, step: str) -> None:
        if step == self.step and not self.fired:
            self.fired = True
            raise OSError(errno.EIO, "injected I/O error")


@pytest.mark.parametrize("step", ["merge:decided", "merge:output_moved", "merge:logged"])
async def test_io_error_between_merge_steps_is_finished_by_the_retry(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, step: str
) -> None:
    """An I/O error after any step of a merge: the DONE was decided (200, the files are
    done) and the job is held with the reason; the engine's repeated DONE carries on with
    what is left, every output merged exactly once, and the job is no longer held."""
    for i in range(2):
        write_pod5(run_dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    config = run_dirs.config(storage_grace=0.0)
    fault = FailOnce(step)
    journal = Journal(config.input_dir, config.output_dir, fault)
    client = await aiohttp_client(create_app(config, watch=False, sweep=False, journal=journal))
    job = await call(client, "/assignwork", engineid="e", batchsize=2)
    write_outputs(run_dirs, job)
    assert await call(client, "/completed", job_id=job["jobid"], job_state="DONE") == {"ok": True}
    assert fault.fired
    state = client.server.app[REACTOR].state
    assert [j.job_id for j in state.held_jobs()] == [job["jobid"]]
    assert (await call(client, "/status"))["files"]["done"] == 2
    await call(client, "/completed", job_id=job["jobid"], job_state="DONE")
    assert list(state.held_jobs()) == []
    assert merged(run_dirs) == sorted(f"job_id_{job['jobid']}_f{i}.fastq" for i in range(2))
    assert not (run_dirs.input_dir / job["job_input_dir"]).exists()
    status = await call(client, "/status")
    assert status["files"]["done"] == 2


class FailTimes:
    """A journal checkpoint that raises EIO the first `times` times `step` is reached."""

    def __init__(self, step: str, times: int) -> None:
        self.step = step
        self.left = times

    def __call__(self, step: str) -> None:
        if step == self.step and self.left > 0:
            self.left -= 1
            raise OSError(errno.EIO, "injected I/O error")


@pytest.mark.parametrize(
    ("path", "step", "times"),
    [
        ("/assignwork", "assign:output_placed", 3),
        # after the commit a retry carries on with what is left, so each of these is
        # reached again at most once
        ("/completed", "merge:decided", 1),
        ("/completed", "merge:output_moved", 1),
        ("/completed", "merge:logged", 1),
    ],
)
async def test_a_short_storage_hiccup_is_ridden_out_inside_the_request(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, path: str, step: str, times: int
) -> None:
    """Seed engines give up on a 503: I/O errors within storage_grace are retried inside
    the request, which answers 200, with every output merged once."""
    for i in range(2):
        write_pod5(run_dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    config = run_dirs.config(storage_grace=5.0)
    fault = FailTimes(step, times)
    journal = Journal(config.input_dir, config.output_dir, fault)
    client = await aiohttp_client(create_app(config, watch=False, sweep=False, journal=journal))
    with capture_logs() as logs:
        job = await call(client, "/assignwork", engineid="e", batchsize=2)
        write_outputs(run_dirs, job)
        assert await call(client, "/completed", job_id=job["jobid"], job_state="DONE") == {
            "ok": True
        }
    assert fault.left == 0
    assert merged(run_dirs) == sorted(f"job_id_{job['jobid']}_f{i}.fastq" for i in range(2))
    recovered = [e for e in logs if e["event"] == "storage_recovered"]
    assert [(e["path"], e["attempts"]) for e in recovered] == [(path, times + 1)]
    assert not [e for e in logs if e["event"] == "journal_error"]


@pytest.mark.parametrize("step", ["release:decided", "release:output_kept"])
async def test_io_error_between_release_steps_is_finished_by_the_retry(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, step: str
) -> None:
    """An I/O error after a step of a release: the release was decided (200, the files
    ready again with nothing counted) and the job is held; the engine's repeated report
    finishes it: outputs aside, links gone."""
    for i in range(2):
        write_pod5(run_dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    config = run_dirs.config(storage_grace=0.0)
    fault = FailOnce(step)
    journal = Journal(config.input_dir, config.output_dir, fault)
    client = await aiohttp_client(create_app(config, watch=False, sweep=False, journal=journal))
    job = await call(client, "/assignwork", engineid="e", batchsize=2)
    write_outputs(run_dirs, job)
    await call(client, "/completed", job_id=job["jobid"], job_state="RELEASED")
    assert fault.fired
    state = client.server.app[REACTOR].state
    assert not state.jobs[job["jobid"]].live
    assert [j.job_id for j in state.held_jobs()] == [job["jobid"]]
    await call(client, "/completed", job_id=job["jobid"], job_state="RELEASED")
    assert list(state.held_jobs()) == []
    kept = run_dirs.output_dir / f"RELEASEDOUTPUT_{job['jobid']}_e"
    assert sorted(os.listdir(kept / "pass")) == ["f0.fastq", "f1.fastq"]
    assert not (run_dirs.input_dir / job["job_input_dir"]).exists()
    assert not (run_dirs.output_dir / job["job_output_dir"]).exists()
    assert merged(run_dirs) == []
    status = await call(client, "/status")
    assert status["files"]["ready"] == 2
    again = await call(client, "/assignwork", engineid="f", batchsize=2)
    assert again["batch"] == ["f0.pod5", "f1.pod5"]


async def test_symlink_leading_outside_the_input_folder_is_refused(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, tmp_path: Path
) -> None:
    """A .pod5 that is a link to a file outside INPUTDIR is never handed out (logged once);
    a link to a file inside INPUTDIR is fine."""
    outside = tmp_path / "elsewhere.pod5"
    write_pod5(outside, n_reads=1, seed=1)
    (run_dirs.input_dir / "sneaky.pod5").symlink_to(outside)
    (run_dirs.input_dir / "sub").mkdir()
    write_pod5(run_dirs.input_dir / "sub" / "real.pod5", n_reads=1, seed=2)
    (run_dirs.input_dir / "inside.pod5").symlink_to(Path("sub") / "real.pod5")
    with capture_logs() as logs:
        client = await start(aiohttp_client, run_dirs)
        client.server.app[REACTOR].reconcile("test")
    job = await call(client, "/assignwork", engineid="e", batchsize=5)
    assert job["batch"] == ["inside.pod5"]
    refused = [e for e in logs if e["event"] == "file_refused"]
    assert [(e["name"], e["reason"]) for e in refused] == [("sneaky.pod5", "symlink_outside_input")]


async def test_pass_folder_removed_by_hand_is_recreated_and_merges_go_on(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, tmp_path: Path
) -> None:
    for i in range(2):
        write_pod5(run_dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    client = await start(aiohttp_client, run_dirs)
    first = await call(client, "/assignwork", engineid="e", batchsize=1)
    write_outputs(run_dirs, first)
    await call(client, "/completed", job_id=first["jobid"], job_state="DONE")
    (run_dirs.output_dir / "pass").rename(tmp_path / "pass-moved-away")
    with capture_logs() as logs:
        await client.server.app[SWEEPER].sweep_once(client.server.app[REACTOR].clock())
    assert "results_folder_recreated" in [e["event"] for e in logs]
    assert (run_dirs.output_dir / "pass").is_dir()
    second = await call(client, "/assignwork", engineid="e", batchsize=1)
    write_outputs(run_dirs, second)
    await call(client, "/completed", job_id=second["jobid"], job_state="DONE")
    assert merged(run_dirs) == [f"job_id_{second['jobid']}_f1.fastq"]
    assert os.listdir(tmp_path / "pass-moved-away") == [f"job_id_{first['jobid']}_f0.fastq"]


@pytest.mark.parametrize(("outcome", "after"), [("DONE", FileState.DONE), ("FAILED", None)])
async def test_pod5_deleted_while_assigned(
    aiohttp_client: AiohttpClient,
    run_dirs: RunDirs,
    clock: ManualClock,
    outcome: str,
    after: FileState | None,
) -> None:
    """Deleted while its job runs: a DONE still counts it done (the engine had read it);
    a FAILED does not queue it again (there is nothing left to read)."""
    write_pod5(run_dirs.input_dir / "f.pod5", n_reads=1, seed=1)
    config = run_dirs.config()
    client = await aiohttp_client(create_app(config, clock=clock, sweep=False))
    reactor = client.server.app[REACTOR]
    job = await call(client, "/assignwork", engineid="e", batchsize=1)
    write_outputs(run_dirs, job)
    (run_dirs.input_dir / "f.pod5").unlink()
    reactor.reconcile("test")  # as the watcher's GONE event would
    assert reactor.state.files["f.pod5"].present is False
    await call(client, "/completed", job_id=job["jobid"], job_state=outcome)
    assert reactor.state.state_of("f.pod5") is after
    assert (await call(client, "/assignwork", engineid="e", batchsize=1))["batch"] == []
