"""`EngineClient`'s retry policy and `Engine`'s handling of each answer, against a scripted
manager on a real socket (so each verb's answer can be chosen: 404s, 409s, 5xx, late),
with real subprocesses for commands."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from reactor.engine.client import (
    BadAnswer,
    EngineClient,
    ManagerRefused,
    ManagerUnavailable,
)
from reactor.engine.runner import Engine
from reactor.settings.engine import EngineConfig
from tests.support.engine_run import gone

pytestmark = pytest.mark.timeout(30)
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]
Answer = tuple[int, dict[str, Any]]
JOB = "4242"
OK: Answer = (200, {"ok": True})


@dataclass
class Script:
    """What the scripted manager answers, and what it was asked (in order)."""

    input_dir: Path
    output_dir: Path
    batches: list[list[str]] = field(default_factory=list)
    lease_s: float = 30.0
    assign: Callable[[], Answer] | None = None
    keepalive: Callable[[], Answer] = lambda: (200, {"late": False})
    completed: list[Answer] = field(default_factory=list)  # then 200 {"ok": true}
    params: dict[str, str] | None = None  # a host-mode manager's params for each batch
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    made_folders: bool = True

    def verbs(self, verb: str) -> list[dict[str, str]]:
        return [params for name, params in self.calls if name == verb]

    def next_assignment(self) -> Answer:
        if self.assign is not None:
            return self.assign()
        if not self.batches:
            return 200, {"jobid": "-1", "batch_size": 0, "batch": [], "report_back_interval": 1}
        batch = self.batches.pop(0)
        job_id = f"{JOB}{len(self.verbs('assignwork'))}"
        job_in, job_out = f"ASSIGNED_{job_id}_gpu", f"TMPOUTPUT_{job_id}_gpu"
        if self.made_folders:
            (self.input_dir / job_in).mkdir()
            for kind in ("", "pass", "fail"):
                (self.output_dir / job_out / kind).mkdir(exist_ok=True)
        answer = {
            "jobid": job_id,
            "job_input_dir": job_in,
            "job_output_dir": job_out,
            "bc_engine_id": "gpu",
            "batch_size": len(batch),
            "batch": batch,
            "report_back_period": self.lease_s,
            "report_back_interval": self.lease_s,
        }
        if self.params is not None:
            answer["params"] = self.params
        return 200, answer

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            verb = request.path.strip("/")
            self.calls.append((verb, dict(request.query)))
            if verb == "assignwork":
                status, body = self.next_assignment()
            elif verb == "keepalive":
                status, body = self.keepalive()
            else:
                status, body = self.completed.pop(0) if self.completed else OK
            return web.json_response(body, status=status)

        app = web.Application()
        for verb in ("assignwork", "keepalive", "completed"):
            app.router.add_get(f"/{verb}", handle)
        return app


@pytest.fixture
def script(tmp_path: Path) -> Script:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return Script(tmp_path / "in", tmp_path / "out")


@pytest.fixture
async def manager_url(script: Script, aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(script.app())
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_client(session: aiohttp.ClientSession, url: str, grace_s: float = 5.0) -> EngineClient:
    return EngineClient(
        session, url, engine_id="gpu", grace_s=grace_s, retry_first_s=0.02, retry_max_s=0.1
    )


async def run_engine(
    script: Script, session: aiohttp.ClientSession, url: str, command: str, **settings: Any
) -> tuple[int, Engine]:
    settings = {
        "engine_id": "gpu",
        "poll_interval": 0.01,
        "max_poll_interval": 0.05,
        "kill_grace": 2.0,
        "until_empty": True,
        **settings,
    }
    config = EngineConfig(
        input_dir=script.input_dir, output_dir=script.output_dir, command=command, **settings
    )
    engine = Engine(config, make_client(session, url, config.grace))
    code = await asyncio.wait_for(engine.run(), 20)
    return code, engine


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def started_pid(logs: list[MutableMapping[str, Any]]) -> int:
    (started,) = events(logs, "command_started")
    pid: int = started["pid"]
    return pid


def job_out(script: Script) -> Path:
    (folder,) = script.output_dir.glob("TMPOUTPUT_*")
    return folder


# ------------------------------------------------------------------- client


async def test_the_client_retries_5xx_until_the_manager_answers(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    answers = iter([(503, {}), (502, {}), (200, {"late": False})])
    script.keepalive = lambda: next(answers)
    with capture_logs() as logs:
        late = await make_client(session, manager_url).keepalive(JOB)
    assert late is False
    assert len(script.verbs("keepalive")) == 3
    # the first failure is a warning, the next ones debug lines
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("manager_unreachable", "warning"),
        ("manager_unreachable", "debug"),
        ("manager_reachable", "info"),
    ]


async def test_the_client_does_not_retry_a_4xx(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.keepalive = lambda: (404, {"error": "unknown_job", "detail": "never handed out"})
    with pytest.raises(ManagerRefused) as caught:
        await make_client(session, manager_url).keepalive(JOB)
    assert (caught.value.status, caught.value.detail) == (404, "never handed out")
    assert len(script.verbs("keepalive")) == 1


async def test_the_client_gives_up_after_grace_when_nobody_listens(
    session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    began = time.monotonic()
    with pytest.raises(ManagerUnavailable, match="no answer to /completed"):
        await make_client(session, url, grace_s=0.3).completed(JOB, "DONE")
    assert 0.3 <= time.monotonic() - began < 3


async def test_the_client_sends_the_token_and_checks_answers(
    script: Script, aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    seen: list[str] = []

    async def keepalive(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text="<html>proxy error page</html>")

    app = web.Application()
    app.router.add_get("/keepalive", keepalive)
    server = await aiohttp_server(app)
    client = EngineClient(
        session,
        str(server.make_url("")),
        engine_id="gpu",
        grace_s=1,
        retry_first_s=0.01,
        retry_max_s=0.01,
        token="s3cret",
    )
    with pytest.raises(BadAnswer, match="not JSON"):
        await client.keepalive(JOB)
    assert seen == ["Bearer s3cret"]


# ------------------------------------------------------------------ batches


async def test_exit_0_reports_done_with_stdout_to_its_file_and_stderr_to_engine_log(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5", "b.pod5"]]
    command = "sh -c 'echo calls-for-$0-$1; echo progress >&2' {job_id} {batch_size}"
    code, engine = await run_engine(
        script, session, manager_url, command, stdout_to="{output_dir}/pass/{job_id}.fastq"
    )
    assert code == 0
    (done,) = script.verbs("completed")
    job_id = done["job_id"]
    assert done["job_state"] == "DONE"
    folder = job_out(script)
    assert (folder / "pass" / f"{job_id}.fastq").read_text() == f"calls-for-{job_id}-2\n"
    log = (folder / "engine.log").read_text()
    assert log.startswith("# reactor engine: sh -c")
    assert "progress" in log
    assert "calls-for" not in log.splitlines()[-1]
    assert engine.tally.fields() == {"jobs_done": 1}


async def test_a_non_zero_exit_reports_failed_and_the_engine_goes_on(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"], ["b.pod5"]]
    code, engine = await run_engine(script, session, manager_url, "sh -c 'exit 3'")
    assert code == 0
    assert [c["job_state"] for c in script.verbs("completed")] == ["FAILED", "FAILED"]
    assert engine.tally.fields() == {"jobs_failed": 2}


async def test_keepalives_say_processing_every_half_lease(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.2
    code, _ = await run_engine(script, session, manager_url, "sleep 0.45")
    assert code == 0
    keepalives = script.verbs("keepalive")
    assert 2 <= len(keepalives) <= 5
    assert {k["job_state"] for k in keepalives} == {"PROCESSING"}
    assert [verb for verb, _ in script.calls if verb != "assignwork"][-1] == "completed"


async def test_late_stops_the_command_and_reports_nothing(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.1
    script.keepalive = lambda: (200, {"late": True})
    with capture_logs() as logs:
        code, engine = await run_engine(script, session, manager_url, "sleep 30")
    assert code == 0
    assert not script.verbs("completed")
    assert events(logs, "job_late")
    assert gone(started_pid(logs))
    assert engine.tally.fields() == {"jobs_late": 1}


async def test_a_command_deaf_to_sigterm_is_killed_after_kill_grace(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.1
    script.keepalive = lambda: (200, {"late": True})
    with capture_logs() as logs:
        await run_engine(
            script, session, manager_url, "sh -c 'trap \"\" TERM; sleep 30'", kill_grace=0.3
        )
    (stopped,) = events(logs, "command_stopped")
    assert stopped["exit_code"] == -signal.SIGKILL


async def test_a_404_keepalive_means_the_job_is_forgotten(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.1
    script.keepalive = lambda: (404, {"error": "unknown_job", "detail": "never handed out"})
    with capture_logs() as logs:
        code, engine = await run_engine(script, session, manager_url, "sleep 30")
    assert code == 0
    assert not script.verbs("completed")
    assert events(logs, "job_forgotten")[0]["status"] == 404
    assert gone(started_pid(logs))
    assert engine.tally.fields() == {"jobs_forgotten": 1}


async def test_a_manager_away_past_grace_makes_the_engine_give_the_batch_up(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.1
    script.keepalive = lambda: (503, {})
    with capture_logs() as logs:
        code, engine = await run_engine(script, session, manager_url, "sleep 30", grace=0.4)
    assert code == 0
    assert not script.verbs("completed")
    assert events(logs, "job_abandoned")[0]["reason"] == "manager_unavailable"
    assert gone(started_pid(logs))
    assert engine.tally.fields() == {"jobs_abandoned": 1}


async def test_a_manager_away_briefly_is_ridden_out(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.lease_s = 0.1
    away: Iterator[Answer] = iter([(503, {}), (500, {})] * 2)
    script.keepalive = lambda: next(away, (200, {"late": False}))
    script.completed = [(502, {}), (503, {})]
    code, engine = await run_engine(script, session, manager_url, "sleep 0.5", grace=5)
    assert code == 0
    assert [c["job_state"] for c in script.verbs("completed")] == ["DONE"] * 3
    assert engine.tally.fields() == {"jobs_done": 1}


async def test_a_409_on_completed_is_logged_and_final(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    script.completed = [(409, {"error": "conflict", "detail": "files went out again"})]
    with capture_logs() as logs:
        code, _ = await run_engine(script, session, manager_url, "true")
    assert code == 0
    assert len(script.verbs("completed")) == 1
    assert events(logs, "completion_rejected")[0]["detail"] == "files went out again"


async def test_a_done_the_manager_did_not_merge_is_said_and_final(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    """A late DONE whose files went to another engine: 200 with merged false. The engine
    says so (job_not_merged, with the manager's detail) instead of job_reported."""
    script.batches = [["a.pod5"]]
    detail = "job 1 expired and its files were handed out again"
    script.completed = [(200, {"ok": True, "merged": False, "detail": detail})]
    with capture_logs() as logs:
        code, _ = await run_engine(script, session, manager_url, "true")
    assert code == 0
    assert len(script.verbs("completed")) == 1
    assert [e["detail"] for e in events(logs, "job_not_merged")] == [detail]
    assert events(logs, "job_reported") == []


async def test_the_engine_asks_again_until_work_comes(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    empty: Answer = (200, {"jobid": "-1", "batch_size": 0, "batch": []})
    answers = iter([empty] * 4)

    def assign() -> Answer:
        answer = next(answers, None)
        if answer is None:
            script.assign = None
            script.batches = [["a.pod5"]]
            return script.next_assignment()
        return answer

    script.assign = assign
    code, engine = await run_engine(
        script, session, manager_url, "true", until_empty=False, once=True
    )
    assert code == 0
    assert len(script.verbs("assignwork")) == 5
    assert {a["batchsize"] for a in script.verbs("assignwork")} == {"0"}
    assert engine.tally.fields() == {"jobs_done": 1}


async def test_a_signal_while_idle_exits_0_at_once(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    config = EngineConfig(
        input_dir=script.input_dir, output_dir=script.output_dir, command="true", engine_id="gpu"
    )
    engine = Engine(config, make_client(session, manager_url))
    running = asyncio.create_task(engine.run())
    while not script.verbs("assignwork"):
        await asyncio.sleep(0.01)
    engine.on_signal(signal.SIGTERM)
    assert await asyncio.wait_for(running, 5) == 0


async def test_the_second_signal_stops_the_command_and_reports_released(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    """Handed back, not failed: RELEASED, so the files go back with nothing counted."""
    script.batches = [["a.pod5"], ["b.pod5"]]
    config = EngineConfig(
        input_dir=script.input_dir,
        output_dir=script.output_dir,
        command="sleep 30",
        engine_id="gpu",
    )
    engine = Engine(config, make_client(session, manager_url))
    with capture_logs() as logs:
        running = asyncio.create_task(engine.run())
        while not events(logs, "command_started"):
            await asyncio.sleep(0.01)
        engine.on_signal(signal.SIGTERM)
        engine.on_signal(signal.SIGINT)
        assert await asyncio.wait_for(running, 10) == 1
    assert [c["job_state"] for c in script.verbs("completed")] == ["RELEASED"]
    assert len(script.verbs("assignwork")) == 1
    assert gone(started_pid(logs))
    assert [e["state"] for e in events(logs, "job_reported")] == ["RELEASED"]
    assert engine.tally.fields() == {"jobs_released": 1}


async def start_and_signal(
    script: Script,
    manager_url: str,
    session: aiohttp.ClientSession,
    logs: list[MutableMapping[str, Any]],
    command: str,
    **settings: Any,
) -> tuple[asyncio.Task[int], Engine, float]:
    """An engine running `command` on one batch, sent a first SIGTERM once the command
    runs (seen in `logs`, captured by the caller); returns its run, the engine and when
    the signal came."""
    script.batches = [["a.pod5"], ["b.pod5"]]
    config = EngineConfig(
        input_dir=script.input_dir,
        output_dir=script.output_dir,
        command=command,
        engine_id="gpu",
        kill_grace=2.0,
        **settings,
    )
    engine = Engine(config, make_client(session, manager_url))
    running = asyncio.create_task(engine.run())
    while not events(logs, "command_started"):
        await asyncio.sleep(0.01)
    engine.on_signal(signal.SIGTERM)
    return running, engine, time.monotonic()


async def test_release_after_hands_the_batch_back_while_the_first_signal_waits(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    """A command still running `release_after` seconds after the first signal is stopped
    and its batch reported RELEASED; the engine takes no more work and exits 0."""
    with capture_logs() as logs:
        running, engine, signalled = await start_and_signal(
            script, manager_url, session, logs, "sleep 30", release_after=0.5
        )
        await asyncio.sleep(0.2)
        assert not script.verbs("completed")  # the first signal alone waits for the batch
        assert await asyncio.wait_for(running, 10) == 0
    waited = time.monotonic() - signalled
    assert 0.5 <= waited < 5
    assert [c["job_state"] for c in script.verbs("completed")] == ["RELEASED"]
    assert len(script.verbs("assignwork")) == 1
    assert gone(started_pid(logs))
    assert [e["release_after_s"] for e in events(logs, "release_due")] == [0.5]
    assert engine.tally.fields() == {"jobs_released": 1}


async def test_a_batch_that_ends_within_release_after_is_reported_as_it_ended(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    with capture_logs() as logs:
        running, engine, _ = await start_and_signal(
            script, manager_url, session, logs, "sleep 0.2", release_after=0.6
        )
        assert await asyncio.wait_for(running, 10) == 0
        await asyncio.sleep(0.8)  # past release_after: the timer went with the engine
    assert [c["job_state"] for c in script.verbs("completed")] == ["DONE"]
    assert not events(logs, "release_due")
    assert not engine.handing_back.is_set()
    assert engine.tally.fields() == {"jobs_done": 1}


async def test_job_folders_missing_here_report_failed_and_exit_3(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"], ["b.pod5"]]
    script.made_folders = False
    with capture_logs() as logs:
        code, _ = await run_engine(script, session, manager_url, "true", grace=0.3)
    assert code == 3
    assert [c["job_state"] for c in script.verbs("completed")] == ["FAILED"]
    assert events(logs, "job_folder_missing")


async def test_a_command_that_cannot_start_reports_failed_and_exits_3(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"], ["b.pod5"]]
    code, _ = await run_engine(script, session, manager_url, "{input_dir}/no-such-program")
    assert code == 3
    assert [c["job_state"] for c in script.verbs("completed")] == ["FAILED"]


async def test_a_refused_request_for_work_exits_3(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.assign = lambda: (401, {"error": "unauthorized", "detail": "send a token"})
    with capture_logs() as logs:
        code, _ = await run_engine(script, session, manager_url, "true")
    assert code == 3
    assert len(script.verbs("assignwork")) == 1
    assert "send a token" in events(logs, "engine_gave_up")[0]["detail"]


async def test_the_command_runs_in_its_job_folder_with_job_variables(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    script.batches = [["a.pod5"]]
    command = "sh -c 'pwd; echo \"$REACTOR_JOB_ID $REACTOR_ENGINE_ID\"'"
    await run_engine(script, session, manager_url, command)
    folder = job_out(script)
    _header, cwd, variables = (folder / "engine.log").read_text().splitlines()
    assert Path(cwd).resolve() == folder.resolve()
    assert variables == f"{script.verbs('completed')[0]['job_id']} gpu"


async def test_a_runs_parameters_from_the_manager_fill_model_and_kit_name(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    """The engine asks for parameters; a host-mode manager's run model comes before the
    engine's own, and {kit_name} is the run's kit."""
    script.batches = [["a.pod5"]]
    script.params = {"model": "sup", "kit_name": "SQK-NBD114-24", "sample_sheet": "r/s.csv"}
    command = "sh -c 'echo \"$0 $1 $2\"' {model} {kit_name} {sample_sheet}"
    await run_engine(script, session, manager_url, command, model="hac")
    assert all(call["params"] == "true" for call in script.verbs("assignwork"))
    log = (job_out(script) / "engine.log").read_text().splitlines()
    assert log[-1] == f"sup SQK-NBD114-24 {script.output_dir / 'r' / 's.csv'}"


async def test_exit_when_idle_ends_the_engine_after_that_long_without_work(
    script: Script, manager_url: str, session: aiohttp.ClientSession
) -> None:
    """No work since its last batch for exit_when_idle seconds (its clock, moved here by
    hand): exit 0. A batch in between starts the idle time again."""
    empty: Answer = (200, {"jobid": "-1", "batch_size": 0, "batch": []})
    now = [0.0]
    answers = iter([empty, empty])

    def assign() -> Answer:
        now[0] += 10.0  # each answer comes 10 s after the last
        answer = next(answers, None)
        if answer is None and not script.verbs("completed"):
            script.assign, script.batches = None, [["a.pod5"]]
            try:
                return script.next_assignment()  # a batch at t=30: idle from its end
            finally:
                script.assign = assign
        return answer or empty

    script.assign = assign
    config = EngineConfig(
        input_dir=script.input_dir, output_dir=script.output_dir, command="true",
        engine_id="gpu", poll_interval=0.01, max_poll_interval=0.02, exit_when_idle=25.0,
    )  # fmt: skip
    engine = Engine(config, make_client(session, manager_url), clock=lambda: now[0])
    with capture_logs() as logs:
        assert await asyncio.wait_for(engine.run(), 20) == 0
    (idle,) = events(logs, "idle_exit")
    assert idle["idle_s"] >= 25.0
    asked = script.verbs("assignwork")
    # t=10, 20 empty (idle 20 < 25); t=30 a batch; then t=40, 50 empty: 20 s idle; t=60: 30 s
    assert len(asked) == 6
    assert engine.tally.fields() == {"jobs_done": 1}
