"""`reactor engine --check`: can this engine host work with the manager it is given?

Cluster nodes often cannot see the sequencer's disk, or see it somewhere else. Before
an engine takes a batch, this says, one line each, whether: its input folder can be
listed, its output folder written, the manager answers, the token is accepted, and (a
manager in host mode) the folders of the runs it serves are there under the input
folder, where the job folders it hands out will be. Exit 0 when all is well, 1 when a
check fails; the fix is on the line.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TextIO

import aiohttp

from reactor.settings.engine import EngineConfig

RUNS_CHECKED = 20
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str


def _input(folder: Path) -> Finding:
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        return Finding(
            "input folder",
            False,
            f"{folder} cannot be listed here ({exc.strerror}): mount the manager's "
            "INPUTDIR (host mode: its root) at this path, or give --input-dir the path "
            "where it is mounted",
        )
    return Finding("input folder", True, f"{folder} can be listed")


def _output(folder: Path) -> Finding:
    probe = folder / f".reactor-engine-check-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Finding(
            "output folder",
            False,
            f"cannot write in {folder} ({exc.strerror}): engines write each batch's "
            "outputs there; mount it read-write for this user",
        )
    return Finding("output folder", True, f"{folder} can be written")


async def _manager(config: EngineConfig) -> tuple[list[Finding], dict[str, Any] | None]:
    base = config.manager.rstrip("/")
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{base}/healthz") as reply:
                if reply.status != 200:
                    detail = f"{base}/healthz answered {reply.status}: is this a reactor?"
                    return [Finding("manager", False, detail)], None
            found = [Finding("manager", True, f"{base} answers")]
            async with session.get(f"{base}/status", headers=headers) as reply:
                if reply.status in (401, 403):
                    detail = (
                        f"the manager refused this engine ({reply.status}): set the token "
                        "it expects (REACTOR_ENGINE_TOKEN), or allow this host's network"
                    )
                    return [*found, Finding("access", False, detail)], None
                status: dict[str, Any] = await reply.json()
            return [*found, Finding("access", True, "the manager takes this engine")], status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        detail = f"{base} cannot be reached ({exc or type(exc).__name__}): check --manager"
        return [Finding("manager", False, detail)], None


def _runs(config: EngineConfig, status: dict[str, Any]) -> Iterator[Finding]:
    """A host-mode manager's live runs: each one's folder below the root this engine
    was given (the job folders it hands out are paths below that root)."""
    roots = [PurePath(root) for root in status.get("roots", [])]
    runs = [run for run in status.get("runs", []) if run.get("phase") != "complete"]
    for run in runs[:RUNS_CHECKED]:
        folder = PurePath(str(run.get("output_dir", "")))
        root = next((r for r in roots if folder.is_relative_to(r)), None)
        if root is None:  # an output root elsewhere: the engine is given that one
            continue
        here = config.input_dir / folder.relative_to(root)
        ok = here.is_dir()
        detail = (
            f"{here} is there"
            if ok
            else f"{here} is not there: the manager's {folder} must be at this path here"
        )
        yield Finding(f"run {run.get('run')}", ok, detail)


async def run_check(config: EngineConfig, out: TextIO = sys.stdout) -> int:
    findings = [_input(config.input_dir), _output(config.output_dir)]
    found, status = await _manager(config)
    findings += found
    if status is not None and status.get("mode") == "host":
        findings += list(_runs(config, status))
    for finding in findings:
        out.write(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.name}: {finding.detail}\n")
    return 0 if all(finding.ok for finding in findings) else 1
