"""`reactor status` against a real running app: the human view, --json, --watch, and the
one-line errors for an unreachable service or a wrong token. Also its pure parts: where
the URL comes from, the rendering in narrow and ASCII-only outputs, and in-place refresh."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from reactor.cli import main
from reactor.ops.status import Screen
from reactor.ops.status_view import Glyphs, duration, render
from reactor.settings.serve import local_service
from tests.support.api import Client, MakeClient, add_files, get_json, write_outputs
from tests.support.launch import free_port
from tests.support.paths import REPO
from tests.support.runs import RunDirs

CLIENT_ENV = ("REACTOR_URL", "REACTOR_TOKEN", "REACTOR_CONFIG", "REACTOR_LISTEN")
ESC = "\x1b"
FANCY = Glyphs.for_encoding("utf-8")


@pytest.fixture(autouse=True)
def no_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own REACTOR_* settings must not leak into these tests."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)


def url_of(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


async def reactor_status(*argv: str) -> int:
    """`reactor status ...` in a thread: the app under test keeps serving on this loop."""
    return await asyncio.to_thread(main, ["status", *argv])


async def busy_run(make_client: MakeClient, run_dirs: RunDirs, **overrides: Any) -> Client:
    """8 files: 3 done by gpu-node01, 2 assigned to gpu-node02, 1 quarantined, 2 ready."""
    names = add_files(run_dirs, 8)
    client = await make_client(max_attempts=1, **overrides)
    headers = {"Authorization": f"Bearer {overrides['token']}"} if "token" in overrides else {}

    async def call(path: str, **params: Any) -> Any:
        response = await client.get(path, params=params, headers=headers)
        assert response.status == 200
        return await response.json()

    job = await call("/assignwork", engineid="gpu-node01", batchsize=3)
    write_outputs(run_dirs, job)
    await call("/completed", job_id=job["jobid"], job_state="DONE")
    poison = await call("/assignwork", engineid="gpu-node01", batchsize=1)
    assert poison["batch"] == [names[3]]
    await call("/completed", job_id=poison["jobid"], job_state="FAILED")
    await call("/assignwork", engineid="gpu-node02", batchsize=2)
    return client


# ------------------------------------------------------------ against the app


async def test_human_view_shows_progress_engines_and_quarantine(
    make_client: MakeClient, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await busy_run(make_client, run_dirs)
    assert await reactor_status("--url", url_of(client)) == 0
    out = capsys.readouterr().out
    assert f"reactor {url_of(client)}" in out
    assert "phase running" in out
    assert "4/8 50.0%" in out  # 3 done + 1 quarantined of 8 seen
    assert "done 3" in out
    assert "ready 2" in out
    assert "assigned 2" in out
    lines = out.splitlines()
    node01 = next(line for line in lines if line.lstrip().startswith("gpu-node01"))
    assert node01.split()[-2:] == ["3", "1/1/0"]  # files done; jobs done/failed/expired
    node02 = next(line for line in lines if line.lstrip().startswith("gpu-node02"))
    assert node02.split()[4:6] == ["1", "0"]  # live jobs, files done
    assert "PAK00000_pass_abc_def_3.pod5  failed 1 time" in out
    assert "reactor requeue --all" in out
    assert ESC not in out  # captured output is not a terminal: plain lines


async def test_json_is_the_status_answer(
    make_client: MakeClient, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    with capture_logs():  # the app's own log lines would share stdout with the JSON
        client = await busy_run(make_client, run_dirs)
        assert await reactor_status("--url", url_of(client), "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    direct = await get_json(client, "/status")
    assert printed["files"] == direct["files"]
    assert printed["phase"] == "running"
    assert [e["engine_id"] for e in printed["engines"]] == ["gpu-node01", "gpu-node02"]
    # the reads the service counted in the merged outputs, as it said them
    assert printed["reads"] == direct["reads"] and printed["reads"]["jobs"] == 1


async def test_unreachable_service_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await reactor_status("--url", url) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"cannot reach {url}: connection refused" in captured.err
    assert "reactor serve" in captured.err
    assert "--url" in captured.err


async def test_token_missing_or_wrong_says_so(
    make_client: MakeClient,
    run_dirs: RunDirs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "s3cret-token-value"
    client = await busy_run(make_client, run_dirs, token=token)
    url = url_of(client)
    assert await reactor_status("--url", url) == 1
    assert "needs a token: set REACTOR_TOKEN" in capsys.readouterr().err
    assert await reactor_status("--url", url, "--token", "wrong-token") == 1
    assert "refused the token" in capsys.readouterr().err
    monkeypatch.setenv("REACTOR_TOKEN", token)
    assert await reactor_status("--url", url) == 0
    assert "gpu-node01" in capsys.readouterr().out


async def test_url_comes_from_the_config_file(
    make_client: MakeClient, run_dirs: RunDirs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --url, status finds the service where serve's settings file says it listens,
    with serve's token from the same file."""
    client = await busy_run(make_client, run_dirs, token="file-token-value")
    settings = tmp_path / "reactor.toml"
    settings.write_text(f'listen = "0.0.0.0:{client.server.port}"\ntoken = "file-token-value"\n')
    assert await reactor_status("--config", str(settings)) == 0
    assert f"reactor http://127.0.0.1:{client.server.port}" in capsys.readouterr().out


async def test_with_url_a_broken_settings_file_is_not_read(
    make_client: MakeClient,
    run_dirs: RunDirs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URL says where the service is: this host's settings do not matter then."""
    client = await busy_run(make_client, run_dirs)
    broken = tmp_path / "reactor.toml"
    broken.write_text('listen = "nowhere:port"\n[[[\n')
    monkeypatch.setenv("REACTOR_CONFIG", str(tmp_path / "missing.toml"))
    assert await reactor_status("--url", url_of(client)) == 0
    assert await reactor_status("--url", url_of(client), "--config", str(broken)) == 0
    monkeypatch.setenv("REACTOR_URL", url_of(client))
    assert await reactor_status() == 0
    assert "gpu-node01" in capsys.readouterr().out


async def test_with_url_the_settings_files_token_is_not_sent(
    make_client: MakeClient,
    run_dirs: RunDirs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """That token is for this host's service; --url may name any host. The service here
    takes that very token, so it would answer 200 if the token were sent."""
    token = "file-token-value"
    client = await busy_run(make_client, run_dirs, token=token)
    settings = tmp_path / "reactor.toml"
    settings.write_text(f'token = "{token}"\n')
    monkeypatch.setenv("REACTOR_CONFIG", str(settings))
    assert await reactor_status("--url", url_of(client), "--config", str(settings)) == 1
    assert "needs a token: set REACTOR_TOKEN or --token" in capsys.readouterr().err
    assert await reactor_status("--url", url_of(client), "--token", token) == 0
    monkeypatch.setenv("REACTOR_TOKEN", token)
    assert await reactor_status("--url", url_of(client)) == 0


async def start_watch(url: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    env["PYTHONPATH"] = str(REPO)
    # A suite run in the background (`make test &`) ignores SIGINT, and so would the
    # child, which then never sees the Ctrl-C this test sends: give it the default back.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reactor", "status", "--url", url, "--watch", "0.2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


async def read_until(process: asyncio.subprocess.Process, done: Callable[[str], bool]) -> str:
    """Lines of stdout until `done(all so far)`; fails after 30 s or if stdout ends."""
    assert process.stdout is not None
    out = ""
    async with asyncio.timeout(30):
        while not done(out):
            line = (await process.stdout.readline()).decode()
            assert line, f"status --watch ended early: {out}"
            out += line
    return out


async def interrupt(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """SIGINT, as Ctrl-C sends; (exit code, rest of stdout, stderr), bounded."""
    process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            rest, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, rest.decode(), err.decode()


async def test_watch_refreshes_until_interrupted_and_exits_0(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    """As a process with a pipe for stdout: a block per refresh, plain lines, and Ctrl-C
    (SIGINT) ends it with exit code 0 and no traceback."""
    client = await busy_run(make_client, run_dirs)
    process = await start_watch(url_of(client))
    out = await read_until(process, lambda text: text.count("reactor http") >= 2)
    code, rest, err = await interrupt(process)
    assert code == 0, err
    assert "Traceback" not in err
    assert ESC not in out + rest
    assert (out + rest).count("gpu-node01") >= 2


async def test_watch_rides_out_a_service_that_goes_away(
    make_client: MakeClient, run_dirs: RunDirs
) -> None:
    """Once it has shown the run, a service that stops answering (a restart) is reported
    on the screen and tried again, instead of ending the watch."""
    client = await busy_run(make_client, run_dirs)
    url = url_of(client)
    process = await start_watch(url)
    await read_until(process, lambda text: "gpu-node01" in text)
    await client.server.close()
    out = await read_until(process, lambda text: "trying again every 0.2 s" in text)
    assert f"cannot reach {url}" in out
    code, _rest, err = await interrupt(process)
    assert code == 0, err


async def test_watch_gives_up_at_once_on_a_service_it_never_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await reactor_status("--url", url, "--watch", "0.1") == 1
    assert "connection refused" in capsys.readouterr().err


async def test_bad_url_and_watch_values_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await reactor_status("--url", "seqhost:40765") == 2
    assert "http://" in capsys.readouterr().err
    assert await reactor_status("--url", "http://127.0.0.1:1", "--watch", "0") == 2
    assert "--watch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"hello": "world"}, "did not answer like a reactor: is --url right?"),
        ({"files": {}, "engines": []}, "the service is older than this command"),
    ],
)
async def test_an_answer_that_is_not_reactors_status_is_one_line(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    capsys: pytest.CaptureFixture[str],
    body: dict[str, Any],
    says: str,
) -> None:
    async def other_status(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/status", other_status)
    client = await aiohttp_client(app)
    assert await reactor_status("--url", url_of(client)) == 1
    err = capsys.readouterr().err
    assert says in err
    assert err.count("\n") == 1


# ------------------------------------------------------------- pure parts


def service_args(config: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=str(config) if config else None, token=None, url=None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:40765"),
        ({"REACTOR_LISTEN": "0.0.0.0:4321"}, "http://127.0.0.1:4321"),
        ({"REACTOR_LISTEN": "[::]:4321"}, "http://[::1]:4321"),
        ({"REACTOR_LISTEN": "[::1]:4321"}, "http://[::1]:4321"),
        ({"REACTOR_LISTEN": "10.1.2.3:80"}, "http://10.1.2.3:80"),
        ({"REACTOR_LISTEN": "5000"}, "http://127.0.0.1:5000"),
    ],
)
def test_url_from_listen_maps_wildcards_to_loopback(env: dict[str, str], expected: str) -> None:
    assert local_service(service_args(), env) == (expected, None)


def test_environment_beats_the_config_file(tmp_path: Path) -> None:
    settings = tmp_path / "reactor.toml"
    settings.write_text('listen = "0.0.0.0:1111"\ntoken = "from-the-file"\ninput_dir = "x"\n')
    assert local_service(service_args(settings), {}) == ("http://127.0.0.1:1111", "from-the-file")
    env = {"REACTOR_LISTEN": "127.0.0.1:2222", "REACTOR_TOKEN": "from-env"}
    assert local_service(service_args(settings), env) == ("http://127.0.0.1:2222", "from-env")


async def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "reactor.toml"
    settings.write_text('listen = "nowhere:port"\n')
    assert await reactor_status("--config", str(settings)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "listen" in err


SNAPSHOT: dict[str, Any] = {
    "ready": True,
    "phase": "running",
    "files": {"incomplete": 1, "ready": 499, "assigned": 20, "done": 1466, "quarantined": 14},
    "files_total": 2000,
    "jobs": {"live": [], "total": 200},
    "engines": [
        {
            "engine_id": "gpu-node02",
            "last_seen_s": 3.2,
            "live_jobs": 1,
            "files_done": 700,
            "jobs_done": 70,
            "jobs_failed": 1,
            "jobs_expired": 0,
            "benched_s": 0.0,
        },
        {
            "engine_id": "gpu-node01",
            "last_seen_s": 0.4,
            "live_jobs": 1,
            "files_done": 775,
            "jobs_done": 78,
            "jobs_failed": 3,
            "jobs_expired": 1,
            "benched_s": 250.0,
        },
    ],
    "throughput": {
        "files_done_since_start": 1466,
        "files_per_s": 0.7,
        "files_per_s_since_start": 0.5,
        "window_s": 300.0,
        "eta_s": 744.3,
    },
    "quarantined": {
        "total": 14,
        "files": [{"name": f"PAK_pass_x_y_{i}.pod5", "failures": 3} for i in range(12)],
    },
    "reconciles": 0,
}


def view(width: int = 100, glyphs: Glyphs = FANCY, **changes: Any) -> list[str]:
    snapshot = {**SNAPSHOT, **changes}
    return render(snapshot, url="http://h:1", width=width, glyphs=glyphs, at="12:00:00")


def test_render_shows_rate_eta_and_sorted_engines() -> None:
    lines = view()
    text = "\n".join(lines)
    assert "1,480/2,000 74.0%" in text
    assert "42.0 files/min over the last 5 min (30.0 since start)" in text
    assert "ETA      12 min for the files seen so far" in text
    engines = [line.split()[0] for line in lines if line.lstrip().startswith("gpu-")]
    assert engines == ["gpu-node01", "gpu-node02"]
    assert "benched for 4 min 10 s" in text
    assert "+4 more" in text  # 14 quarantined, 10 shown


def test_unknown_eta_is_a_dash_with_the_reason() -> None:
    throughput = {**SNAPSHOT["throughput"], "files_per_s": 0.0, "eta_s": None}
    assert "ETA      — (no file done in the last 5 min)" in view(throughput=throughput)


def test_narrow_terminal_gets_lines_that_fit_and_no_table() -> None:
    """42 columns: every line fits, each engine's values named on lines of their own."""
    lines = view(width=42)
    assert max(len(line) for line in lines) <= 42, "\n".join(lines)
    assert not any("last seen" in line for line in lines)
    first = lines.index("  gpu-node01: seen 0 s ago · 1 live jobs")
    engine_text = " ".join(lines[first : first + 4])
    assert "775 files done" in engine_text
    assert "jobs done/failed/expired 78/3/1" in engine_text
    assert "benched for 4 min 10 s" in engine_text
    bar_line = next(line for line in lines if line.startswith("files"))
    assert bar_line.count("█") + bar_line.count("░") == 10  # the shortest bar


def test_ascii_output_gets_ascii_glyphs() -> None:
    ascii_glyphs = Glyphs.for_encoding("ascii")
    text = "\n".join(view(glyphs=ascii_glyphs))
    text.encode("ascii")  # raises if any character would not print
    assert "[" + "#" * 29 in text


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_names_cannot_send_escape_codes(encoding: str) -> None:
    """A .pod5 name may hold any character but / and NUL: control characters (and, for an
    ASCII output, anything beyond ASCII) are shown as ?."""
    hostile = "PAK\x1b]0;pwned\x07\x1b[2J_é_\udcff.pod5"
    quarantined = {"total": 1, "files": [{"name": hostile, "failures": 1}]}
    text = "\n".join(view(glyphs=Glyphs.for_encoding(encoding), quarantined=quarantined))
    assert ESC not in text
    assert "\x07" not in text
    text.encode(encoding)  # raises if a character would not print
    expected = "PAK?]0;pwned??[2J_é_?.pod5" if encoding == "utf-8" else "PAK?]0;pwned??[2J_?_?.pod5"
    assert expected in text


def test_an_empty_run_says_so() -> None:
    files = dict.fromkeys(SNAPSHOT["files"], 0)
    text = "\n".join(
        view(files=files, files_total=0, engines=[], quarantined={"total": 0, "files": []})
    )
    assert "no .pod5 file seen yet" in text
    assert "none has asked for work yet" in text
    assert "quarantined  none" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (59, "59 s"), (250, "4 min 10 s"), (300, "5 min"), (744, "12 min"),
     (7500, "2 h 05 min"), (3 * 86400 + 4 * 3600, "3 d 4 h")],
)  # fmt: skip
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_screen_redraws_in_place_on_a_terminal() -> None:
    """The second frame first moves up over the first (3 lines) and clears below."""
    terminal = FakeTerminal()
    screen = Screen(terminal)
    screen.show(["a", "b", "c"])
    screen.show(["d", "e"])
    assert terminal.getvalue() == "a\nb\nc\n\x1b[3F\x1b[Jd\ne\n"


def test_screen_writes_blocks_when_not_a_terminal() -> None:
    pipe = io.StringIO()
    screen = Screen(pipe)
    screen.show(["a", "b"])
    screen.show(["c"])
    assert pipe.getvalue() == "a\nb\n\nc\n\n"


def test_render_says_when_only_the_engines_seen_last_are_listed() -> None:
    lines = view(engines_total=250)
    assert "engines  250 (the 2 seen last)" in lines
    assert "engines  2" in view(engines_total=2)
    assert "engines  2" in view()  # an older service gives no total


def test_render_shows_held_jobs_with_their_reasons() -> None:
    held = {
        "total": 7,
        "jobs": [
            {
                "job_id": f"{n}" * 20,
                "engine_id": "gpu-bad",
                "state": "refused",
                "files": 2,
                "reason": f"TMPOUTPUT_x/pass/'link{n}' is a symbolic link",
            }
            for n in range(7)
        ],
    }
    text = "\n".join(view(held=held))
    assert "held     7 jobs for a person to look at" in text
    assert (
        "gpu-bad job 000000000000… (refused): TMPOUTPUT_x/pass/'link0' is a symbolic link" in text
    )
    assert "+2 more" in text
    assert "held" not in "\n".join(view())  # none held (or an older service): no section


READS = {
    "reads": 10_000,
    "bases": 1_234_567_890,
    "pass_reads": 9_100,
    "pass_bases": 1_200_000_000,
    "n50": 14_321,
    "min_qscore": 10.0,
    "accounting": {"exactly_once": True, "unknown": 0, "duplicates": 0},
}


def test_render_shows_the_run_in_reads_as_labs_read_it() -> None:
    text = "\n".join(view(reads=READS))
    assert "reads    1.2 Gb · N50 14.3 kb · Q ≥ 10: 91 % · 10,000 reads" in text
    ascii_text = "\n".join(view(reads=READS, glyphs=Glyphs.for_encoding("ascii")))
    assert "Q >= 10: 91 %" in ascii_text
    assert "reads " not in "\n".join(view())  # a service that counts none shows none
    wrong = {**READS, "accounting": {"exactly_once": False, "unknown": 2, "duplicates": 1}}
    assert "3 NOT ONCE" in "\n".join(view(reads=wrong))
