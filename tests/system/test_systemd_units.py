"""The systemd units in systemd/: the keys they must have, systemd's own verdict on them
(`systemd-analyze`, where installed, and always under CI=true), and the one hardening
choice that depends on our code rather than on systemd: MemoryDenyWriteExecute=, tried for
real. What reactor.socket buys at a restart is tried for real in
tests/system/test_socket_activation.py."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reactor.disk.input_lister import worth_a_child
from reactor.settings.serve import DEFAULT_LISTEN
from tests.support.launch import free_port, serve_args
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import wait_for
from tests.support.tools import require_tool

SERVICE = REPO / "systemd" / "reactor.service"
ENGINE = REPO / "systemd" / "reactor-engine@.service"
SOCKET = REPO / "systemd" / "reactor.socket"
# systemd-analyze security: reactor.service scores at most this (0 best, 10 worst); it
# needs no device, no privilege and no write access beyond the run folders.
MAX_EXPOSURE = 2.0
# The engine needs the GPU, W+X memory for CUDA's JIT and thread pinning: allowed more,
# but not much more.
MAX_ENGINE_EXPOSURE = 2.0
OLD_FILES = 3000  # in INPUTDIR at start: the start-up scan's child looks at them

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of `path`, each key with every value it was given, in order.

    systemd allows a key more than once (most list settings add up), which
    configparser refuses; an empty assignment clears the list, as systemd does."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"{path.name}:{number}: not a key=value line"
        values = section.setdefault(key.strip(), [])
        value = value.strip()
        if value:
            values.append(value)
        else:
            values.clear()
    return unit


def one(unit: Unit, key: str, section: str = "Service") -> str:
    """The value of a key (of [Service] unless told) that must be given exactly once."""
    values = unit[section].get(key)
    assert values is not None, f"{key}= is missing"
    assert len(values) == 1, f"{key}= is given {len(values)} times: {values}"
    return values[0]


COMMON_HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateIPC": "yes",
    "PrivateUsers": "yes",
    "DevicePolicy": "closed",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0022",
    "User": "reactor",
    "Group": "reactor",
    "Restart": "on-failure",
}


@pytest.mark.parametrize("path", [SERVICE, ENGINE], ids=lambda p: p.name)
def test_both_units_run_unprivileged_and_hardened(path: Path) -> None:
    """A dedicated user, no capabilities, read-only system, no new privileges."""
    unit = parse_unit(path)
    assert {key: one(unit, key) for key in COMMON_HARDENING} == COMMON_HARDENING
    service = unit["Service"]
    for empty in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert empty in service, f"{empty}= (empty) is missing"
        assert service[empty] == [], f"{empty}= must be empty, not {service[empty]}"
    assert service["ReadWritePaths"], "the run folders need ReadWritePaths="
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "IPAddressDeny" not in service, "engines connect from the LAN"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_reactor_service_speaks_sd_notify_and_is_watched() -> None:
    """Type=notify from the main process only, a 30 s watchdog, restarts on failure."""
    unit = parse_unit(SERVICE)
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert one(unit, "WatchdogSec") == "30s"
    assert one(unit, "ExecStart") == "/opt/pod5-reactor/.venv/bin/reactor serve"
    # SIGTERM to reactor alone: it stops on_complete itself and records the interruption.
    assert one(unit, "KillMode") == "mixed"


def test_reactor_service_has_the_strictest_sandbox() -> None:
    """What only the manager can afford: no devices, no W+X memory, no resource calls."""
    unit = parse_unit(SERVICE)
    assert one(unit, "PrivateDevices") == "yes"
    assert one(unit, "MemoryDenyWriteExecute") == "yes"
    assert one(unit, "ProcSubset") == "pid"
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_reactor_service_documents_its_files() -> None:
    """The header says where settings and secrets live and how to add run folders."""
    text = SERVICE.read_text()
    header = text[: text.index("[Unit]")]
    for needed in (
        "/etc/pod5-reactor/reactor.toml",
        "/etc/pod5-reactor/reactor.env",
        "0600",
        "systemctl edit reactor.service",
        "ReadWritePaths=",
    ):
        assert needed in header, f"the header does not mention {needed}"
    environment = parse_unit(SERVICE)["Service"]["Environment"]
    assert "REACTOR_CONFIG=/etc/pod5-reactor/reactor.toml" in environment
    assert one(parse_unit(SERVICE), "EnvironmentFile") == "-/etc/pod5-reactor/reactor.env"


def test_engine_instance_gets_its_gpu_and_finishes_its_batch() -> None:
    """%i picks the GPU; only NVIDIA device nodes; SIGTERM reaches the engine alone."""
    unit = parse_unit(ENGINE)
    service = unit["Service"]
    assert "CUDA_VISIBLE_DEVICES=%i" in service["Environment"]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in service["Environment"]
    assert one(unit, "PrivateDevices") == "no"  # it would hide /dev/nvidia*
    assert "char-nvidia-uvm rw" in service["DeviceAllow"]
    assert "MemoryDenyWriteExecute" not in service  # CUDA's JIT needs W+X memory
    # the engine's first SIGTERM finishes the batch; dorado must not get one too
    assert one(unit, "KillMode") == "mixed"
    assert one(unit, "EnvironmentFile") == "-/etc/pod5-reactor/engine.env"


def test_reactor_socket_holds_the_default_port_for_the_service() -> None:
    """reactor.socket listens where serve does by default, with a generous backlog, and
    passes the listening socket (Accept=no) to reactor.service."""
    unit = parse_unit(SOCKET)
    assert unit["Socket"]["ListenStream"] == [DEFAULT_LISTEN]
    assert int(one(unit, "Backlog", "Socket")) >= 1024
    assert one(unit, "NoDelay", "Socket") == "true"
    assert one(unit, "Service", "Socket") == "reactor.service"
    assert unit["Socket"].get("Accept", ["no"]) == ["no"]
    # serve's log names the socket by its default name, the unit's
    assert "FileDescriptorName" not in unit["Socket"]
    assert unit["Install"]["WantedBy"] == ["sockets.target"]


def test_reactor_socket_runs_no_program() -> None:
    """A socket unit may run commands (ExecStartPre= and friends) with a sandbox of their
    own; this one runs none, so it has nothing to harden. (`systemd-analyze security`
    scores a .socket as if it were a service with no settings: 9.8, meaningless.)"""
    socket_section = parse_unit(SOCKET)["Socket"]
    assert not [key for key in socket_section if key.startswith("Exec")]


def test_reactor_service_runs_without_the_socket() -> None:
    """Socket activation is the operator's choice: reactor.service binds `listen` itself
    when no socket is passed, so it must not require reactor.socket (systemd.socket(5)
    orders an active socket before its service by itself: no After= either)."""
    unit_section = parse_unit(SERVICE)["Unit"]
    for key in ("Requires", "BindsTo", "Requisite", "Wants", "After"):
        assert not any("reactor.socket" in value for value in unit_section.get(key, [])), key
    header = SERVICE.read_text()
    assert "reactor.socket" in header[: header.index("\n[Unit]")]


# ------------------------------------------------------------- systemd-analyze


@pytest.fixture
def systemd_analyze() -> None:
    require_tool(
        shutil.which("systemd-analyze") is not None,
        "systemd-analyze is not installed (a systemd host has it; Debian: package systemd)",
    )


needs_analyze = pytest.mark.usefixtures("systemd_analyze")


def exposure(path: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, f"no exposure figure in:\n{result.stdout}\n{result.stderr}"
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize(
    ("path", "limit"),
    [(SERVICE, MAX_EXPOSURE), (ENGINE, MAX_ENGINE_EXPOSURE)],
    ids=["serve", "engine"],
)
def test_exposure_is_low(path: Path, limit: float) -> None:
    """`systemd-analyze security` scores the unit at most `limit` (the README quotes it)."""
    assert exposure(path) <= limit


@needs_analyze
@pytest.mark.parametrize("paths", [[SERVICE], [ENGINE], [SOCKET, SERVICE]], ids=lambda p: p[0].name)
def test_systemd_accepts_every_line(paths: list[Path], tmp_path: Path) -> None:
    """`systemd-analyze verify` has no complaint: no unknown key, no bad value.

    verify insists that ExecStart='s program exists, which it does only once installed:
    check a copy that runs this Python instead. A socket is checked beside the service it
    starts (verify refuses a socket whose service it cannot load)."""
    copies = []
    for path in paths:
        copy = tmp_path / path.name
        text = path.read_text().replace("/opt/pod5-reactor/.venv/bin/reactor", sys.executable)
        copy.write_text(text)
        copies.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # warnings (unknown keys, bad values) come on stderr


# ------------------------------------------------------- MemoryDenyWriteExecute

PR_SET_MDWE = 65  # Linux 6.3+: the kernel's own MemoryDenyWriteExecute
PR_MDWE_REFUSE_EXEC_GAIN = 1

# Turn on MDWE (exit 77 if the kernel cannot), prove it is on (a W+X mapping must
# fail, else exit 78), then become the program: the test cannot pass without MDWE.
MDWE_WRAPPER = f"""
import ctypes, mmap, os, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    os.execv(sys.argv[1], sys.argv[1:])
sys.exit(78)
"""


def kernel_has_mdwe() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, sys.executable, "-c", "pass"], check=False
    )
    if probe.returncode not in (0, 77):
        pytest.fail(f"the MDWE wrapper is broken: exit {probe.returncode}")
    return probe.returncode == 0


def get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - our server
            answer: dict[str, object] = json.load(reply)
            return answer
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="MDWE is a Linux prctl")
def test_reactor_serve_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes holds: `reactor serve` under the kernel's equivalent
    starts (its start-up scan's child, which watches through ctypes too, included),
    notices a new .pod5 through inotify (watchdog's ctypes) and stops cleanly."""
    if not kernel_has_mdwe():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    input_dir.mkdir()
    output_dir.mkdir()
    for number in range(OLD_FILES):  # large enough for the child (empty: incomplete)
        (input_dir / f"PAK00000_pass_0123abcd_{number:05}.pod5").touch()
    assert worth_a_child(input_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = serve_args(input_dir, output_dir, port, log_format="json")
    with (tmp_path / "server.jsonl").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", MDWE_WRAPPER, sys.executable, "-m", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:

        def ready() -> bool:
            assert server.poll() is None, f"server exited with {server.returncode}"
            return get_json(f"{url}/readyz") is not None

        wait_for(ready, 30, "the server to be ready")
        write_pod5(input_dir / "PAK00000_pass_abc_def_0.pod5", n_reads=1, seed=0)

        def file_ready() -> bool:
            status = get_json(f"{url}/status")
            return status is not None and status["files"] == {
                "incomplete": OLD_FILES, "ready": 1, "assigned": 0, "done": 0, "quarantined": 0,
            }  # fmt: skip

        wait_for(file_ready, 30, "the new file to be ready")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    text = (tmp_path / "server.jsonl").read_text()
    assert code == 0, text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    (recovered,) = [e for e in events if e["event"] == "recovered"]
    assert (recovered["looked_by"], recovered["looks_began"]) == ("children", "before_watch")
