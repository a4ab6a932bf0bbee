"""The operator tools' shared client (`reactor.ops.service_client`), through the real
commands: `reactor requeue` finds the service and its token exactly as `reactor status`
does, and both tell a person the same one line when the service cannot be used.

The service is a real HTTP server on 127.0.0.1 (`http.server` in a thread) that records
what it was sent and answers as scripted; the last tests run a real `reactor serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reactor.cli import main
from reactor.ops.service_client import ServiceClient, find_service
from reactor.settings.parsing import ConfigError
from tests.support.launch import free_port
from tests.support.paths import REPO
from tests.support.served import wait_for

CLIENT_ENV = ("REACTOR_URL", "REACTOR_TOKEN", "REACTOR_CONFIG", "REACTOR_LISTEN")
RELEASED = {"FAILED_j1_gpu-node01": ["a.pod5", "b.pod5"]}
STATUS: dict[str, Any] = {
    "ready": True,
    "phase": "running",
    "files": {"incomplete": 0, "ready": 0, "assigned": 0, "done": 2, "quarantined": 0},
    "files_total": 2,
    "engines": [],
    "throughput": {"files_done_since_start": 2, "files_per_s": 0.0, "window_s": 300.0,
                   "files_per_s_since_start": 0.0, "eta_s": None},
    "quarantined": {"total": 0, "files": []},
}  # fmt: skip


@pytest.fixture(autouse=True)
def no_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own REACTOR_* settings must not leak into these tests."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class FakeService:
    """Answers every request with `status` and `body`; records what it was sent."""

    port: int = 0
    token: str | None = None
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, status: int, body: object, content_type: str = "application/json") -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content_type = content_type

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        authorization = handler.headers.get("Authorization")
        self.seen.append(
            Seen(handler.command, parts.path, urllib.parse.parse_qs(parts.query), authorization)
        )
        status, body = self.status, self.body
        if self.token is not None and authorization != f"Bearer {self.token}":
            status = 401
            body = b'{"error": "unauthorized", "detail": "send the token"}'
        handler.send_response(status)
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.handle(self)

        def do_POST(self) -> None:
            fake.handle(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def settings_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "reactor.toml"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


# ------------------------------------------------- requeue finds the service like status


def test_requeue_takes_the_address_and_token_from_the_settings_file(
    service: FakeService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings file serve reads: its listen address (a wildcard, reached on loopback)
    and its token, as `reactor status --config` reads them."""
    service.token = "file-token-value"
    service.answer(200, {"released": RELEASED})
    config = settings_file(tmp_path, listen=f"0.0.0.0:{service.port}", token=service.token)
    assert main(["requeue", "--all", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "FAILED_j1_gpu-node01: 2 file(s) back in the queue\n"
    (sent,) = service.seen
    assert (sent.method, sent.path, sent.query) == ("POST", "/requeue", {"all": ["true"]})
    assert sent.authorization == "Bearer file-token-value"


def test_requeue_reads_reactor_config_and_reactor_listen(
    service: FakeService,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service.token = "from-the-file"
    service.answer(200, {"released": {}})
    monkeypatch.setenv("REACTOR_CONFIG", str(settings_file(tmp_path, token=service.token)))
    monkeypatch.setenv("REACTOR_LISTEN", f"127.0.0.1:{service.port}")
    folder = tmp_path / "input" / "FAILED_j1_gpu-node01"
    assert main(["requeue", str(folder), "FAILED_j2_gpu-node02"]) == 0
    assert capsys.readouterr().out == "nothing was quarantined\n"
    (sent,) = service.seen
    assert sent.query == {"folder": ["FAILED_j1_gpu-node01", "FAILED_j2_gpu-node02"]}
    assert sent.authorization == "Bearer from-the-file"


def test_requeue_with_a_url_never_sends_the_settings_files_token(
    service: FakeService,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """That token is for this host's service; --url may name any host. The service here
    takes that very token, so it would answer 200 if the token were sent."""
    service.token = "file-token-value"
    service.answer(200, {"released": {}})
    config = settings_file(tmp_path, token=service.token)
    monkeypatch.setenv("REACTOR_CONFIG", str(config))
    assert main(["requeue", "--all", "--url", service.url, "--config", str(config)]) == 1
    assert "needs a token: set REACTOR_TOKEN or --token" in capsys.readouterr().err
    assert service.seen[-1].authorization is None
    assert main(["requeue", "--all", "--url", service.url, "--token", service.token]) == 0
    monkeypatch.setenv("REACTOR_URL", service.url)
    monkeypatch.setenv("REACTOR_TOKEN", service.token)
    assert main(["requeue", "--all"]) == 0
    assert [seen.authorization for seen in service.seen[1:]] == [f"Bearer {service.token}"] * 2


def test_requeue_with_a_url_does_not_read_a_broken_settings_file(
    service: FakeService,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service.answer(200, {"released": {}})
    broken = tmp_path / "reactor.toml"
    broken.write_text('listen = "nowhere:port"\n[[[\n')
    monkeypatch.setenv("REACTOR_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["requeue", "--all", "--url", service.url]) == 0
    assert main(["requeue", "--all", "--url", service.url, "--config", str(broken)]) == 0
    assert len(service.seen) == 2


@pytest.mark.parametrize("command", ["requeue", "status"])
def test_a_bad_settings_file_or_url_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    argv = [command, "--all"] if command == "requeue" else [command]
    config = settings_file(tmp_path, listen="nowhere:port")
    assert main([*argv, "--config", str(config)]) == 2
    assert "listen" in one_line(capsys.readouterr().err)
    for url in ("seqhost:40765", "http://seqhost:port", "http://:40765", "http://h:1?x=1"):
        assert main([*argv, "--url", url]) == 2, url
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"reactor {command}: --url "), line
        assert "http://seqhost:40765" in line


def test_requeue_needs_folders_or_all_but_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["requeue"]) == 2
    assert "name FAILED_… folders, or give --all" in one_line(capsys.readouterr().err)
    assert main(["requeue", "FAILED_x", "--all"]) == 2
    assert "or give --all" in one_line(capsys.readouterr().err)


# ------------------------------------------------- one line for each failure, both commands

FAILURES = [
    ("no token", 401, {"error": "unauthorized", "detail": "x"}, None,
     "{url} needs a token: set REACTOR_TOKEN or --token (without --url, serve's settings "
     "file, given with --config, is read for it too)"),
    ("wrong token", 401, {"error": "unauthorized", "detail": "x"}, "wrong",
     "{url} refused the token: check REACTOR_TOKEN or --token"),
    ("not allowed", 403, {"error": "forbidden", "detail": "x"}, None,
     "{url} refused this host (not in its allow list): run it on the service's host or an "
     "allowed one"),
    ("the service's detail", 409, {"error": "conflict", "detail": "the run is\nbusy"}, None,
     "{url} answered 409: the run is busy"),
    ("a proxy's page", 502, b"<html>\n<h1>Bad Gateway</h1>\n</html>", None,
     "{url} answered 502: <html> <h1>Bad Gateway</h1> </html>"),
    ("an empty body", 503, b"", None, "{url} answered 503: Service Unavailable"),
    ("not JSON", 200, b"<html>a web page</html>", None,
     "{url} did not answer like a reactor: is --url right?"),
    ("JSON of another kind", 200, {"hello": "world"}, None,
     "{url} did not answer like a reactor: is --url right?"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["requeue", "status"])
@pytest.mark.parametrize(
    ("status", "body", "token", "expected"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_each_failure_is_the_same_one_line_from_both_commands(
    service: FakeService,
    capsys: pytest.CaptureFixture[str],
    command: str,
    status: int,
    body: object,
    token: str | None,
    expected: str,
) -> None:
    service.answer(status, body, "text/html" if isinstance(body, bytes) else "application/json")
    argv = [command, "--url", service.url, *(["--token", token] if token else [])]
    assert main([*argv, "--all"] if command == "requeue" else argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == f"reactor {command}: " + expected.format(url=service.url)
    (sent,) = service.seen
    assert (sent.method, sent.path) == (("POST", "/requeue") if command == "requeue"
                                        else ("GET", "/status"))  # fmt: skip


@pytest.mark.parametrize("command", ["requeue", "status"])
def test_an_unreachable_service_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    argv = [command, "--url", url]
    assert main([*argv, "--all"] if command == "requeue" else argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"reactor {command}: cannot reach {url}: connection refused ")
    assert line.endswith("is `reactor serve` running? (give its address with --url)")


def test_requeue_refuses_an_answer_without_the_released_folders(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    for answer in ({"released": ["a"]}, {"released": {"F": "a.pod5"}}, [1]):
        service.answer(200, answer)
        assert main(["requeue", "--all", "--url", service.url]) == 1
        assert "did not answer like a reactor" in one_line(capsys.readouterr().err)


def test_status_shows_the_run_found_through_the_settings_file(
    service: FakeService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service.token = "file-token-value"
    service.answer(200, STATUS)
    config = settings_file(tmp_path, listen=f"0.0.0.0:{service.port}", token=service.token)
    assert main(["status", "--config", str(config)]) == 0
    assert f"reactor http://127.0.0.1:{service.port}" in capsys.readouterr().out
    assert service.seen[0].authorization == "Bearer file-token-value"


# ------------------------------------------------- the pure rules


def args(**given: str) -> argparse.Namespace:
    return argparse.Namespace(**({"url": None, "token": None, "config": None} | given))


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ({}, {}, ("http://127.0.0.1:40765", None)),
        ({}, {"REACTOR_LISTEN": "[::]:1", "REACTOR_TOKEN": "t"}, ("http://[::1]:1", "t")),
        ({"url": "http://a:1/"}, {"REACTOR_URL": "http://b:2"}, ("http://a:1", None)),
        ({}, {"REACTOR_URL": "https://b:2", "REACTOR_TOKEN": "t"}, ("https://b:2", "t")),
        ({"url": "http://a:1", "token": "flag"}, {"REACTOR_TOKEN": "env"}, ("http://a:1", "flag")),
    ],
)
def test_where_the_service_and_its_token_come_from(
    given: dict[str, str], env: dict[str, str], expected: tuple[str, str | None]
) -> None:
    assert find_service(args(**given), env) == expected


def test_a_url_skips_the_settings_file_and_its_token(tmp_path: Path) -> None:
    config = settings_file(tmp_path, listen="127.0.0.1:9", token="from-the-file")
    assert find_service(args(config=str(config)), {}) == ("http://127.0.0.1:9", "from-the-file")
    env = {"REACTOR_URL": "http://other:1"}
    assert find_service(args(config=str(config)), env) == ("http://other:1", None)
    missing = args(config=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError):
        find_service(missing, {})
    assert find_service(missing, env) == ("http://other:1", None)


def test_the_token_is_never_shown_in_the_clients_repr() -> None:
    client = ServiceClient("http://h:1", "s3cret-token-value", "reactor status")
    assert "s3cret" not in repr(client)


def test_the_commands_load_no_service_library() -> None:
    """The ops room stays light: neither command imports aiohttp, watchdog, structlog or
    prometheus_client, so they start fast on any host."""
    code = (
        "import sys, reactor.commands.requeue, reactor.commands.status, "
        "reactor.ops.service_client\n"
        "heavy = {'aiohttp', 'watchdog', 'structlog', 'prometheus_client'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


# ------------------------------------------------- against a real `reactor serve`


@pytest.fixture
def served_with_settings(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`reactor serve --config reactor.toml` (listen and token in the file); yields the
    file and the service's URL."""
    port = free_port()
    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    config = settings_file(
        tmp_path,
        input_dir=str(tmp_path / "input"),
        output_dir=str(tmp_path / "output"),
        listen=f"127.0.0.1:{port}",
        token="served-token-value",
        log_format="json",
    )
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV and k != "NOTIFY_SOCKET"}
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "reactor", "serve", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):  # noqa: S310
                return True
        except OSError:
            return False

    try:
        wait_for(ready, 30, "reactor serve to be ready")
        yield config, url
    finally:
        server.terminate()
        server.wait(timeout=30)


def reactor(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return subprocess.run(
        [sys.executable, "-m", "reactor", *argv],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_requeue_and_status_reach_a_real_serve_through_its_settings_file(
    served_with_settings: tuple[Path, str],
) -> None:
    config, url = served_with_settings
    released = reactor("requeue", "--all", "--config", str(config))
    assert (released.returncode, released.stdout, released.stderr) == (
        0, "nothing was quarantined\n", ""
    )  # fmt: skip
    shown = reactor("status", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert f"reactor {url}" in shown.stdout
    missing = reactor("requeue", "FAILED_1_nobody", "--config", str(config))
    assert missing.returncode == 1
    assert missing.stderr == (
        f"reactor requeue: {url} answered 404: no quarantine folder named 'FAILED_1_nobody' "
        "in the input folder\n"
    )
    refused = reactor("requeue", "--all", "--url", url)  # the file's token is not sent
    assert refused.returncode == 1
    assert f"reactor requeue: {url} needs a token" in refused.stderr
