"""Access control over real sockets, from a real second host.

The test makes its own network namespace joined to this one by a veth pair (private
10.251.x.0/30 addresses that exist only inside this machine), runs `reactor serve` on the
host side with a token and an allow list naming the namespace's address, and sends
requests from inside the namespace (an allowed client) and from the host side (a client
not on the list). Needs root and iproute2: skipped without them, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.launch import free_port
from tests.support.tools import require_tool, skip_for_missing_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
TOKEN = "t0ken-for-the-access-test-0123456789"
CLIENT = """
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    request.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    with urllib.request.urlopen(request, timeout=5) as reply:
        print(reply.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print(0)  # no answer (yet)
"""


@dataclass(frozen=True)
class Hosts:
    namespace: str
    server_ip: str  # this side of the veth pair
    client_ip: str  # inside the namespace


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    require_tool(shutil.which("ip") is not None, "iproute2 (`ip`) makes the network namespace")
    require_tool(os.geteuid() == 0, "making a network namespace needs root")
    tag = os.getpid() % 100_000
    subnet = 10 + tag % 200
    namespace, near, far = f"rtest{tag}", f"rh{tag}", f"rp{tag}"
    made = Hosts(namespace, f"10.251.{subnet}.1", f"10.251.{subnet}.2")
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", far, "netns", namespace)
        _ip("addr", "add", f"{made.server_ip}/30", "dev", near)
        _ip("link", "set", near, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{made.client_ip}/30", "dev", far)
        _ip("netns", "exec", namespace, "ip", "link", "set", far, "up")
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        skip_for_missing_tool(f"cannot make a network namespace here: {exc.stderr!r}")
    try:
        yield made
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", near], capture_output=True, check=False)


def status_from(namespace: str | None, url: str, token: str | None) -> int:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    argv = [*prefix, sys.executable, "-c", CLIENT, url, *([token] if token else [])]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
    return int(result.stdout.strip())


def test_token_and_allow_list_over_real_sockets(hosts: Hosts, tmp_path: Path) -> None:
    """From an allowed host: the right token gets in, a wrong or missing one gets 401.
    From a host not on the allow list: 403 even with the right token. Health probes
    answer everyone."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "reactor", "serve",
            "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
            "--listen", f"{hosts.server_ip}:{port}",
            "--allow", f"{hosts.client_ip}/32", "--log-format", "json",
        ],
        env={**os.environ, "REACTOR_TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://{hosts.server_ip}:{port}"
    try:
        deadline = time.monotonic() + 30
        while status_from(hosts.namespace, f"{base}/healthz", None) != 200:
            assert server.poll() is None, "reactor serve exited"
            assert time.monotonic() < deadline, "reactor serve did not start"
            time.sleep(0.1)
        work = f"{base}/assignwork?engineid=remote-gpu&batchsize=1"
        assert status_from(hosts.namespace, work, TOKEN) == 200
        assert status_from(hosts.namespace, work, "wrong-token") == 401
        assert status_from(hosts.namespace, work, None) == 401
        assert status_from(hosts.namespace, f"{work}&token={TOKEN}", None) == 200
        assert status_from(None, work, TOKEN) == 403  # from the host side: not allowed
        assert status_from(None, f"{base}/healthz", None) == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert server.returncode == 0
    assert TOKEN not in output.decode(), "the token must never be logged"
    events = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    assert any(event["event"] == "serving" for event in events)
