"""The HTTP API through the real app (`aiohttp_client`): every verb and error path."""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from structlog.testing import capture_logs

from reactor.serve.api import ApiError, access_middleware
from reactor.serve.app import create_app
from reactor.serve.app_keys import REACTOR, SWEEPER
from tests.support.api import LEASE_S, Client, add_files, get_json, write_outputs
from tests.support.paths import REPO
from tests.support.records import job_record
from tests.support.runs import ManualClock, RunDirs


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -------------------------------------------------------------- assignwork


async def test_assignwork_hands_out_oldest_files_with_seed_fields(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """A batch lists the oldest ready files and carries every field of the seed's BCBatch."""
    names = add_files(run_dirs, 5)
    client = await make_client()
    body = await get_json(client, "/assignwork", engineid="gpu-01", batchsize=3)
    assert set(body) == {
        "jobid", "job_input_dir", "job_output_dir", "bc_engine_id", "batch_size", "batch",
        "report_back_period", "report_back_interval",
    }  # fmt: skip
    assert body["batch"] == names[:3]
    assert body["batch_size"] == 3
    assert body["bc_engine_id"] == "gpu-01"
    assert body["report_back_interval"] == LEASE_S
    assert body["job_input_dir"] == f"ASSIGNED_{body['jobid']}_gpu-01"
    assert body["job_output_dir"] == f"TMPOUTPUT_{body['jobid']}_gpu-01"
    links = run_dirs.input_dir / body["job_input_dir"]
    assert sorted(os.listdir(links)) == names[:3]
    for name in names[:3]:
        assert (links / name).resolve() == (run_dirs.input_dir / name).resolve()
        assert not (links / name).readlink().is_absolute()
    out = run_dirs.output_dir / body["job_output_dir"]
    assert (out / "pass").is_dir()
    assert (out / "fail").is_dir()


async def test_job_ids_are_unguessable_and_distinct(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """Two batches for the same engine get different, long random job ids (seed bug: hash)."""
    add_files(run_dirs, 4)
    client = await make_client()
    first = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    second = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    assert first["jobid"] != second["jobid"]
    assert len(first["jobid"]) >= 30
    assert set(first["batch"]).isdisjoint(second["batch"])


async def test_empty_queue_answers_the_seed_empty_batch(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    client = await make_client()
    body = await get_json(client, "/assignwork", engineid="e", batchsize=5)
    assert body["jobid"] == "-1"
    assert body["batch_size"] == 0
    assert body["batch"] == []


@pytest.mark.parametrize("batchsize", ["0", "-3", ""])
async def test_non_positive_or_empty_batchsize_uses_default(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, batchsize: str
) -> None:
    add_files(run_dirs, 6)
    client = await make_client(batch_size=4)
    body = await get_json(client, "/assignwork", engineid="e", batchsize=batchsize)
    assert body["batch_size"] == 4


async def test_missing_batchsize_uses_default(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 3)
    client = await make_client(batch_size=2)
    body = await get_json(client, "/assignwork", engineid="e")
    assert body["batch_size"] == 2


async def test_huge_batchsize_hands_out_what_there_is(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 3)
    client = await make_client()
    body = await get_json(client, "/assignwork", engineid="e", batchsize=str(10**9))
    assert body["batch_size"] == 3


BAD_ENGINE_IDS = ["", "/", "..", "../x", "a/b", "a\x00b", "x" * 5000, "é", ".hidden", "a b", "\n"]


@pytest.mark.parametrize("engine_id", BAD_ENGINE_IDS)
async def test_bad_engineid_is_rejected_and_creates_nothing(
    make_client: Callable[..., Awaitable[Client]],
    run_dirs: RunDirs,
    tmp_path: Path,
    engine_id: str,
) -> None:
    """engineids that could escape or confuse the run folders get 400, and no folder."""
    add_files(run_dirs, 2)
    client = await make_client()
    before = tree(tmp_path)
    body = await get_json(client, "/assignwork", 400, engineid=engine_id, batchsize=1)
    assert body["error"] == "bad_engineid"
    assert "engineid" in body["detail"]
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/assignwork", {}, 400),
        ("/assignwork", {"engineid": "e", "batchsize": "ten"}, 400),
        ("/assignwork", {"engineid": "e", "batchsize": "1.5"}, 400),
        ("/assignwork", {"engineid": "e", "batchsize": "9" * 400}, 400),
        ("/keepalive", {}, 400),
        ("/keepalive", {"job_id": "123"}, 400),
        ("/keepalive", {"job_id": "abc", "job_state": "PROCESSING"}, 400),
        ("/keepalive", {"job_id": "-1", "job_state": "PROCESSING"}, 400),
        ("/keepalive", {"job_id": "123", "job_state": "PROCESSING"}, 404),
        ("/keepalive", {"job_id": "123", "job_state": "x\x00"}, 400),
        ("/completed", {"job_id": "123"}, 400),
        ("/completed", {"job_id": "../../etc", "job_state": "DONE"}, 400),
        ("/completed", {"job_id": "123", "job_state": "DONE"}, 404),
        ("/completed", {"job_id": "123", "job_state": "y" * 5000}, 400),
        ("/nowhere", {}, 404),
    ],
)
async def test_malformed_requests_get_json_4xx(
    make_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    path: str,
    params: dict[str, str],
    status: int,
) -> None:
    """Missing, non-numeric or unsafe parameters and unknown jobs: JSON error, never 500."""
    client = await make_client()
    before = tree(tmp_path)
    body = await get_json(client, path, status, **params)
    assert set(body) == {"error", "detail"}
    assert "Traceback" not in body["detail"]
    assert tree(tmp_path) == before


async def test_duplicated_parameter_is_rejected(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    response = await client.get("/assignwork?engineid=a&engineid=b&batchsize=1")
    assert response.status == 400
    assert "engineid" in (await response.json())["detail"]


async def test_post_is_not_allowed(make_client: Callable[..., Awaitable[Client]]) -> None:
    client = await make_client()
    response = await client.post("/assignwork", data={"engineid": "e"})
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"


# ------------------------------------------------------ keepalive / sweeper


async def test_keepalive_extends_the_lease_and_expiry_answers_late(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Keepalives keep a job alive past its first deadline; silence expires it, and the
    engine's next keepalive is told late=true; its files go back to the queue front."""
    names = add_files(run_dirs, 3)
    client = await make_client()
    app = client.server.app
    job = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    jid = job["jobid"]
    clock.advance(LEASE_S * 0.8)
    assert await get_json(client, "/keepalive", job_id=jid, job_state="PROCESSING") == {
        "late": False
    }
    clock.advance(LEASE_S * 0.8)  # past the first deadline, within the extended one
    assert await app[SWEEPER].sweep_once(clock()) == []
    clock.advance(LEASE_S * 0.3)
    expired = await app[SWEEPER].sweep_once(clock())
    assert [j.job_id for j in expired] == [jid]
    assert await get_json(client, "/keepalive", job_id=jid, job_state="PROCESSING") == {
        "late": True
    }
    assert not (run_dirs.input_dir / job["job_input_dir"]).exists()
    again = await get_json(client, "/assignwork", engineid="f", batchsize=3)
    assert again["batch"] == [names[0], names[1], names[2]]


# ------------------------------------------------------------------ completed


async def test_completed_done_merges_outputs_with_job_tag_and_is_repeatable(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    jid = job["jobid"]
    write_outputs(run_dirs, job)
    assert await get_json(client, "/completed", job_id=jid, job_state="DONE") == {"ok": True}
    passed = sorted(os.listdir(run_dirs.output_dir / "pass"))
    assert passed == sorted(f"job_id_{jid}_{n.removesuffix('.pod5')}.fastq" for n in job["batch"])
    assert os.listdir(run_dirs.output_dir / "fail") == [f"job_id_{jid}_rejects.fastq"]
    logs = run_dirs.output_dir / f"LOGOUTPUT_{jid}_e"
    assert (logs / "engine.log").read_text() == "log"
    assert not (logs / "reactor-job.json").exists()  # reactor's records live apart
    assert job_record(run_dirs.output_dir, jid)["state"] == "done"
    assert not (run_dirs.input_dir / job["job_input_dir"]).exists()
    assert await get_json(client, "/completed", job_id=jid, job_state="DONE") == {"ok": True}
    assert sorted(os.listdir(run_dirs.output_dir / "pass")) == passed
    body = await get_json(client, "/completed", 409, job_id=jid, job_state="FAILED")
    assert body["error"] == "conflict"


async def test_an_output_whose_name_is_taken_stays_with_the_job_and_is_said(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """A merge never overwrites a result, and never skips one silently: an output whose
    tagged name already exists in pass/ stays in the job's leftovers, logged and counted."""
    add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="e", batchsize=2)
    jid = job["jobid"]
    write_outputs(run_dirs, job)
    first = job["batch"][0].removesuffix(".pod5")
    taken = run_dirs.output_dir / "pass" / f"job_id_{jid}_{first}.fastq"
    taken.write_text("somebody else's\n")
    with capture_logs() as logs:
        assert await get_json(client, "/completed", job_id=jid, job_state="DONE") == {"ok": True}
    assert taken.read_text() == "somebody else's\n"
    kept = run_dirs.output_dir / f"LOGOUTPUT_{jid}_e" / "pass" / f"{first}.fastq"
    assert kept.read_text() == "@r\nA\n+\n!\n"
    second = job["batch"][1].removesuffix(".pod5")
    assert (run_dirs.output_dir / "pass" / f"job_id_{jid}_{second}.fastq").is_file()
    said = [entry for entry in logs if entry["event"] == "outputs_not_merged"]
    assert [(e["outputs"], e["folder"], e["job_id"]) for e in said] == [
        ([f"pass/{first}.fastq: its name is taken in the results"], f"LOGOUTPUT_{jid}_e", jid)
    ]
    metrics = await (await client.get("/metrics")).text()
    assert "reactor_outputs_not_merged_total 1.0" in metrics


async def test_completed_failed_requeues_then_quarantines_at_max_attempts(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    names = add_files(run_dirs, 1)
    client = await make_client(max_attempts=2)
    first = await get_json(client, "/assignwork", engineid="e", batchsize=1)
    await get_json(client, "/completed", job_id=first["jobid"], job_state="FAILED")
    assert (run_dirs.output_dir / f"RETRIEDOUTPUT_{first['jobid']}_e").is_dir()
    second = await get_json(client, "/assignwork", engineid="e", batchsize=1)
    assert second["batch"] == names
    await get_json(client, "/completed", job_id=second["jobid"], job_state="failed")
    quarantine = run_dirs.input_dir / f"FAILED_{second['jobid']}_e"
    assert os.listdir(quarantine) == names
    assert (run_dirs.output_dir / f"FAILEDOUTPUT_{second['jobid']}_e").is_dir()
    third = await get_json(client, "/assignwork", engineid="e", batchsize=1)
    assert third["batch"] == []
    status = await get_json(client, "/status")
    assert status["files"]["quarantined"] == 1


async def test_completed_with_unknown_state_sets_the_job_aside(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 1)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="e", batchsize=1)
    await get_json(client, "/completed", job_id=job["jobid"], job_state="STOPPED")
    assert (run_dirs.input_dir / f"UNKNOWN_{job['jobid']}_e").is_dir()
    assert (run_dirs.output_dir / f"UNKNOWNOUTPUT_{job['jobid']}_e").is_dir()


async def test_late_done_is_merged_when_no_file_went_out_again(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, clock: ManualClock
) -> None:
    add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="slow", batchsize=2)
    write_outputs(run_dirs, job)
    await client.server.app[SWEEPER].sweep_once(clock.advance(LEASE_S + 1))
    assert await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE") == {
        "ok": True
    }
    assert len(os.listdir(run_dirs.output_dir / "pass")) == 2
    status = await get_json(client, "/status")
    assert status["files"]["done"] == 2
    assert status["files"]["ready"] == 0


async def test_late_done_after_reassignment_is_200_not_merged_and_outputs_stay_aside(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs, clock: ManualClock
) -> None:
    """Not the slow engine's fault, so not an error a seed engine would die of: a 200
    saying nothing was merged, its outputs kept aside, logged late_done_not_merged."""
    add_files(run_dirs, 2)
    client = await make_client()
    job = await get_json(client, "/assignwork", engineid="slow", batchsize=2)
    write_outputs(run_dirs, job)
    await client.server.app[SWEEPER].sweep_once(clock.advance(LEASE_S + 1))
    again = await get_json(client, "/assignwork", engineid="fast", batchsize=2)
    assert sorted(again["batch"]) == sorted(job["batch"])
    with capture_logs() as logs:
        body = await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
        repeated = await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    assert (body["ok"], body["merged"]) == (True, False)
    assert "handed out again" in body["detail"]
    assert repeated == body
    assert os.listdir(run_dirs.output_dir / "pass") == []
    aside = f"EXPIREDOUTPUT_{job['jobid']}_slow"
    assert (run_dirs.output_dir / aside / "pass").is_dir()
    said = [e for e in logs if e["event"] == "late_done_not_merged"]
    assert [(e["job_id"], e["folder"]) for e in said] == [(job["jobid"], aside)] * 2


# ------------------------------------------------------------ other routes


async def test_heartbeat_reports_inactivity_like_the_seed(
    make_client: Callable[..., Awaitable[Client]], clock: ManualClock
) -> None:
    client = await make_client(shutdown_interval=100.0)
    body = await get_json(client, "/heartbeat")
    assert body == {"status": "false", "inactivity_interval": 0.0}
    clock.advance(150)
    body = await get_json(client, "/heartbeat")
    assert body == {"status": "true", "inactivity_interval": 150.0}
    await get_json(client, "/assignwork", engineid="e")
    assert (await get_json(client, "/heartbeat"))["status"] == "false"


async def test_status_health_and_readiness(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    add_files(run_dirs, 3)
    client = await make_client()
    await get_json(client, "/assignwork", engineid="e", batchsize=1)
    status = await get_json(client, "/status")
    assert status["files"] == {
        "incomplete": 0, "ready": 2, "assigned": 1, "done": 0, "quarantined": 0
    }  # fmt: skip
    assert [e["engine_id"] for e in status["engines"]] == ["e"]
    assert len(status["jobs"]["live"]) == 1
    assert await get_json(client, "/healthz") == {"status": "ok"}
    assert await get_json(client, "/readyz") == {"status": "ready"}
    client.server.app[REACTOR].ready = False
    assert (await get_json(client, "/readyz", 503))["error"] == "not_ready"


async def test_token_is_required_when_configured(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    """With a token, engine verbs need it (header or seed-style query); probes do not."""
    client = await make_client(token="s3cret-token-value")
    assert (await get_json(client, "/assignwork", 401, engineid="e"))["error"] == "unauthorized"
    response = await client.get(
        "/assignwork", params={"engineid": "e"}, headers={"Authorization": "Bearer wrong"}
    )
    assert response.status == 401
    response = await client.get(
        "/assignwork",
        params={"engineid": "e"},
        headers={"Authorization": "Bearer s3cret-token-value"},
    )
    assert response.status == 200
    await get_json(client, "/assignwork", engineid="e", token="s3cret-token-value")
    await get_json(client, "/healthz")


def test_readme_documents_every_route(run_dirs: RunDirs) -> None:
    """Each route the app serves has a row in the protocol tables of docs/protocol.md."""
    readme = (REPO / "docs" / "protocol.md").read_text()
    app = create_app(run_dirs.config(), watch=False, sweep=False)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource and route.method != "HEAD"
    }
    assert routes
    for method, path in routes:
        assert f"`{method} {path}" in readme, path


async def test_a_done_whose_output_folder_is_gone_is_refused_not_a_503(
    make_client: Callable[..., Awaitable[Client]], run_dirs: RunDirs
) -> None:
    """One job's broken folder is that job's trouble, not the run's: its DONE is refused
    (200, nothing merged), the job is held for a person with the reason, its file goes
    back to the queue, and the next engine gets it."""
    add_files(run_dirs, 1)
    client = await make_client(storage_grace=0.2)
    job = await get_json(client, "/assignwork", engineid="e", batchsize=1)
    shutil.rmtree(run_dirs.output_dir / job["job_output_dir"])
    body = await get_json(client, "/completed", job_id=job["jobid"], job_state="DONE")
    assert (body["ok"], body["merged"]) == (True, False)
    assert "is gone" in body["detail"]
    state = client.server.app[REACTOR].state
    assert [(j.job_id, j.state) for j in state.held_jobs()] == [(job["jobid"], "refused")]
    again = await get_json(client, "/assignwork", engineid="f", batchsize=1)
    assert again["batch"] == job["batch"]


class _Peer:
    """A transport that reports a chosen client address (the allow-list reads it)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.address, 50000) if name == "peername" else default


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("10.1.2.3", True), ("10.2.0.1", False), ("192.168.1.1", False), ("127.0.0.1", True)],
)
async def test_allow_list_admits_only_listed_networks_and_loopback(
    run_dirs: RunDirs, address: str, allowed: bool
) -> None:
    """The access middleware lets in clients from `allow` networks (and loopback) only."""
    app = create_app(
        run_dirs.config(allow=(ipaddress.ip_network("10.1.0.0/16"),)), watch=False, sweep=False
    )

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"reached": True})

    request = make_mocked_request("GET", "/status", app=app, transport=_Peer(address))
    if allowed:
        response = await access_middleware(request, handler)
        assert response.status == 200
    else:
        with pytest.raises(ApiError) as raised:
            await access_middleware(request, handler)
        assert raised.value.status == 403
