"""Hostile and unlucky engines, through the real app on real folders.

An engine writes its job's `TMPOUTPUT_…` as it likes: links where folders should be,
links, hard links, FIFOs and devices among its outputs, names no file system path should
carry, a hundred thousand files, records of its own; it removes or locks its folder, or
mounts something over it. Each case ends the same way:

(a) nothing outside the job's own folders was touched: a picture (kind, mode, size,
    mtime, link count, link target) of INPUTDIR (other jobs' `ASSIGNED_…` included),
    the other jobs' output folders, `pass/`, `fail/` and a canary folder outside the run
    is the same before and after the report;
(b) the job is refused or held, with a reason that names what was found;
(c) a well-behaved job assigned at the same time completes and merges normally;
(d) every read is basecalled exactly once by the end of the run: the refused job's files
    come back (at the front, nothing counted) and are basecalled by another engine, and
    `tests.support.exactly_once` recounts every read of every `.pod5`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from reactor.disk.journal import Journal
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from tests.support.hostile import CANARY_READ, Scene, Untouched, add_pod5, fastq, make_canary
from tests.support.records import job_record, job_records
from tests.support.runs import ManualClock, RunDirs
from tests.support.tools import require_tool, skip_for_missing_tool

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
LEASE_S = 30.0
BATCH = 2


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return make_canary(tmp_path)


@pytest.fixture
def start(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> Callable[..., Awaitable[Scene]]:
    """`files` `.pod5` files, then the app on `run_dirs` with the manual clock, no
    watcher, no background sweeper; `checkpoint` goes to the journal; keywords are
    settings."""

    async def make(
        checkpoint: Callable[[str], None] | None = None, files: int = 9, **settings: Any
    ) -> Scene:
        add_pod5(run_dirs.input_dir, files)
        settings.setdefault("report_back_interval", LEASE_S)
        settings.setdefault("storage_grace", 0.2)
        config = run_dirs.config(**settings)
        journal = None
        if checkpoint is not None:
            journal = Journal(config.input_dir, config.output_dir, checkpoint=checkpoint)
        app = create_app(config, clock=clock, watch=False, sweep=False, journal=journal)
        return Scene(await aiohttp_client(app), run_dirs.input_dir, run_dirs.output_dir)

    return make


@dataclass
class Jobs:
    """Three jobs of one run: one merged before the trouble, the one in trouble, and a
    well-behaved one assigned at the same time and not reported yet."""

    early: dict[str, Any]
    rogue: dict[str, Any]
    good: dict[str, Any]


async def three_jobs(scene: Scene) -> Jobs:
    """An early job merged; then a rogue job and a good one, both basecalled properly
    (the rogue's mischief comes after) and not reported yet."""
    early = await scene.basecalled("early", BATCH)
    rogue = await scene.assign("rogue", BATCH)
    good = await scene.assign("good", BATCH)
    scene.basecall(rogue)
    scene.basecall(good)
    return Jobs(early, rogue, good)


async def the_rest_exactly_once(scene: Scene, jobs: Jobs, *, refused: bool) -> None:
    """(c) and (d): the good job merges normally; a refused job's files come back first,
    at their first attempt again, to another engine; every remaining file is basecalled
    by a well-behaved engine, and every read of the run is in pass/ + fail/ exactly once."""
    good = jobs.good
    assert await scene.report(good) == {"ok": True}
    tag = f"job_id_{good['jobid']}_"
    merged = {
        path.name.removeprefix(tag).removesuffix(".fastq")
        for kind in ("pass", "fail")
        for path in (scene.output_dir / kind).glob(f"{tag}*.fastq")
    }
    assert merged == {name.removesuffix(".pod5") for name in good["batch"]}
    assert job_record(scene.output_dir, good["jobid"])["state"] == "done"
    assert not scene.out(good).exists()
    assert scene.out(good, "LOGOUTPUT").is_dir()
    if refused:
        again = await scene.assign("other", BATCH)
        assert again["batch"] == jobs.rogue["batch"], "refused files go back to the front"
        assert job_record(scene.output_dir, again["jobid"])["files"] == dict.fromkeys(
            jobs.rogue["batch"], 1
        ), "nothing was counted against the refused files"
        scene.basecall(again)
        assert await scene.report(again) == {"ok": True}
    await scene.finish_run()
    verdict = scene.recount()
    assert verdict.ok, verdict
    assert verdict.files == 9


# ----------------------------------------------------------------- mischief


def pass_link_to_input(scene: Scene, out: Path, canary: Path) -> None:
    shutil.rmtree(out / "pass")
    (out / "pass").symlink_to(scene.input_dir)


def pass_a_file(scene: Scene, out: Path, canary: Path) -> None:
    shutil.rmtree(out / "pass")
    (out / "pass").write_text(fastq(["not-a-folder"]))


def output_folder_link_to_input(scene: Scene, out: Path, canary: Path) -> None:
    shutil.rmtree(out)
    out.symlink_to(scene.input_dir)


def output_folder_a_file(scene: Scene, out: Path, canary: Path) -> None:
    shutil.rmtree(out)
    out.write_text("an engine put a file here\n")


def output_folder_gone(scene: Scene, out: Path, canary: Path) -> None:
    shutil.rmtree(out)


def link_leading_out(scene: Scene, out: Path, canary: Path) -> None:
    (out / "pass" / "more.fastq").symlink_to(canary / "secret.fastq")


def link_to_an_input(scene: Scene, out: Path, canary: Path) -> None:
    last = sorted(scene.input_dir.glob("*.pod5"))[-1]
    (out / "fail" / "input.fastq").symlink_to(last)


def hard_link_leading_out(scene: Scene, out: Path, canary: Path) -> None:
    os.link(canary / "secret.fastq", out / "pass" / "more.fastq")


def hard_link_to_an_input(scene: Scene, out: Path, canary: Path) -> None:
    last = sorted(scene.input_dir.glob("*.pod5"))[-1]
    os.link(last, out / "pass" / "input.fastq")


def fifo(scene: Scene, out: Path, canary: Path) -> None:
    os.mkfifo(out / "pass" / "reads.fastq")


def char_device(scene: Scene, out: Path, canary: Path) -> None:
    require_tool(os.geteuid() == 0, "making a device node needs root")
    try:
        os.mknod(out / "pass" / "null.fastq", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this container may not make device nodes (no CAP_MKNOD)")


def unix_socket(scene: Scene, out: Path, canary: Path) -> None:
    # A socket's path must fit in 108 bytes: bind it by a relative name from its folder.
    with contextlib.chdir(out / "pass"), socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock.fastq")


def a_folder(scene: Scene, out: Path, canary: Path) -> None:
    (out / "pass" / "more").mkdir()
    (out / "pass" / "more" / "x.fastq").write_text(fastq(["in-a-folder"]))


def a_newline(scene: Scene, out: Path, canary: Path) -> None:
    (out / "pass" / "evil\nname.fastq").write_text(fastq(["newline-read"]))


def a_hidden_name(scene: Scene, out: Path, canary: Path) -> None:
    (out / "fail" / ".hidden.fastq").write_text(fastq(["hidden-read"]))


def a_long_name(scene: Scene, out: Path, canary: Path) -> None:
    # 250 bytes fit one path component, but not behind the tag `job_id_<jobid>_`.
    name = "x" * 244 + ".fastq"
    assert len(name.encode()) == 250
    (out / "pass" / name).write_text(fastq(["long-name-read"]))


def outputs(count: int) -> Callable[[Scene, Path, Path], None]:
    def too_many(scene: Scene, out: Path, canary: Path) -> None:
        have = sum(len(os.listdir(out / kind)) for kind in ("pass", "fail"))
        for i in range(count - have):
            (out / "pass" / f"empty-{i:06d}.fastq").touch()
        assert sum(len(os.listdir(out / kind)) for kind in ("pass", "fail")) == count

    return too_many


# One over the limit (10,000) crosses it; 100,000 (the count the issue tried) is refused
# the same way, on the count of names alone, without examining any of them.
too_many = outputs(10_001)
far_too_many = outputs(100_000)


Mischief = Callable[[Scene, Path, Path], None]
REFUSALS = [
    pytest.param(
        pass_link_to_input, "/pass is a link or a file, not a folder", id="pass-link-to-input"
    ),
    pytest.param(pass_a_file, "/pass is a link or a file, not a folder", id="pass-a-file"),
    pytest.param(
        output_folder_link_to_input, "is a link or a file, not a folder", id="folder-link-to-input"
    ),
    pytest.param(output_folder_a_file, "is a link or a file, not a folder", id="folder-a-file"),
    pytest.param(output_folder_gone, "is gone", id="folder-gone"),
    pytest.param(link_leading_out, "/pass/'more.fastq' is a symbolic link", id="link-out"),
    pytest.param(link_to_an_input, "/fail/'input.fastq' is a symbolic link", id="link-to-input"),
    pytest.param(hard_link_leading_out, "/pass/'more.fastq' is a hard link", id="hard-link-out"),
    pytest.param(
        hard_link_to_an_input, "/pass/'input.fastq' is a hard link", id="hard-link-to-input"
    ),
    pytest.param(fifo, "/pass/'reads.fastq' is not a regular file", id="fifo"),
    pytest.param(char_device, "/pass/'null.fastq' is not a regular file", id="char-device"),
    pytest.param(unix_socket, "/pass/'sock.fastq' is not a regular file", id="socket"),
    pytest.param(a_folder, "/pass/'more' is a folder", id="folder"),
    pytest.param(
        a_newline, "/pass/'evil\\nname.fastq' is a name with control characters", id="newline"
    ),
    pytest.param(a_hidden_name, "/fail/'.hidden.fastq' is a hidden name", id="hidden"),
    pytest.param(a_long_name, "is a name too long to be merged", id="name-250-bytes"),
    pytest.param(too_many, "holds more than 10,000 outputs", id="10001-outputs"),
    pytest.param(far_too_many, "holds more than 10,000 outputs", id="100000-outputs"),
]


@pytest.mark.parametrize(("mischief", "reason"), REFUSALS)
async def test_a_done_whose_outputs_break_the_rules_is_refused_and_touches_nothing(
    start: Callable[..., Awaitable[Scene]], canary: Path, mischief: Mischief, reason: str
) -> None:
    scene = await start()
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    mischief(scene, scene.out(rogue), canary)
    watched = scene.untouched(canary, rogue)
    before = watched.take()

    body = await scene.report(rogue)

    # (a) nothing outside the rogue job's own folders changed
    watched.assert_same(before)
    # (b) refused: nothing merged, the job held with what was found
    assert (body["ok"], body["merged"]) == (True, False)
    assert reason in body["detail"]
    folder = f"TMPOUTPUT_{rogue['jobid']}_rogue"
    assert folder in body["detail"]
    (held,) = await scene.held()
    assert (held["job_id"], held["engine_id"], held["state"]) == (
        rogue["jobid"],
        "rogue",
        "refused",
    )
    assert held["reason"] == body["detail"]
    assert await scene.metric("reactor_jobs_held") == 1
    record = job_record(scene.output_dir, rogue["jobid"])
    assert (record["state"], record["reason"]) == ("refused", body["detail"])
    assert not scene.links(rogue).exists()
    kept = scene.out(rogue, "REFUSEDOUTPUT")
    assert os.path.lexists(kept) == (mischief is not output_folder_gone)
    assert not os.path.lexists(scene.out(rogue))
    engine = scene.client.server.app[REACTOR].state.engines["rogue"]
    assert (engine.jobs_failed, engine.failure_streak) == (1, 1), "counted toward its bench"
    files = (await scene.status())["files"]
    assert (files["ready"], files["assigned"], files["done"]) == (5, 2, 2)
    # a repeated DONE is answered the same way and changes nothing
    assert await scene.report(rogue) == body
    watched.assert_same(before)
    # a restart with what the engine left: the job still held with its reason, nothing
    # touched, the good job still live
    scene = await restarted(scene, start)
    assert [(j["job_id"], j["state"], j["reason"]) for j in await scene.held()] == [
        (rogue["jobid"], "refused", body["detail"])
    ]
    watched.assert_same(before)
    assert (await scene.status())["files"] == files
    # (c) and (d)
    await the_rest_exactly_once(scene, jobs, refused=True)
    assert [j["job_id"] for j in await scene.held()] == [rogue["jobid"]]
    assert (canary / "secret.fastq").read_text() == fastq([CANARY_READ])


async def test_ten_thousand_outputs_are_still_merged(
    start: Callable[..., Awaitable[Scene]], canary: Path
) -> None:
    """The limit is inclusive: a job with exactly 10,000 outputs is merged."""
    scene = await start()
    jobs = await three_jobs(scene)
    out = scene.out(jobs.rogue)
    have = sum(len(os.listdir(out / kind)) for kind in ("pass", "fail"))
    for i in range(10_000 - have):
        (out / "fail" / f"empty-{i:05d}.fastq").touch()
    assert await scene.report(jobs.rogue) == {"ok": True}
    assert len(os.listdir(scene.output_dir / "fail")) >= 10_000 - have
    assert await scene.held() == []
    await the_rest_exactly_once(scene, jobs, refused=False)


# ------------------------------------------------------- records of its own


def claim(scene: Scene, job: dict[str, Any], state: str, **extra: Any) -> dict[str, Any]:
    """A record as earlier versions of reactor kept it in the job's folder (format 1),
    claiming `state` for every `.pod5` of the run."""
    return {
        "format": 1,
        "job_id": job["jobid"],
        "engine_id": job["bc_engine_id"],
        "state": state,
        "files": {path.name: 1 for path in sorted(scene.input_dir.glob("*.pod5"))},
        "assigned_at": 0.0,
        "decided_at": 1.0,
        "engine_state": "DONE",
        "requeue": [],
        "quarantine": [],
        **extra,
    }


async def restarted(scene: Scene, start: Callable[..., Awaitable[Scene]], **settings: Any) -> Scene:
    await scene.client.close()
    return await start(files=0, **settings)


async def picture(scene: Scene) -> dict[str, Any]:
    """What the run's state is, as /status shows it."""
    status = await scene.status()
    return {
        "files": status["files"],
        "live": sorted((job["job_id"], job["engine_id"]) for job in status["jobs"]["live"]),
        "held": status.get("held"),  # (earlier versions had none)
        "quarantined": status["quarantined"],
    }


async def test_a_record_planted_in_the_job_folder_and_in_pass_is_never_believed(
    start: Callable[..., Awaitable[Scene]], canary: Path, run_dirs: RunDirs
) -> None:
    """`reactor-job.json` saying "done" for every file of the run, in the job's folder and
    in its pass/: after a restart the run's state still comes from `.reactor/` alone (the
    job live, nothing else done); at DONE the one in pass/ is merged as an ordinary output
    and the other stays with the job's leftovers; after another restart nothing changed."""
    scene = await start()
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    out = scene.out(rogue)
    planted = json.dumps(claim(scene, rogue, "done"))
    in_pass = json.dumps({**claim(scene, rogue, "done"), "format": 2, "outputs": []})
    (out / "reactor-job.json").write_text(planted)
    (out / "pass" / "reactor-job.json").write_text(in_pass)
    before = await picture(scene)
    records = sorted(json.dumps(r, sort_keys=True) for r in job_records(run_dirs.output_dir))
    assert before["files"]["done"] == 2
    watched = scene.untouched(canary)  # every folder, the planted records included
    on_disk = watched.take()

    scene = await restarted(scene, start)
    assert await picture(scene) == before
    watched.assert_same(on_disk)
    assert sorted(json.dumps(r, sort_keys=True) for r in job_records(run_dirs.output_dir)) == (
        records
    )

    assert await scene.report(rogue) == {"ok": True}
    tag = f"job_id_{rogue['jobid']}_"
    assert (scene.output_dir / "pass" / f"{tag}reactor-job.json").read_text() == in_pass
    assert (scene.out(rogue, "LOGOUTPUT") / "reactor-job.json").read_text() == planted
    after_done = await picture(scene)
    assert after_done["files"]["done"] == 4

    scene = await restarted(scene, start)
    assert await picture(scene) == after_done
    await the_rest_exactly_once(scene, jobs, refused=False)


TAMPERINGS = {
    "done": {"state": "done"},
    "failed-quarantine": {"state": "failed", "quarantine": "*"},
    "released": {"state": "released"},
    "unknown": {"state": "unknown", "engine_state": "WHATEVER"},
    "expired-superseded": {"state": "expired", "superseded": True},
    "other-files": {"state": "assigned", "files": "others"},
    "format-2": {"format": 2, "state": "done", "outputs": []},
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
async def test_editing_a_legacy_record_in_the_job_folders_then_restarting_changes_nothing(
    start: Callable[..., Awaitable[Scene]], canary: Path, run_dirs: RunDirs, tampering: str
) -> None:
    """Earlier versions kept each job's record in its own folders; an engine edits one
    (for the live job's `TMPOUTPUT_…`, and for a finished job's `LOGOUTPUT_…`), then the
    service restarts: the run's state, its records and every folder are what they were,
    and the run ends with every read exactly once."""
    scene = await start()
    jobs = await three_jobs(scene)
    names = sorted(path.name for path in scene.input_dir.glob("*.pod5"))
    edit = dict(TAMPERINGS[tampering])
    if edit.get("quarantine") == "*":
        edit["quarantine"] = names
    if edit.get("files") == "others":
        edit["files"] = {name: 1 for name in names if name not in jobs.rogue["batch"]}
    for job, folder in ((jobs.rogue, "TMPOUTPUT"), (jobs.early, "LOGOUTPUT")):
        manifest = scene.out(job, folder) / "reactor-job.json"
        manifest.write_text(json.dumps(claim(scene, job, "done") | edit))
    before = await picture(scene)
    records = sorted(json.dumps(r, sort_keys=True) for r in job_records(run_dirs.output_dir))
    watched = scene.untouched(canary)  # every folder, the edited records included
    on_disk = watched.take()

    scene = await restarted(scene, start)

    assert await picture(scene) == before
    assert sorted(json.dumps(r, sort_keys=True) for r in job_records(run_dirs.output_dir)) == (
        records
    )
    watched.assert_same(on_disk)
    assert await scene.report(jobs.rogue) == {"ok": True}  # merged as any other job
    await the_rest_exactly_once(scene, jobs, refused=False)
    assert await scene.held() == []


# ----------------------------------------------------- folders gone or locked


async def test_a_folder_removed_before_done_then_failed_loses_no_file(
    start: Callable[..., Awaitable[Scene]], canary: Path
) -> None:
    """The engine removes its output folder, reports DONE (refused: nothing to merge),
    then changes its mind and reports FAILED. The FAILED changes nothing: it is answered
    200 (the refusal already sent the files back, with nothing counted against them),
    the job stays refused with its reason, the engine is counted once, and the files are
    basecalled by another engine, every read once."""
    scene = await start()
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    shutil.rmtree(scene.out(rogue))
    watched = scene.untouched(canary, rogue)
    before = watched.take()

    refused = await scene.report(rogue)
    assert (refused["merged"], refused["detail"]) == (
        False,
        f"its output folder TMPOUTPUT_{rogue['jobid']}_rogue is gone",
    )
    failed = await scene.report(rogue, "FAILED")
    released = await scene.report(rogue, "RELEASED")

    assert failed == released == {"ok": True}
    watched.assert_same(before)
    (held,) = await scene.held()
    assert (held["state"], held["reason"]) == ("refused", refused["detail"])
    assert job_record(scene.output_dir, rogue["jobid"])["state"] == "refused"
    engine = scene.client.server.app[REACTOR].state.engines["rogue"]
    assert (engine.jobs_failed, engine.jobs_released) == (1, 0)
    files = (await scene.status())["files"]
    assert (files["ready"], files["quarantined"]) == (5, 0)
    assert not list(scene.input_dir.glob("FAILED_*"))
    await the_rest_exactly_once(scene, jobs, refused=True)


@contextlib.contextmanager
def mounted(*commands: list[str], target: Path) -> Iterator[None]:
    """Run the mount `commands` (root), and unmount `target` whatever happens."""
    require_tool(shutil.which("mount") is not None, "`mount` (Debian: package mount)")
    require_tool(os.geteuid() == 0, "mounting needs root")
    try:
        for command in commands:
            done = subprocess.run(command, capture_output=True, check=False, timeout=10)
            if done.returncode != 0:
                skip_for_missing_tool(f"cannot mount here: {' '.join(command)}: {done.stderr!r}")
        yield
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, check=False, timeout=10)
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def read_only(folder: Path) -> contextlib.AbstractContextManager[None]:
    """`folder` made read-only by a read-only bind mount of itself (as root, modes do
    not stop a rename; a read-only mount does)."""
    return mounted(
        ["mount", "--bind", str(folder), str(folder)],
        ["mount", "-o", "remount,bind,ro", str(folder)],
        target=folder,
    )


async def sweep_with_reconcile(scene: Scene, clock: ManualClock) -> None:
    """One sweep with the periodic reconcile due (which retries the held jobs' steps)."""
    sweeper = scene.client.server.app[SWEEPER]
    clock.advance(sweeper.reconcile_interval_s + 0.1)
    await sweeper.sweep_once(clock.now)


@pytest.mark.parametrize("finish_by", ["repeated-done", "sweeper"])
async def test_an_output_folder_made_read_only_holds_the_job_until_it_can_be_merged(
    start: Callable[..., Awaitable[Scene]], canary: Path, clock: ManualClock, finish_by: str
) -> None:
    """The engine makes its output folder read-only, then reports DONE. Its outputs are
    fine, so the DONE is decided (200, its files done), but they cannot be moved: the job
    is held with the reason, nothing outside it touched, the other job merges. Once the
    folder is writable again, a repeated DONE or the periodic retry finishes the merge."""
    scene = await start(reconcile_interval=60.0)
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    out = scene.out(rogue)
    with read_only(out):
        with pytest.raises(OSError) as locked:
            (out / "probe").write_text("")
        assert locked.value.errno == errno.EROFS
        watched = scene.untouched(canary, rogue)
        before = watched.take()

        assert await scene.report(rogue) == {"ok": True}

        watched.assert_same(before)
        (held,) = await scene.held()
        assert (held["job_id"], held["state"]) == (rogue["jobid"], "done")
        # a rename out of a mount fails EXDEV before the kernel looks at read-only
        assert held["reason"] == (
            f"could not merge the outputs of TMPOUTPUT_{rogue['jobid']}_rogue: "
            f"{os.strerror(errno.EXDEV)}"
        )
        assert job_record(scene.output_dir, rogue["jobid"])["state"] == "done"
        assert (await scene.status())["files"]["done"] == 4  # the decision stands
        assert await scene.report(jobs.good) == {"ok": True}  # the others go on
        assert await scene.report(rogue) == {"ok": True}  # tried again: still held
        await sweep_with_reconcile(scene, clock)
        assert [job["job_id"] for job in await scene.held()] == [rogue["jobid"]]
    if finish_by == "repeated-done":
        assert await scene.report(rogue) == {"ok": True}
    else:
        await sweep_with_reconcile(scene, clock)
    assert await scene.held() == []
    assert scene.out(rogue, "LOGOUTPUT").is_dir()
    assert not scene.links(rogue).exists()
    await the_rest_exactly_once(scene, jobs, refused=False)


async def test_pass_on_another_filesystem_holds_the_job_and_the_decision_stands(
    start: Callable[..., Awaitable[Scene]], canary: Path, tmp_path: Path
) -> None:
    """The job's pass/ is a tmpfs: its outputs are fine, so the DONE is decided, then
    every rename fails (EXDEV). The job is held with the reason, the others go on. A
    person copies the outputs onto the run's filesystem; the repeated DONE merges them."""
    scene = await start()
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    passed = scene.out(rogue) / "pass"
    written = tmp_path / "written"
    shutil.move(passed, written)
    passed.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(passed)], target=passed):
        for path in written.iterdir():
            shutil.copy2(path, passed / path.name)
        watched = scene.untouched(canary, rogue)
        before = watched.take()

        assert await scene.report(rogue) == {"ok": True}

        watched.assert_same(before)
        (held,) = await scene.held()
        assert (held["job_id"], held["state"]) == (rogue["jobid"], "done")
        assert os.strerror(errno.EXDEV) in held["reason"]
        assert f"TMPOUTPUT_{rogue['jobid']}_rogue" in held["reason"]
        assert await scene.metric("reactor_jobs_held") == 1
        assert (await scene.status())["files"]["done"] == 4
        assert await scene.report(jobs.good) == {"ok": True}
        other = await scene.basecalled("other", BATCH)  # new work goes out and merges too
        assert (scene.output_dir / "pass").exists()
        assert scene.out(other, "LOGOUTPUT").is_dir()
        rescued = tmp_path / "rescued"
        shutil.copytree(passed, rescued)
    for path in rescued.iterdir():  # the tmpfs is gone: its outputs, copied back by hand
        shutil.copy2(path, passed / path.name)
    assert await scene.report(rogue) == {"ok": True}
    assert await scene.held() == []
    await the_rest_exactly_once(scene, jobs, refused=False)


class RemoveMidMerge:
    """A checkpoint that, once armed, removes the merging job's output folder after its
    first output was moved (keeping a copy, so a person can put it back)."""

    def __init__(self, stash: Path) -> None:
        self.stash = stash
        self.folder: Path | None = None
        self.fired = False

    def __call__(self, step: str) -> None:
        if step == "merge:output_moved" and self.folder is not None and not self.fired:
            self.fired = True
            shutil.copytree(self.folder, self.stash, symlinks=True)
            shutil.rmtree(self.folder)

    def put_back(self) -> None:
        assert self.folder is not None
        shutil.copytree(self.stash, self.folder, symlinks=True)


@pytest.mark.parametrize("finish_by", ["repeated-done", "sweeper", "restart"])
async def test_a_folder_removed_mid_merge_holds_the_job_until_it_is_put_back(
    start: Callable[..., Awaitable[Scene]],
    canary: Path,
    tmp_path: Path,
    clock: ManualClock,
    finish_by: str,
) -> None:
    """The engine removes its output folder while its outputs are being merged (after
    the first one moved). The DONE stands, the job is held saying what is missing, the
    others go on (a restart meanwhile holds it again); once the folder is put back, a
    repeated DONE, the periodic retry or the next start merges the rest, every read
    exactly once."""
    remover = RemoveMidMerge(tmp_path / "stash")
    scene = await start(checkpoint=remover, reconcile_interval=60.0)
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    remover.folder = scene.out(rogue)
    watched = scene.untouched(canary, rogue)
    before = watched.take()

    assert await scene.report(rogue) == {"ok": True}

    assert remover.fired
    # outside its folders only its own merge shows: the one output moved before the
    # folder went (and its result folder's mtime); nothing else
    tag = f"job_id_{rogue['jobid']}_"
    results = {str(scene.output_dir / kind) for kind in ("pass", "fail")}
    changes = watched.differences(before)
    (moved,) = [line for line in changes if line.startswith("added ")]
    assert Path(moved.removeprefix("added ")).name.startswith(tag)
    assert all(line.split()[1].rstrip(":") in results for line in changes if line != moved)
    (held,) = await scene.held()
    assert (held["job_id"], held["state"]) == (rogue["jobid"], "done")
    gone = [
        f"{kind}/{p.name}" for kind in ("pass", "fail") for p in (remover.stash / kind).glob("*")
    ]
    gone.sort(key=lambda entry: (not entry.startswith("pass/"), entry))  # in merge order
    assert held["reason"] == (
        f"could not merge the outputs of TMPOUTPUT_{rogue['jobid']}_rogue: {len(gone)} of its "
        f"outputs are gone before they were merged ({', '.join(gone)}); once they are put "
        "back, the merge goes on"
    )
    assert (await scene.status())["files"]["done"] == 4
    assert await scene.report(jobs.good) == {"ok": True}
    assert await scene.report(rogue) == {"ok": True}  # not put back yet: still held
    assert [job["reason"] for job in await scene.held()] == [held["reason"]]
    if finish_by == "restart":
        scene = await restarted(scene, start, reconcile_interval=60.0)
        assert [job["reason"] for job in await scene.held()] == [held["reason"]]

    remover.put_back()
    if finish_by == "repeated-done":
        assert await scene.report(rogue) == {"ok": True}
    elif finish_by == "sweeper":
        await sweep_with_reconcile(scene, clock)
    else:
        scene = await restarted(scene, start)
    assert await scene.held() == []
    assert scene.out(rogue, "LOGOUTPUT").is_dir()
    await the_rest_exactly_once(scene, jobs, refused=False)


async def test_the_sweeper_keeps_expiring_other_leases_while_a_job_is_broken(
    start: Callable[..., Awaitable[Scene]], canary: Path, tmp_path: Path, clock: ManualClock
) -> None:
    """A job held for a folder removed mid-merge stays broken for several sweeps: each
    sweep tries its steps again (and fails), and still expires the lease of a silent
    engine's job, whose files go to another engine."""
    remover = RemoveMidMerge(tmp_path / "stash")
    scene = await start(checkpoint=remover, reconcile_interval=1.0)
    jobs = await three_jobs(scene)
    rogue, silent = jobs.rogue, jobs.good
    remover.folder = scene.out(rogue)
    assert await scene.report(rogue) == {"ok": True}
    sweeper = scene.client.server.app[SWEEPER]
    reactor = scene.client.server.app[REACTOR]
    reconciles = reactor.reconciles

    expired = []
    for _ in range(3):  # within the lease: the broken job is retried, nothing expires
        clock.advance(LEASE_S / 4)
        expired += await sweeper.sweep_once(clock.now)
    assert expired == []
    assert reactor.reconciles == reconciles + 3
    assert [job["job_id"] for job in await scene.held()] == [rogue["jobid"]]
    clock.advance(LEASE_S)
    expired = await sweeper.sweep_once(clock.now)

    assert [job.job_id for job in expired] == [silent["jobid"]]
    assert [job["job_id"] for job in await scene.held()] == [rogue["jobid"]]
    assert job_record(scene.output_dir, silent["jobid"])["state"] == "expired"
    again = await scene.assign("other", BATCH)
    assert again["batch"] == silent["batch"]
    scene.basecall(again)
    assert await scene.report(again) == {"ok": True}
    remover.put_back()
    await sweep_with_reconcile(scene, clock)
    assert await scene.held() == []
    await scene.finish_run()
    verdict = scene.recount()
    assert verdict.ok, verdict


# ---------------------------------------------------------------- late DONE


async def test_a_late_done_with_hostile_outputs_is_refused_and_its_files_wait(
    start: Callable[..., Awaitable[Scene]], canary: Path, clock: ManualClock
) -> None:
    """A DONE long after the lease ran out, from a folder whose pass/ is a link to
    INPUTDIR, whose files were not handed out again yet: the late merge it could have
    had is refused, nothing is touched, the files wait at the front and are basecalled
    by another engine."""
    scene = await start()
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    sweeper = scene.client.server.app[SWEEPER]
    clock.advance(LEASE_S * 0.75)
    await scene.get("/keepalive", job_id=jobs.good["jobid"], job_state="PROCESSING")
    clock.advance(LEASE_S * 0.5)
    assert [job.job_id for job in await sweeper.sweep_once(clock.now)] == [rogue["jobid"]]
    pass_link_to_input(scene, scene.out(rogue), canary)
    clock.advance(LEASE_S * 10)  # long after
    await scene.get("/keepalive", job_id=jobs.good["jobid"], job_state="PROCESSING")
    watched = scene.untouched(canary, rogue)
    before = watched.take()

    body = await scene.report(rogue)

    watched.assert_same(before)
    assert (body["merged"], body["detail"]) == (
        False,
        f"TMPOUTPUT_{rogue['jobid']}_rogue/pass is a link or a file, not a folder",
    )
    (held,) = await scene.held()
    assert (held["job_id"], held["state"]) == (rogue["jobid"], "refused")
    assert (await scene.status())["files"]["ready"] == 5
    await the_rest_exactly_once(scene, jobs, refused=True)


# ------------------------------------------------- swapped after inspection


class SwapAfterDecision:
    """A checkpoint that, once armed, lets the engine change its folder between the
    inspection of its outputs and their move (right after the DONE was decided): the
    original is kept aside in `stash`, and `put_back` restores it."""

    def __init__(self, stash: Path, swap: Callable[[Path, Path], None]) -> None:
        self.stash = stash
        self.swap = swap
        self.folder: Path | None = None
        self.fired = False

    def __call__(self, step: str) -> None:
        if step == "merge:decided" and self.folder is not None and not self.fired:
            self.fired = True
            self.swap(self.folder, self.stash)


def swap_pass_for_a_link(input_dir: Path) -> Callable[[Path, Path], None]:
    def swap(folder: Path, stash: Path) -> None:
        shutil.move(folder / "pass", stash)
        (folder / "pass").symlink_to(input_dir)

    return swap


def swap_folder_for_a_link(input_dir: Path) -> Callable[[Path, Path], None]:
    def swap(folder: Path, stash: Path) -> None:
        shutil.move(folder, stash)
        folder.symlink_to(input_dir)

    return swap


@pytest.mark.parametrize("swapped", ["pass", "folder"])
async def test_a_folder_swapped_for_a_link_after_inspection_is_never_followed(
    start: Callable[..., Awaitable[Scene]],
    canary: Path,
    tmp_path: Path,
    run_dirs: RunDirs,
    swapped: str,
) -> None:
    """The engine's outputs pass inspection, then (after the DONE is decided, before they
    are moved) it swaps its pass/, or its whole folder, for a link to INPUTDIR. The move
    never follows it: nothing outside the job's folders is touched, the job is held
    saying what is there, and once the engine's folder is put back the repeated DONE
    merges it, every read exactly once."""
    stash = tmp_path / "stash"
    make = swap_pass_for_a_link if swapped == "pass" else swap_folder_for_a_link
    swapper = SwapAfterDecision(stash, make(run_dirs.input_dir))
    scene = await start(checkpoint=swapper)
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    swapper.folder = scene.out(rogue)
    watched = scene.untouched(canary, rogue)
    before = watched.take()

    assert await scene.report(rogue) == {"ok": True}

    assert swapper.fired
    watched.assert_same(before)
    (held,) = await scene.held()
    assert (held["job_id"], held["state"]) == (rogue["jobid"], "done")
    folder = f"TMPOUTPUT_{rogue['jobid']}_rogue"
    link = "pass" if swapped == "pass" else folder
    assert held["reason"] == (
        f"could not merge the outputs of {folder}: {link} is a symbolic link, not a folder"
    )
    assert await scene.report(jobs.good) == {"ok": True}

    link = scene.out(rogue) / "pass" if swapped == "pass" else scene.out(rogue)
    link.unlink()
    shutil.move(stash, link)
    assert await scene.report(rogue) == {"ok": True}
    assert await scene.held() == []
    await the_rest_exactly_once(scene, jobs, refused=False)


async def test_an_output_swapped_for_a_link_after_inspection_stays_with_the_job(
    start: Callable[..., Awaitable[Scene]], canary: Path, tmp_path: Path
) -> None:
    """After the DONE is decided, the engine swaps one of its outputs for a link to a
    file outside the run. The link is not moved (nor followed): it stays in the job's
    leftovers and is reported; the rest is merged. The engine destroyed that output, so
    a person merges the real one by hand, as the log says, and every read is there once."""
    stash = tmp_path / "stash"

    def swap(folder: Path, aside: Path) -> None:
        first = sorted((folder / "pass").iterdir())[0]
        aside.mkdir()
        shutil.move(first, aside / first.name)
        first.symlink_to(canary / "secret.fastq")

    swapper = SwapAfterDecision(stash, swap)
    scene = await start(checkpoint=swapper)
    jobs = await three_jobs(scene)
    rogue = jobs.rogue
    swapper.folder = scene.out(rogue)
    canary_before = Untouched(roots=(canary,)).take()

    assert await scene.report(rogue) == {"ok": True}

    assert swapper.fired
    Untouched(roots=(canary,)).assert_same(canary_before)
    (original,) = stash.iterdir()
    kept = scene.out(rogue, "LOGOUTPUT") / "pass" / original.name
    assert kept.is_symlink()
    tag = f"job_id_{rogue['jobid']}_"
    assert not os.path.lexists(scene.output_dir / "pass" / f"{tag}{original.name}")
    assert all(not path.is_symlink() for path in (scene.output_dir / "pass").iterdir())
    assert await scene.metric("reactor_outputs_not_merged_total") == 1
    assert await scene.held() == []
    shutil.copy2(original, scene.output_dir / "pass" / f"{tag}{original.name}")  # by hand
    await the_rest_exactly_once(scene, jobs, refused=False)
