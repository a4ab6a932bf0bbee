"""Host mode through the real app: runs found under a root, each served on its own
folders, batches of one run each, every read exactly once in its own run's outputs."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import dnaio
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from reactor.cli import main
from reactor.core.minknow import RunKey, parse_pod5_name
from reactor.core.params import parse_rules
from reactor.disk.runs import find_runs
from reactor.serve import host as host_module
from reactor.serve.app import create_host_app
from reactor.serve.app_keys import HOST
from reactor.serve.host import RETIRE_AFTER_S, SHEET_NAME
from reactor.serve.service import reactor_version
from reactor.settings.serve import ServeConfig
from reactor.sim.pod5_files import RunIdentity, pod5_bytes, read_ids, write_pod5
from tests.support.api import AiohttpClient, MakeClient
from tests.support.endrun import RECORD_ENV, python_command, runs_of, wait_until
from tests.support.exactly_once import recount
from tests.support.openapi import assert_documented
from tests.support.runs import ManualClock

RUNID = "0f1d7e9e"
OLD = 1_500_000_000.0  # 2017: an archived run's files


def fastq(ids: list[str]) -> str:
    return "".join(f"@{read_id}\nACGT\n+\nIIII\n" for read_id in ids)


def pod5(path: Path, seed: int, reads: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pod5(path, n_reads=reads, seed=seed)
    return path


def minknow_root(root: Path) -> dict[str, list[Path]]:
    """A data root as MinKNOW leaves it: two live runs (current and older layout with
    barcodes), a pooled sample folder of two runs, an archived finished run."""
    files: dict[str, list[Path]] = {}
    live = root / "grp" / "s1" / "20261205_1412_1A_PAW00001_aaaaaaaa"
    files["PAW00001_aaaaaaaa"] = [
        pod5(live / "pod5" / f"PAW00001_aaaaaaaa_{RUNID}_{i}.pod5", 10 + i) for i in range(4)
    ]
    (live / "queued_reads").mkdir()
    pod5(live / "queued_reads" / "waiting.pod5", 99)  # never work
    older = root / "grp" / "s2" / "20261205_1300_X2_PAW00002_bbbbbbbb"
    files["PAW00002_bbbbbbbb"] = [
        pod5(
            older
            / "pod5_pass"
            / f"barcode0{i}"
            / f"PAW00002_pass_barcode0{i}_bbbbbbbb_{RUNID}_0.pod5",
            20 + i,
        )
        for i in (1, 2)
    ] + [pod5(older / "pod5_fail" / f"PAW00002_fail_bbbbbbbb_{RUNID}_0.pod5", 23)]
    pooled = root / "grp" / "pool"
    files["PAW00003_cccccccc"] = [
        pod5(pooled / "pod5" / f"PAW00003_cccccccc_{RUNID}_{i}.pod5", 30 + i) for i in range(2)
    ]
    files["PAW00004_dddddddd"] = [
        pod5(pooled / "pod5" / f"PAW00004_dddddddd_{RUNID}_{i}.pod5", 40 + i) for i in range(3)
    ]
    archived = root / "grp" / "s1" / "20170714_0900_1A_PAW00009_99999999"
    pod5(archived / "pod5" / f"PAW00009_99999999_{RUNID}_0.pod5", 90)
    (archived / f"final_summary_PAW00009_99999999_{RUNID}.txt").write_text("x=1\n")
    for path in (archived / "pod5", archived):
        os.utime(path, (OLD, OLD))
    return files


async def engine_works(client: Any, root: Path, engine: str) -> list[dict[str, Any]]:
    """A seed-protocol engine given the root as INPUTDIR and OUTPUTDIR, until no work."""
    jobs = []
    while True:
        answer = await (await client.get(f"/assignwork?engineid={engine}&batchsize=3")).json()
        if answer["jobid"] == "-1":
            return jobs
        jobs.append(answer)
        job_in = root / answer["job_input_dir"]
        job_out = root / answer["job_output_dir"]
        for name in answer["batch"]:
            ids = read_ids(job_in / name)
            (job_out / "pass" / f"{name.removesuffix('.pod5')}.fastq").write_text(fastq(ids))
        done = await client.get(f"/completed?job_id={answer['jobid']}&job_state=DONE")
        assert done.status == 200, await done.text()


def host_config(root: Path, **kw: Any) -> ServeConfig:
    return ServeConfig(watch_root=(root,), sweep_interval=0.05, **kw)


async def test_every_run_under_the_root_is_served_on_its_own_folders(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files = minknow_root(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    host = app[HOST]

    status = await (await client.get("/status")).json()
    assert_documented("/status", 200, status)
    assert sorted(r["run"] for r in status["runs"]) == sorted(files)
    assert [r["run"] for r in status["left"]] == ["PAW00009_99999999"]
    assert {r["run"]: r["total"] for r in status["runs"]} == {k: len(v) for k, v in files.items()}

    jobs = await engine_works(client, root, "gpu1")

    # each batch holds files of one run only, handed out from that run's own folder
    for job in jobs:
        owners = {k for k, paths in files.items() if {p.name for p in paths} >= set(job["batch"])}
        assert len(owners) == 1, job["batch"]
    batches = Counter(
        next(k for k, paths in files.items() if job["batch"][0] in {p.name for p in paths})
        for job in jobs
    )
    assert set(batches) == set(files)
    # every read exactly once, in its own run's outputs
    for key, unit in host.units.items():
        result = recount(files[str(key)], unit.place.output_dir)
        assert result.ok, (key, result)
        assert result.reads == 3 * len(files[str(key)])
    out = {str(k): u.place.output_dir for k, u in host.units.items()}
    assert out["PAW00001_aaaaaaaa"] == files["PAW00001_aaaaaaaa"][0].parents[1] / "reactor"
    assert out["PAW00003_cccccccc"] == root / "grp" / "pool" / "reactor" / "PAW00003_cccccccc"
    # nothing of the archived run, nor of queued_reads/, was handed out
    handed = {name for job in jobs for name in job["batch"]}
    assert "waiting.pod5" not in handed
    assert not any(name.startswith("PAW00009") for name in handed)


async def test_a_run_that_appears_is_found_and_a_final_summary_ends_it(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "grp" / "s1").mkdir(parents=True)
    app = create_host_app(host_config(root, on_complete=None))
    client = await aiohttp_client(app)
    host = app[HOST]
    assert host.units == {}

    run = root / "grp" / "s1" / "20261205_1500_1A_PAW00005_eeeeeeee"
    new = [pod5(run / "pod5" / f"PAW00005_eeeeeeee_{RUNID}_{i}.pod5", 50 + i) for i in range(2)]
    key = RunKey("PAW00005", "eeeeeeee")
    await wait_until(lambda: key in host.units, "the new run is adopted")
    await wait_until(
        lambda: host.units[key].reactor.count_fields()["ready"] == 2, "its files are ready"
    )
    await engine_works(client, root, "gpu1")
    (run / f"final_summary_PAW00005_eeeeeeee_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: host.units[key].phase == "complete", "the run completes")
    assert recount(new, host.units[key].place.output_dir).ok


async def test_a_prioritised_run_goes_first(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    host = app[HOST]
    host.prioritise("PAW00004_dddddddd", 1000)
    answer = await (await client.get("/assignwork?engineid=e&batchsize=1")).json()
    assert answer["batch"][0].startswith("PAW00004_dddddddd")
    assert (
        answer["job_input_dir"]
        == f"grp/pool/reactor/PAW00004_dddddddd/input/ASSIGNED_{answer['jobid']}_e"
    )


async def test_host_stops_cleanly(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app: web.Application = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'reactor_files{run="PAW00001_aaaaaaaa",state="ready"} 4.0' in metrics
    assert 'reactor_runs{phase="left"} 1.0' in metrics


async def test_every_run_scoped_event_names_its_run(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files = minknow_root(root)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        app = create_host_app(host_config(root))
        client = await aiohttp_client(app)
        jobs = await engine_works(client, root, "gpu1")
    by_job = {job["jobid"]: job["batch"][0] for job in jobs}
    scoped = [e for e in logs if e["event"] in ("job_assigned", "job_done", "recovered")]
    assert len(scoped) == 2 * len(jobs) + len(files)
    for event in scoped:
        assert event["run"].startswith(event["flow_cell"] + "_")
        if "job_id" in event:
            parsed = parse_pod5_name(by_job[event["job_id"]])
            assert parsed is not None
            assert str(parsed.key) == event["run"], event
    # and host-wide events carry none
    (adopted,) = [e for e in logs if e["event"] == "runs_adopted"]
    assert "run" not in adopted


async def test_an_older_run_is_served_on_request_and_mistakes_say_what_to_do(
    aiohttp_client: AiohttpClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    host = app[HOST]
    archived = RunKey("PAW00009", "99999999")
    assert archived in host.left

    # `reactor run add` by its name, in a thread: the app keeps serving on this loop
    url = str(client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["run", "add", "PAW00009_99999999", "--url", url])
    assert code == 0
    assert "PAW00009_99999999 is served now" in capsys.readouterr().out
    assert archived in host.units and archived not in host.left
    assert host.units[archived].reactor.count_fields()["ready"] == 1
    # again: known; by its folder too
    folder = "grp/s1/20170714_0900_1A_PAW00009_99999999"
    answer = await (await client.post(f"/runs/add?run={folder}")).json()
    assert answer == {"run": "PAW00009_99999999", "outcome": "known"}
    assert_documented("/runs/add", 200, answer, "post")
    weighted = await client.post("/runs/prioritise?run=PAW00001_aaaaaaaa")
    assert_documented("/runs/prioritise", 200, await weighted.json(), "post")
    assert host.share.weight(RunKey("PAW00001", "aaaaaaaa")) == 10.0

    code = await asyncio.to_thread(
        main, ["run", "prioritise", "PAW00002_bbbbbbbb", "--weight", "4", "--url", url]
    )
    assert code == 0
    assert host.share.weight(RunKey("PAW00002", "bbbbbbbb")) == 4.0
    status = await (await client.get("/status")).json()
    assert {r["run"]: r["weight"] for r in status["runs"]}["PAW00002_bbbbbbbb"] == 4.0

    unknown = await client.post("/runs/add?run=PAW99999_00000000")
    assert unknown.status == 404
    body = await unknown.json()
    assert body["error"] == "unknown_run"
    assert_documented("/runs/add", 404, body, "post")
    bad = await client.post("/runs/prioritise?run=PAW00002_bbbbbbbb&weight=0")
    assert bad.status == 400
    assert "weight must be more than 0" in (await bad.json())["detail"]
    code = await asyncio.to_thread(main, ["run", "add", "nothing-here", "--url", url])
    assert code == 1
    assert "no run 'nothing-here' under the roots" in capsys.readouterr().err


async def test_a_single_run_service_says_runs_are_host_mode_only(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    answer = await client.post("/runs/add?run=x")
    assert answer.status == 404
    assert (await answer.json())["error"] == "not_host_mode"


async def test_reactor_status_shows_the_runs(
    aiohttp_client: AiohttpClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    await engine_works(client, root, "gpu1")
    url = str(client.make_url("")).rstrip("/")
    assert await asyncio.to_thread(main, ["status", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "4 runs live" in out
    for run, done in [("PAW00001_aaaaaaaa", "4/4"), ("PAW00002_bbbbbbbb", "3/3")]:
        (line,) = [line for line in out.splitlines() if line.strip().startswith(run)]
        assert done in line
    assert "left     1 older run: PAW00009_99999999" in out
    assert "reactor run add RUN" in out


def finished_run(sample: Path, folder: str) -> None:
    """A run folder a host served before: its final summary and its run-complete marker."""
    key = "_".join(folder.split("_")[-2:])
    run = sample / folder
    (run / "pod5").mkdir(parents=True)
    (run / f"final_summary_{key}_{RUNID}.txt").write_text("x=1\n")
    state = run / "reactor" / ".reactor"
    state.mkdir(parents=True, mode=0o700)
    (state / "run-complete.json").write_text("{}\n")


async def test_status_lists_the_newest_runs_not_served_and_counts_them_all(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A host keeps finished and left runs for good: /status (and every dashboard frame)
    lists RUNS_LISTED of each, newest first by folder name, with totals, so its size
    does not grow with the host's history; `reactor status` counts them all."""
    monkeypatch.setattr(host_module, "RUNS_LISTED", 3)
    root = tmp_path / "data"
    minknow_root(root)  # four live runs and one left
    for day in range(1, 6):
        finished_run(root / "grp" / "done", f"2024010{day}_0900_1A_PAW0010{day}_0000000{day}")
        left = root / "grp" / "old" / f"2016010{day}_0900_1A_PAW0020{day}_0000000{day}"
        pod5(left / "pod5" / f"PAW0020{day}_0000000{day}_{RUNID}_0.pod5", 200 + day)
        for path in (left / "pod5", left):
            os.utime(path, (OLD, OLD))
    for path in (root / "grp" / "old", root / "grp" / "done"):
        os.utime(path, (OLD, OLD))
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)

    status = await (await client.get("/status")).json()
    assert_documented("/status", 200, status)
    assert [r["run"] for r in status["finished"]] == [
        "PAW00105_00000005", "PAW00104_00000004", "PAW00103_00000003"
    ]  # fmt: skip
    assert status["finished_total"] == 5
    assert [r["run"] for r in status["left"]] == [
        "PAW00009_99999999", "PAW00205_00000005", "PAW00204_00000004"
    ]  # fmt: skip
    assert status["left_total"] == 6  # the five and minknow_root's archived run, newer
    assert (status["failed"], status["failed_total"]) == ([], 0)

    url = str(client.make_url("")).rstrip("/")
    assert await asyncio.to_thread(main, ["status", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "finished 5 runs (not served)" in out
    listed = "left     6 older runs: PAW00009_99999999, PAW00205_00000005, PAW00204_00000004"
    assert f"{listed}\n         +3 more\n" in out


async def test_runs_and_their_folders_are_found_by_events_alone(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """No discovery pass and no sweep in this test (an hour apart): a new group, sample,
    run folder, its late pod5/ folder and its final summary are each seen by a watch."""
    root = tmp_path / "data"
    root.mkdir()
    app = create_host_app(ServeConfig(watch_root=(root,), sweep_interval=3600))
    client = await aiohttp_client(app)
    host = app[HOST]
    assert host.folders is not None and host.folders.count == 1  # the root

    run = root / "newgroup" / "newsample" / "20261205_1700_1A_PAW00006_ffffffff"
    run.mkdir(parents=True)
    key = RunKey("PAW00006", "ffffffff")
    await wait_until(lambda: key in host.units, "the new run is adopted")
    assert host.folders.watching(run)
    # MinKNOW makes pod5/ once the first file is due: the run starts watching it
    first = pod5(run / "pod5" / f"PAW00006_ffffffff_{RUNID}_0.pod5", 60)
    unit = host.units[key]
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 1, "its first file ready")
    second = pod5(run / "pod5" / "barcode01" / f"PAW00006_ffffffff_{RUNID}_1.pod5", 61)
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 2, "a barcode folder's file")
    await engine_works(client, root, "gpu1")
    (run / f"final_summary_PAW00006_ffffffff_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: unit.phase == "complete", "the final summary ends it")
    assert recount([first, second], unit.place.output_dir).ok


async def test_with_the_polling_observer_runs_are_served_from_polled_folders(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files = minknow_root(root)
    config = ServeConfig(
        watch_root=(root,), sweep_interval=0.05, observer="polling", poll_interval=0.05
    )
    app = create_host_app(config)
    client = await aiohttp_client(app)
    host = app[HOST]
    assert host.poller is not None
    await engine_works(client, root, "gpu1")
    # a file that arrives later, in a barcode folder, is found by the poller
    run = root / "grp" / "s2" / "20261205_1300_X2_PAW00002_bbbbbbbb"
    late = pod5(run / "tmp" / f"PAW00002_pass_barcode01_bbbbbbbb_{RUNID}_9.pod5", 77)
    target = run / "pod5_pass" / "barcode01" / late.name
    late.rename(target)
    unit = host.units[RunKey("PAW00002", "bbbbbbbb")]
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 1, "the late file")
    await engine_works(client, root, "gpu1")
    assert recount([*files["PAW00002_bbbbbbbb"], target], unit.place.output_dir).ok


async def test_a_complete_run_leaves_memory_and_metrics_and_is_skipped_at_the_next_start(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files = minknow_root(root)
    clock = ManualClock()
    app = create_host_app(host_config(root), clock=clock)
    client = await aiohttp_client(app)
    host = app[HOST]
    await engine_works(client, root, "gpu1")
    key = RunKey("PAW00001", "aaaaaaaa")
    unit = host.units[key]
    folder = files["PAW00001_aaaaaaaa"][0].parents[1]
    (folder / f"final_summary_PAW00001_aaaaaaaa_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: unit.phase == "complete", "the run completes")
    await host.discover()  # its end is noted
    assert key in host.units
    clock.advance(RETIRE_AFTER_S + 1)
    await host.discover()
    assert key not in host.units, "its state left memory"
    assert [f["run"] for f in (await (await client.get("/status")).json())["finished"]] == [
        "PAW00001_aaaaaaaa"
    ]
    metrics = await (await client.get("/metrics")).text()
    assert 'run="PAW00001_aaaaaaaa"' not in metrics
    assert 'run="PAW00002_bbbbbbbb"' in metrics
    await client.close()

    # the next start skips it from its marker, without reading its files
    again = create_host_app(host_config(root))
    client = await aiohttp_client(again)
    restarted = again[HOST]
    assert key not in restarted.units and key in restarted.finished
    assert len(restarted.units) == 3


async def test_with_an_output_root_results_mirror_the_runs_paths_there(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root, out = tmp_path / "data", tmp_path / "results"
    out.mkdir()
    files = minknow_root(root)
    app = create_host_app(ServeConfig(watch_root=(root,), output_root=out, sweep_interval=0.05))
    client = await aiohttp_client(app)
    host = app[HOST]
    # engines are given the output root; the links in their job folders reach the runs
    jobs = await engine_works(client, out, "gpu1")
    assert all(not (out / job["job_input_dir"]).is_relative_to(root) for job in jobs)
    for key, unit in host.units.items():
        expected = out / unit.found.relative
        if unit.found.pooled:  # runs sharing a sample folder: one folder each below it
            expected = expected / str(key)
        assert unit.place.output_dir == expected
        assert recount(files[str(key)], unit.place.output_dir).ok
    assert not list(root.glob("**/reactor")), "nothing written into the run folders"
    single = host.units[RunKey("PAW00001", "aaaaaaaa")].place.output_dir
    assert single == out / "grp" / "s1" / "20261205_1412_1A_PAW00001_aaaaaaaa"


async def test_a_run_moved_to_another_root_is_served_on_alone_with_its_records(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A run's records travel with it: half of it done and one job live, the run folder
    is moved to another root, and a host there carries on with nothing done twice."""
    root = tmp_path / "data"
    run_folder = root / "grp" / "s1" / "20261205_1412_1A_PAW00001_aaaaaaaa"
    files = {
        "PAW00001_aaaaaaaa": [
            pod5(
                run_folder / "pod5" / f"barcode0{i % 2}" / f"PAW00001_aaaaaaaa_{RUNID}_{i}.pod5", i
            )
            for i in range(4)
        ]
    }
    key = RunKey("PAW00001", "aaaaaaaa")
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    unit = app[HOST].units[key]
    done = await (await client.get("/assignwork?engineid=e1&batchsize=2")).json()
    live = await (await client.get("/assignwork?engineid=e2&batchsize=1")).json()
    for name in done["batch"]:
        ids = read_ids(root / done["job_input_dir"] / name)
        out = root / done["job_output_dir"] / "pass" / f"{name.removesuffix('.pod5')}.fastq"
        out.write_text(fastq(ids))
    assert (await client.get(f"/completed?job_id={done['jobid']}&job_state=DONE")).status == 200
    await client.close()

    assert unit.found.folder == run_folder
    elsewhere = tmp_path / "archive"
    (elsewhere / "grp" / "s1").mkdir(parents=True)
    moved = elsewhere / "grp" / "s1" / run_folder.name
    run_folder.rename(moved)
    app = create_host_app(host_config(elsewhere))
    client = await aiohttp_client(app)
    again = app[HOST].units[key]
    counts = again.reactor.count_fields()
    assert (counts["done"], counts["assigned"], counts["ready"]) == (2, 1, 1)
    # the live job's engine carries on with paths below the new root
    name = live["batch"][0]
    ids = read_ids(elsewhere / live["job_input_dir"] / name)
    out = elsewhere / live["job_output_dir"] / "pass" / f"{name.removesuffix('.pod5')}.fastq"
    out.write_text(fastq(ids))
    assert (await client.get(f"/completed?job_id={live['jobid']}&job_state=DONE")).status == 200
    await engine_works(client, elsewhere, "e3")
    moved_files = [moved / path.relative_to(run_folder) for path in files[str(key)]]
    assert recount(moved_files, again.place.output_dir).ok


async def test_a_pooled_run_that_starts_beside_a_live_one_is_found_by_events(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """No discovery pass here (an hour apart): the second run's first file lands in the
    POD5 folder the first run shares; the first run's watch sees a run it does not know.
    One that ends before anyone looks is served too: its final summary dates it."""
    root = tmp_path / "data"
    pooled = root / "grp" / "pool"
    first = [
        pod5(pooled / "pod5" / f"PAW00003_cccccccc_{RUNID}_{i}.pod5", 30 + i) for i in range(2)
    ]
    app = create_host_app(ServeConfig(watch_root=(root,), sweep_interval=3600))
    client = await aiohttp_client(app)
    host = app[HOST]
    assert list(host.units) == [RunKey("PAW00003", "cccccccc")]
    second = [
        pod5(pooled / "pod5" / f"PAW00004_dddddddd_{RUNID}_{i}.pod5", 40 + i) for i in range(2)
    ]
    key = RunKey("PAW00004", "dddddddd")
    await wait_until(lambda: key in host.units, "the second pooled run is adopted")
    await wait_until(
        lambda: host.units[key].reactor.count_fields()["ready"] == 2, "its files are ready"
    )
    await engine_works(client, root, "gpu1")
    for run, files in ((RunKey("PAW00003", "cccccccc"), first), (key, second)):
        assert recount(files, host.units[run].place.output_dir).ok
    await client.close()

    # a pooled run already complete when first seen, with no records: dated by its summary
    third = [
        pod5(pooled / "pod5" / f"PAW00005_eeeeeeee_{RUNID}_{i}.pod5", 50 + i) for i in range(2)
    ]
    (pooled / f"final_summary_PAW00005_eeeeeeee_{RUNID}.txt").write_text("x=1\n")
    again = create_host_app(ServeConfig(watch_root=(root,), sweep_interval=3600))
    client = await aiohttp_client(again)
    assert RunKey("PAW00005", "eeeeeeee") in again[HOST].units
    await engine_works(client, root, "gpu1")
    assert recount(third, again[HOST].units[RunKey("PAW00005", "eeeeeeee")].place.output_dir).ok


def live_basecalled(root: Path) -> tuple[Path, list[Path], list[Path]]:
    """A run MinKNOW basecalled live: pod5/ called already (its FASTQ in fastq_pass/),
    pod5_skip/ holding the files it skipped."""
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00007_77777777"
    called = [pod5(run / "pod5" / f"PAW00007_77777777_{RUNID}_{i}.pod5", 70 + i) for i in range(3)]
    skipped = [
        pod5(run / "pod5_skip" / f"PAW00007_skip_77777777_{RUNID}_{i}.pod5", 80 + i)
        for i in range(2)
    ]
    (run / "fastq_pass").mkdir()
    (run / "fastq_pass" / f"PAW00007_pass_77777777_{RUNID}_0.fastq.gz").write_bytes(b"minknow")
    return run, called, skipped


async def test_a_run_minknow_basecalled_live_has_only_pod5_skip_as_work(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    run, called, skipped = live_basecalled(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00007", "77777777")]
    jobs = await engine_works(client, root, "gpu1")
    handed = sorted(name for job in jobs for name in job["batch"])
    assert handed == sorted(path.name for path in skipped)
    assert not {path.name for path in called} & set(handed), "pod5/ was basecalled by MinKNOW"
    assert recount(skipped, unit.place.output_dir).ok
    # MinKNOW's own outputs untouched, reactor's apart from them
    assert [p.name for p in (run / "fastq_pass").iterdir()] == [
        f"PAW00007_pass_77777777_{RUNID}_0.fastq.gz"
    ]
    assert (run / "fastq_pass" / f"PAW00007_pass_77777777_{RUNID}_0.fastq.gz").read_bytes() == (
        b"minknow"
    )
    status = await (await client.get("/status")).json()
    (view,) = status["runs"]
    assert view["work"]["folders"] == ["pod5_skip"]
    assert "MinKNOW basecalled live (fastq_pass/)" in view["work"]["reason"]
    assert view["total"] == 2


async def test_sources_all_takes_every_folder_of_a_run_basecalled_live(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    _run, called, skipped = live_basecalled(root)
    app = create_host_app(host_config(root, sources="all"))
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00007", "77777777")]
    jobs = await engine_works(client, root, "gpu1")
    assert len([name for job in jobs for name in job["batch"]]) == 5
    assert recount([*called, *skipped], unit.place.output_dir).ok


async def test_minknows_first_outputs_take_the_runs_pod5_folder_out_of_the_work(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Young, a run shows no sign of live basecalling and its pod5/ files are queued;
    MinKNOW's fastq_pass/ appears: they leave the queue (one handed out before stays
    with its engine), and pod5_skip/ becomes the work when it appears."""
    root = tmp_path / "data"
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00008_88888888"
    young = [pod5(run / "pod5" / f"PAW00008_88888888_{RUNID}_{i}.pod5", 90 + i) for i in range(3)]
    app = create_host_app(ServeConfig(watch_root=(root,), sweep_interval=3600))
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00008", "88888888")]
    assert unit.reactor.count_fields()["ready"] == 3
    taken = await (await client.get("/assignwork?engineid=early&batchsize=1")).json()
    (run / "fastq_pass").mkdir()  # MinKNOW's first basecalled batch
    await wait_until(lambda: unit.work.skip_only, "the decision follows MinKNOW's outputs")
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 0, "pod5/ leaves the queue")
    assert unit.reactor.count_fields()["assigned"] == 1, "the batch handed out stays"
    late = pod5(run / "pod5_skip" / f"PAW00008_skip_88888888_{RUNID}_0.pod5", 99)
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 1, "pod5_skip/ is the work")
    answer = await (await client.get("/assignwork?engineid=gpu1&batchsize=5")).json()
    assert answer["batch"] == [late.name]
    assert taken["batch"][0] in {path.name for path in young}


async def test_at_its_end_a_run_is_checked_against_minknows_output_hash(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00006_66666666"
    files = [pod5(run / "pod5" / f"PAW00006_66666666_{RUNID}_{i}.pod5", 60 + i) for i in range(3)]
    (run / "fastq_pass").mkdir()  # a MinKNOW output listed with a hash: not a POD5 row
    listed = [f"pod5/{path.name}" for path in files] + [
        f"pod5/PAW00006_66666666_{RUNID}_3.pod5",  # never written: missing
        "../../etc/passwd.pod5",  # not inside the run folder: not looked at
    ]
    rows = [f"{RUNID},grp,PAW00006,s1,,{path},," for path in listed]
    rows.append(f"{RUNID},grp,PAW00006,s1,abc123,fastq_pass/x.fastq.gz,,")
    header = (
        "runid,protocol_group_id,flow_cell_id,sample_id,file_hash,file_path,barcode,barcode_alias"
    )
    (run / f"output_hash_PAW00006_66666666_{RUNID}.csv").write_text("\n".join([header, *rows]))
    with capture_logs() as logs:
        app = create_host_app(host_config(root, sources="all"))
        client = await aiohttp_client(app)
        unit = app[HOST].units[RunKey("PAW00006", "66666666")]
        await engine_works(client, root, "gpu1")
        (run / f"final_summary_PAW00006_66666666_{RUNID}.txt").write_text("x=1\n")
        await wait_until(lambda: unit.reactor.hash_check is not None, "the cross-check")
    check = unit.reactor.hash_check
    assert check is not None
    assert (check["pod5_listed"], check["missing"], check["empty"], check["not_done"]) == (
        4,
        1,
        0,
        0,
    )
    (event,) = [e for e in logs if e["event"] == "output_hash_mismatch"]
    assert event["first"] == {"missing": [f"pod5/PAW00006_66666666_{RUNID}_3.pod5"]}
    status = await (await client.get("/status")).json()
    assert_documented("/status", 200, status)
    assert status["runs"][0]["output_hash"]["missing"] == 1


async def test_a_simulated_hosts_runs_match_their_output_hash(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    argv = ["simulate-run", str(root), "--flow-cells", "2", "--files", "3",
            "--reads-per-file", "2", "--interval", "0", "--stagger", "0", "--quiet"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0
    with capture_logs() as logs:
        app = create_host_app(host_config(root))
        client = await aiohttp_client(app)
        await engine_works(client, root, "gpu1")
        units = list(app[HOST].units.values())
        await wait_until(
            lambda: all(u.reactor.hash_check is not None for u in units), "both cross-checks"
        )
    checked = [e for e in logs if e["event"] == "output_hash_checked"]
    assert len(checked) == 2
    assert all((e["pod5_listed"], e["missing"], e["not_done"]) == (3, 0, 0) for e in checked)


async def test_a_crashed_run_stalls_says_what_is_left_and_is_closed_by_hand(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """MinKNOW crashed: no final summary, reads left in queued_reads/, a POD5 cut short.
    Quiet for stall_after, the run is stalled; `reactor run close` ends it, and its
    on_complete runs once with the reason."""
    root = tmp_path / "data"
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00005_55555555"
    good = [pod5(run / "pod5" / f"PAW00005_55555555_{RUNID}_{i}.pod5", 50 + i) for i in range(2)]
    cut = run / "pod5" / f"PAW00005_55555555_{RUNID}_2.pod5"
    cut.write_bytes(good[0].read_bytes()[:-100])  # its trailing signature never came
    (run / "queued_reads").mkdir()
    (run / "queued_reads" / "reads_1.pod5").write_bytes(b"x")
    env_file = tmp_path / "env.jsonl"
    clock = ManualClock()
    config = host_config(root, stall_after=600, on_complete=python_command(RECORD_ENV, env_file))
    with capture_logs() as logs:
        app = create_host_app(config, clock=clock)
        client = await aiohttp_client(app)
        key = RunKey("PAW00005", "55555555")
        unit = app[HOST].units[key]
        await engine_works(client, root, "gpu1")
        assert unit.phase == "running"
        clock.advance(601)
        await wait_until(lambda: unit.phase == "stalled", "the run stalls")
        status = await (await client.get("/status")).json()
        assert status["runs"][0]["phase"] == "stalled"
        assert_documented("/status", 200, status)
        url = str(client.make_url("")).rstrip("/")
        argv = ["run", "close", str(key), "--reason", "MinKNOW crashed", "--url", url]
        assert await asyncio.to_thread(main, argv) == 0
        assert unit.phase == "complete"
        await wait_until(lambda: env_file.exists(), "on_complete runs")
    (stalled,) = [e for e in logs if e["event"] == "run_stalled"]
    assert stalled["incomplete"] == [cut.name]
    assert stalled["queued_reads"] == 1
    assert stalled["final_summary"] is None
    assert "pod5 recover" in stalled["action"]
    (env,) = runs_of(env_file)
    assert env["REACTOR_RUN_END"] == "closed: MinKNOW crashed"
    assert env["REACTOR_RUN_STOP_FILE"] == ""
    assert env["REACTOR_RUN_NAME"] == str(key)
    assert env["REACTOR_RUN_FILES_DONE"] == "2"
    assert recount(good, unit.place.output_dir).ok
    # closing it again changes nothing
    again = await (await client.post(f"/runs/close?run={key}")).json()
    assert again == {"run": str(key), "closed": False}


def chemistry_run(
    root: Path, key: str, sample_rate: int, product: str, count: int = 2
) -> list[Path]:
    fc, _prid = key.split("_")
    run = root / "grp" / "s1" / f"20261205_1412_1A_{key}"
    identity = RunIdentity(flow_cell_id=fc, sample_rate=sample_rate, flow_cell_product_code=product)
    files = []
    for i in range(count):
        path = run / "pod5" / f"{key}_{RUNID}_{i}.pod5"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pod5_bytes(2, seed=sample_rate + i, run=identity))
        files.append(path)
    return files


RULES = (
    {"when": {"sample_rate": 5000, "flow_cell_product": "FLO-PRO114*"}, "set": {"model": "hac"}},
    {"when": {"sample_rate": 4000}, "set": {"model": "fast"}},
    {"when": {"barcoded": True}, "set": {"kit_name": "SQK-NBD114-24"}},
)


async def test_each_run_is_basecalled_with_the_parameters_its_own_files_call_for(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Two chemistries choose two models by rule; a barcoded run's sample sheet adds its
    kit; the parameters go to engines that ask for them, are pinned with the run, and a
    seed engine gets only the runs it can basecall (seed_params: the fast model)."""
    root = tmp_path / "data"
    r10 = chemistry_run(root, "PAW00011_11111111", 5000, "FLO-PRO114M")
    r9 = chemistry_run(root, "PAW00012_22222222", 4000, "FLO-PRO002")
    sheet = r10[0].parents[1] / "sample_sheet_PAW00011_20261205_1412_11111111.csv"
    sheet.write_text(
        "flow_cell_id,kit,sample_id,experiment_id,barcode,alias\n"
        "PAW00011,SQK-NBD114-24,s1,e1,barcode01,patient_a\n"
        "PAW00011,SQK-NBD114-24,s1,e1,barcode02,patient_b\n"
    )
    config = host_config(root, rules=parse_rules(list(RULES)), seed_params=(("model", "fast"),))
    app = create_host_app(config)
    client = await aiohttp_client(app)
    host = app[HOST]
    # a seed engine (no params=true) gets only the run whose parameters it runs
    seed_jobs = []
    while (job := await (await client.get("/assignwork?engineid=seed&batchsize=1")).json())[
        "jobid"
    ] != "-1":
        assert "params" not in job, "the seed's answer, unchanged"
        seed_jobs.append(job)
        assert (
            await client.get(f"/completed?job_id={job['jobid']}&job_state=FAILED")
        ).status == 200
        break
    # (the barcoded R10 run needs a kit the seed cannot be told: never to a seed engine)
    assert [job["batch"][0][:17] for job in seed_jobs] == ["PAW00012_22222222"]
    # an engine that asks is told each run's parameters
    told: dict[str, dict[str, str]] = {}
    while (
        job := await (await client.get("/assignwork?engineid=ref&batchsize=1&params=true")).json()
    )["jobid"] != "-1":
        told[job["batch"][0][:17]] = job["params"]
        assert (
            await client.get(f"/completed?job_id={job['jobid']}&job_state=RELEASED")
        ).status == 200
        if len(told) == 2:
            break
    sheet_copy = f"grp/s1/20261205_1412_1A_PAW00011_11111111/reactor/{SHEET_NAME}"
    assert told == {
        "PAW00011_11111111": {
            "model": "hac",
            "kit_name": "SQK-NBD114-24",
            "sample_sheet": sheet_copy,  # its aliases, where engines read it
        },
        "PAW00012_22222222": {"model": "fast"},
    }
    assert (root / sheet_copy).read_text() == sheet.read_text()
    # pinned with the run, with what the run said
    unit = host.units[RunKey("PAW00011", "11111111")]
    record = json.loads((unit.place.output_dir / ".reactor" / "run" / "params.json").read_text())
    assert record["params"] == told["PAW00011_11111111"]
    assert record["facts"]["sample_rate"] == 5000
    assert record["facts"]["aliases"] == {"barcode01": "patient_a", "barcode02": "patient_b"}
    assert record["rules"] == [1, 3]
    status = await (await client.get("/status")).json()
    assert {r["run"]: r["params"] for r in status["runs"]}["PAW00012_22222222"] == {"model": "fast"}
    await client.close()

    # a restart with other rules keeps what was pinned: one run, one model
    other = host_config(root, rules=parse_rules([{"set": {"model": "sup"}}]))
    again = create_host_app(other)
    client = await aiohttp_client(again)
    assert again[HOST].units[RunKey("PAW00012", "22222222")].params == {"model": "fast"}
    assert seed_jobs[0]["batch"][0] in {path.name for path in r9}


async def test_reactor_engine_check_says_whether_an_engine_host_can_work_with_the_host(
    aiohttp_client: AiohttpClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app = create_host_app(host_config(root, token="s3cret-token-for-tests"))
    client = await aiohttp_client(app)
    url = str(client.make_url("")).rstrip("/")
    good = ["engine", "--check", "--manager", url, "--input-dir", str(root),
            "--output-dir", str(root), "--command", "true"]  # fmt: skip
    env = {"REACTOR_ENGINE_TOKEN": "s3cret-token-for-tests"}

    def engine_check(argv: list[str], extra: dict[str, str]) -> int:
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)
        try:
            return main(argv)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    assert await asyncio.to_thread(engine_check, good, env) == 0
    out = capsys.readouterr().out
    assert "ok    access: the manager takes this engine" in out
    assert out.count("ok    run PAW") == 4, out
    # the root mounted elsewhere, without the runs: each run says so
    elsewhere = tmp_path / "mnt"
    elsewhere.mkdir()
    moved = [*good[:5], str(elsewhere), "--output-dir", str(elsewhere), "--command", "true"]
    assert await asyncio.to_thread(engine_check, moved, env) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL  run PAW") == 4
    assert "must be at this path here" in out
    # a wrong token
    assert await asyncio.to_thread(engine_check, good, {"REACTOR_ENGINE_TOKEN": "nope" * 8}) == 1
    assert "FAIL  access: the manager refused this engine (401)" in capsys.readouterr().out


async def test_a_staged_run_is_served_from_copies_engines_can_see(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Engines that cannot see the sequencer: every file is copied to stage_to (whole,
    checked) before it is handed out, the links engines get lead only there, copies go
    once their files are done, and no more than stage_max_gb is staged at once."""
    root = tmp_path / "sequencer" / "data"
    cluster = tmp_path / "cluster"
    out, stage = cluster / "out", cluster / "stage"
    out.mkdir(parents=True)
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00004_44444444"
    files = [pod5(run / "pod5" / f"PAW00004_44444444_{RUNID}_{i}.pod5", 40 + i) for i in range(4)]
    one = files[0].stat().st_size
    config = ServeConfig(
        watch_root=(root,),
        output_root=out,
        stage_to=stage,
        stage_max_gb=1.5 * one / 1e9,  # room for one copy at a time
        sweep_interval=0.05,
    )
    app = create_host_app(config)
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00004", "44444444")]
    staged = stage / "grp" / "s1" / run.name
    assert unit.stager is not None and unit.stager.folder == staged
    most = 0
    handed: list[str] = []
    while len(handed) < 4:
        most = max(most, len(list(staged.glob("*.pod5"))))
        answer = await (await client.get("/assignwork?engineid=gpu1&batchsize=4")).json()
        if answer["jobid"] == "-1":
            await wait_until(lambda: unit.reactor.count_fields()["ready"] > 0, "the next copy")
            continue
        job_in = out / answer["job_input_dir"]
        for name in answer["batch"]:
            link = job_in / name
            assert link.resolve().is_relative_to(stage.resolve()), "engines read copies only"
            ids = read_ids(link)
            stem = name.removesuffix(".pod5")
            (out / answer["job_output_dir"] / "pass" / f"{stem}.fastq").write_text(fastq(ids))
        assert (
            await client.get(f"/completed?job_id={answer['jobid']}&job_state=DONE")
        ).status == 200
        handed += answer["batch"]
    assert sorted(handed) == sorted(path.name for path in files)
    assert most <= 1, "stage_max_gb kept: one copy at a time"
    assert recount(files, unit.place.output_dir).ok
    assert unit.place.output_dir == out / "grp" / "s1" / run.name
    await wait_until(lambda: not list(staged.glob("*.pod5")), "copies of done files removed")
    (run / f"final_summary_PAW00004_44444444_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: unit.phase == "complete", "the run completes")
    assert unit.stager.copied == 4


async def test_a_rule_can_say_which_folders_are_work_for_its_runs(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    _run, called, skipped = live_basecalled(root)
    rules = parse_rules([{"when": {"path": "grp/s1/*"}, "set": {"sources": "all"}}])
    app = create_host_app(host_config(root, rules=rules))
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00007", "77777777")]
    assert unit.work.reason == "sources = all"
    answer = await (await client.get("/assignwork?engineid=gpu&batchsize=9&params=true")).json()
    assert sorted(answer["batch"]) == sorted(path.name for path in [*called, *skipped])
    assert answer["params"] == {}, "sources steers reactor, it is not an engine's parameter"


async def test_a_person_sets_a_runs_parameters_and_changing_pinned_ones_is_a_decision(
    aiohttp_client: AiohttpClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before its first batch a person's parameters join the rules'; once pinned, a
    change is a re-basecall: the outputs so far set aside under a generation, every file
    basecalled again with the new ones, every read once in pass/ + fail/ at the end,
    and a restart does not do it again."""
    root = tmp_path / "data"
    files = chemistry_run(root, "PAW00011_11111111", 5000, "FLO-PRO114M", count=3)
    config = host_config(root, rules=parse_rules(list(RULES)))
    app = create_host_app(config)
    client = await aiohttp_client(app)
    url = str(client.make_url("")).rstrip("/")
    unit = app[HOST].units[RunKey("PAW00011", "11111111")]

    argv = ["run", "params", "PAW00011_11111111", "--set", "model=sup", "--url", url]
    assert await asyncio.to_thread(main, argv) == 0
    assert "PAW00011_11111111 basecalls with model=sup" in capsys.readouterr().out
    job = await (await client.get("/assignwork?engineid=gpu&batchsize=2&params=true")).json()
    assert job["params"] == {"model": "sup"}
    assert unit.pinned == {"model": "sup"}

    # pinned: without --rebasecall, refused; with a batch out, refused until it is back
    refused = await client.post("/runs/params?run=PAW00011_11111111&set=model=hac")
    assert refused.status == 409
    assert "rebasecall=true" in (await refused.json())["detail"]
    busy = await client.post("/runs/params?run=PAW00011_11111111&set=model=hac&rebasecall=1")
    assert busy.status == 409
    assert "1 batches of the run are out" in (await busy.json())["detail"]
    await finish_job(client, root, job)
    assert unit.reactor.count_fields()["done"] == 2

    with capture_logs() as logs:
        argv[4] = "model=hac"
        assert await asyncio.to_thread(main, [*argv, "--rebasecall"]) == 0
    (event,) = [e for e in logs if e["event"] == "run_rebasecall"]
    assert (event["before"], event["after"], event["files"]) == (
        {"model": "sup"},
        {"model": "hac"},
        2,
    )
    output = unit.place.output_dir
    first = [path for path in files if path.name in job["batch"]]
    assert recount(first, output / "superseded" / "1").ok, "the outputs of model=sup, aside"
    assert not (output / "fastq_pass").exists()
    assert unit.reactor.count_fields()["ready"] == 3
    record = json.loads((output / ".reactor" / "run" / "params.json").read_text())
    assert record["params"] == {"model": "hac"}
    assert record["rebasecall"] == {"generation": 1, "state": "finished"}
    while (
        job := await (await client.get("/assignwork?engineid=gpu&batchsize=2&params=true")).json()
    )["jobid"] != "-1":
        assert job["params"] == {"model": "hac"}
        await finish_job(client, root, job)
    assert recount(files, output).ok
    # each job's record says what made its outputs: the run's manifest
    made = [r.get("made_with") for r in map(json.loads, map(Path.read_text,
            (output / ".reactor" / "jobs").glob("*.json"))) if r["state"] == "done"]  # fmt: skip
    assert made and all(
        m
        == {
            "model": "hac",
            "min_qscore": "9",
            "output_layout": "minknow",
            "reactor": reactor_version(),
        }
        for m in made
    ), made
    bad = await client.post("/runs/params?run=PAW00011_11111111&set=speed=max&rebasecall=true")
    assert bad.status == 400
    assert "'speed' is not a parameter" in (await bad.json())["detail"]
    await client.close()
    # a restart: the run as it is now, nothing basecalled a third time
    again = create_host_app(config)
    client = await aiohttp_client(again)
    unit = again[HOST].units[RunKey("PAW00011", "11111111")]
    assert unit.reactor.count_fields()["done"] == 3
    assert unit.pinned == {"model": "hac"}


async def finish_job(client: Any, root: Path, job: dict[str, Any]) -> None:
    for name in job["batch"]:
        ids = read_ids(root / job["job_input_dir"] / name)
        stem = name.removesuffix(".pod5")
        (root / job["job_output_dir"] / "pass" / f"{stem}.fastq").write_text(fastq(ids))
    reply = await client.get(f"/completed?job_id={job['jobid']}&job_state=DONE")
    assert reply.status == 200


async def test_a_rebasecall_a_crash_cut_short_is_finished_at_the_next_start(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    files = chemistry_run(root, "PAW00011_11111111", 5000, "FLO-PRO114M", count=2)
    config = host_config(root)
    app = create_host_app(config)
    client = await aiohttp_client(app)
    unit = app[HOST].units[RunKey("PAW00011", "11111111")]
    job = await (await client.get("/assignwork?engineid=gpu&batchsize=2&params=true")).json()
    await finish_job(client, root, job)
    output = unit.place.output_dir
    await client.close()
    # the decision reached the disk, then the power went: nothing was set aside yet
    record_path = output / ".reactor" / "run" / "params.json"
    record = json.loads(record_path.read_text())
    record.update(params={"model": "sup"}, rebasecall={"generation": 1, "state": "started"})
    record_path.write_text(json.dumps(record))
    with capture_logs() as logs:
        again = create_host_app(config)
        client = await aiohttp_client(again)
    assert [e["event"] for e in logs].count("run_rebasecall_finished") == 1
    unit = again[HOST].units[RunKey("PAW00011", "11111111")]
    assert unit.reactor.count_fields()["ready"] == 2, "basecalled again"
    assert recount(files, output / "superseded" / "1").ok, "set aside"
    while (
        job := await (await client.get("/assignwork?engineid=gpu&batchsize=2&params=true")).json()
    )["jobid"] != "-1":
        assert job["params"] == {"model": "sup"}
        await finish_job(client, root, job)
    assert recount(files, output).ok


async def test_seed_engines_can_be_kept_from_every_run(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    minknow_root(root)
    app = create_host_app(host_config(root, seed_engines=False))
    client = await aiohttp_client(app)
    seed = await (await client.get("/assignwork?engineid=seed&batchsize=1")).json()
    assert seed["jobid"] == "-1"
    told = await (await client.get("/assignwork?engineid=ref&batchsize=1&params=true")).json()
    assert told["jobid"] != "-1"


async def test_a_staged_run_goes_on_after_a_restart_and_matches_its_output_hash(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    root = tmp_path / "sequencer" / "data"
    out, stage = tmp_path / "cluster" / "out", tmp_path / "cluster" / "stage"
    out.mkdir(parents=True)
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00004_44444444"
    files = [pod5(run / "pod5" / f"PAW00004_44444444_{RUNID}_{i}.pod5", 40 + i) for i in range(4)]
    rows = [f"{RUNID},grp,PAW00004,s1,,pod5/{path.name},," for path in files]
    header = "runid,protocol_group_id,flow_cell_id,sample_id,file_hash,file_path,barcode,alias"
    (run / f"output_hash_PAW00004_44444444_{RUNID}.csv").write_text("\n".join([header, *rows]))
    config = ServeConfig(watch_root=(root,), output_root=out, stage_to=stage, sweep_interval=0.05)
    key = RunKey("PAW00004", "44444444")

    async def basecall(client: Any, answer: dict[str, Any]) -> None:
        for name in answer["batch"]:
            ids = read_ids(out / answer["job_input_dir"] / name)
            stem = name.removesuffix(".pod5")
            (out / answer["job_output_dir"] / "pass" / f"{stem}.fastq").write_text(fastq(ids))
        reply = await client.get(f"/completed?job_id={answer['jobid']}&job_state=DONE")
        assert reply.status == 200

    app = create_host_app(config)
    client = await aiohttp_client(app)
    unit = app[HOST].units[key]
    await wait_until(lambda: unit.reactor.count_fields()["ready"] == 4, "all four staged")
    first = await (await client.get("/assignwork?engineid=gpu1&batchsize=2")).json()
    await basecall(client, first)
    live = await (await client.get("/assignwork?engineid=gpu2&batchsize=1")).json()
    await client.close()  # the service stops with a job out

    app = create_host_app(config)
    client = await aiohttp_client(app)
    unit = app[HOST].units[key]
    counts = unit.reactor.count_fields()
    assert (counts["done"], counts["assigned"], counts["ready"]) == (2, 1, 1)
    await basecall(client, live)  # the engine of the job out carries on
    while (answer := await (await client.get("/assignwork?engineid=gpu1&batchsize=4")).json())[
        "jobid"
    ] != "-1":
        await basecall(client, answer)
    (run / f"final_summary_PAW00004_44444444_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: unit.reactor.hash_check is not None, "the cross-check")
    check = unit.reactor.hash_check
    assert check is not None
    assert (check["pod5_listed"], check["missing"], check["not_done"]) == (4, 0, 0)
    assert recount(files, unit.place.output_dir).ok
    assert unit.stager is not None
    assert unit.stager.copied == 0, "nothing staged twice: the copies made before served"


async def test_a_new_run_found_twice_at_once_is_started_once_and_pinned_once(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Discovery's event and its periodic pass can find a new run at the same moment
    (a real serve did, and two coordinators handed its files out twice); and several
    engines' first requests can pin its parameters at once."""
    root = tmp_path / "data"
    (root / "grp" / "s1").mkdir(parents=True)
    app = create_host_app(ServeConfig(watch_root=(root,), sweep_interval=3600), watch=False)
    client = await aiohttp_client(app)
    host = app[HOST]
    run = root / "grp" / "s1" / "20261205_1500_1A_PAW00005_eeeeeeee"
    files = [pod5(run / "pod5" / f"PAW00005_eeeeeeee_{RUNID}_{i}.pod5", 50 + i) for i in range(6)]
    (found,) = find_runs(root).runs
    with capture_logs() as logs:
        outcomes = await asyncio.gather(*(host._consider(found, 0.0) for _ in range(3)))
        assert sorted(outcomes) == ["known", "known", "started"]
        answers = await asyncio.gather(
            *(client.get(f"/assignwork?engineid=e{i}&batchsize=2") for i in range(4))
        )
        jobs = [await answer.json() for answer in answers]
    assert [e["event"] for e in logs].count("run_started") == 1
    assert [e["event"] for e in logs].count("run_params_pinned") == 1
    handed = [name for job in jobs for name in job["batch"]]
    assert len(handed) == len(set(handed)) == 6, "no file handed out twice"
    assert set(handed) == {path.name for path in files}


def merged_names(path: Path) -> list[str]:
    with dnaio.open(path) as reader:
        return sorted(record.name.split("\t")[0] for record in reader)


async def test_a_samples_runs_are_merged_as_each_completes(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """merge_outputs and merge_samples: each run's merged/ before its end; the sample's
    reactor_merged/ made again as each of its runs completes, of its complete runs only."""
    root = tmp_path / "data"
    files = minknow_root(root)
    app = create_host_app(host_config(root, merge_outputs=True, merge_samples=True))
    client = await aiohttp_client(app)
    host = app[HOST]
    await engine_works(client, root, "gpu1")
    pooled = root / "grp" / "pool"
    merged = pooled / "reactor_merged" / "fail.fastq.gz"  # no qs in these reads: all fail
    ids = {key: sorted(r for p in files[key] for r in read_ids(p)) for key in files}
    for number, key in enumerate(("PAW00003_cccccccc", "PAW00004_dddddddd")):
        unit = host.units[RunKey(*key.split("_"))]
        (pooled / f"final_summary_{key}_{RUNID}.txt").write_text("x=1\n")
        await wait_until(lambda unit=unit: unit.phase == "complete", "the run completes")
        assert merged_names(unit.place.output_dir / "merged" / "fail.fastq.gz") == ids[key]
        await host.discover()  # its end is noted: the sample is merged again
        expected = sorted(ids["PAW00003_cccccccc"] + (ids["PAW00004_dddddddd"] if number else []))
        # (the host's own periodic pass may have noted it first, merging meanwhile)
        await wait_until(
            lambda expected=expected: merged.exists() and merged_names(merged) == expected,
            "the sample merged again",
        )
    assert not (root / "grp" / "s1" / "reactor_merged").exists(), "no run of s1 completed"


async def test_an_engine_waiting_on_the_host_gets_the_first_file_of_a_new_run(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Long-poll in host mode: the host's waiters are woken by any run's ready file, a
    run found while the engine waits included."""
    root = tmp_path / "data"
    (root / "grp" / "s1").mkdir(parents=True)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    host = app[HOST]
    asked = asyncio.create_task(client.get("/assignwork?engineid=gpu&batchsize=5&wait_s=30"))
    await wait_until(lambda: len(host.waiters) == 1, "the engine to wait")
    run = root / "grp" / "s1" / "20261205_1500_1A_PAW00007_77777777"
    new = pod5(run / "pod5" / f"PAW00007_77777777_{RUNID}_0.pod5", 70)
    answer = await (await asyncio.wait_for(asked, 20)).json()
    assert answer["batch"] == [new.name]
    assert (await (await client.get("/status")).json())["engines_waiting"] == 0


async def test_the_fleet_reads_every_runs_work_together(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """What the fleet sizes engines by (`Host.engine_work`): the files waiting in every
    run, and each engine's work merged across the runs it took batches of."""
    root = tmp_path / "data"
    files = minknow_root(root)
    app = create_host_app(host_config(root))
    client = await aiohttp_client(app)
    total = sum(len(paths) for paths in files.values())
    before = app[HOST].engine_work()
    assert before.waiting_files == total and before.files_known == total
    assert before.engines == {}
    await engine_works(client, root, "gpu1")
    after = app[HOST].engine_work()
    assert after.waiting_files == 0 and after.files_known == total
    assert after.engines["gpu1"].files_done == total  # summed over the runs
    assert after.engines["gpu1"].live_jobs == 0


async def test_the_host_status_merges_engines_and_a_run_is_shown_in_detail(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The host's /status sums each engine over the runs it worked on (files, bases, speed)
    and gives each run a yield sparkline; /status?run= is that run as a single run's
    status, naming it; both true to the document."""
    root = tmp_path / "data"
    files = minknow_root(root)
    client = await aiohttp_client(create_host_app(host_config(root), watch=False))
    await engine_works(client, root, "gpu-a")
    body = await (await client.get("/status")).json()
    assert_documented("/status", 200, body)
    (engine,) = body["engines"]
    served = sum(len(names) for names in files.values())
    assert (engine["engine_id"], engine["files_done"], engine["runs"]) == ("gpu-a", served, 4)
    assert engine["bases"] == sum(run["reads"]["bases"] for run in body["runs"]) > 0
    assert all(run["yield"] and run["end"]["sequencing_finished"] is False for run in body["runs"])
    answer = await client.get("/status", params={"run": "PAW00001_aaaaaaaa"})
    detail = await answer.json()
    assert answer.status == 200, detail
    assert_documented("/status", 200, detail)
    assert detail["run"]["run"] == "PAW00001_aaaaaaaa"
    assert detail["files"]["done"] == len(files["PAW00001_aaaaaaaa"])
    assert detail["reads"]["yield"]["arrivals"]["bases"]
    missing = await client.get("/status", params={"run": "PAW00009_99999999"})
    assert missing.status == 404  # archived: found under the root, not served
    assert_documented("/status", 404, await missing.json())
    unknown = await client.get("/status", params={"run": "nothing_here"})
    assert (unknown.status, (await unknown.json())["error"]) == (404, "unknown_run")


async def test_a_file_that_comes_after_its_run_completed_is_basecalled_and_it_stays_complete(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """As in a single run: a late file (or one requeued from quarantine after the end)
    is handed out and merged; the run stays complete and on_complete is not run again."""
    root = tmp_path / "data"
    (root / "grp" / "s1").mkdir(parents=True)
    app = create_host_app(host_config(root, on_complete=None))
    client = await aiohttp_client(app)
    host = app[HOST]
    run = root / "grp" / "s1" / "20261205_1500_1A_PAW00006_ffffffff"
    first = [pod5(run / "pod5" / f"PAW00006_ffffffff_{RUNID}_0.pod5", 70)]
    key = RunKey("PAW00006", "ffffffff")
    await wait_until(lambda: key in host.units, "the run is adopted")
    await wait_until(lambda: host.units[key].reactor.count_fields()["ready"] == 1, "ready")
    await engine_works(client, root, "gpu1")
    (run / f"final_summary_PAW00006_ffffffff_{RUNID}.txt").write_text("x=1\n")
    await wait_until(lambda: host.units[key].phase == "complete", "the run completes")
    late = [pod5(run / "pod5" / f"PAW00006_ffffffff_{RUNID}_1.pod5", 71)]
    await wait_until(lambda: host.units[key].reactor.count_fields()["ready"] == 1, "late ready")
    jobs = await engine_works(client, root, "gpu1")
    assert [job["batch"] for job in jobs] == [[late[0].name]]
    assert recount(first + late, host.units[key].place.output_dir).ok
    assert host.units[key].phase == "complete"
