"""A run folder with a real `reactor serve` and real `reactor engine` processes, for the
engine's and the fleet's end-to-end tests: the engines, their JSON logs, the files added
whole, and the exactly-once check of the seed layout's pass/ and fail/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.records import job_records
from tests.support.served import ServedRun

LEASE_S = 2.0
READS_PER_FILE = 3
FAKE = "{python} -m reactor fake-basecaller {input_dir} {output_dir}"
# The fake basecaller after a pause, so batches are still running when the test acts.


def slow_fake(seconds: float) -> str:
    """The fake basecaller after a pause (a GPU's time, or a batch still running when a
    test acts), as an engine's command template."""
    return f'sh -c \'sleep {seconds:g}; exec "$0" -m reactor fake-basecaller "$1" "$2"\' ' + (
        "{python} {input_dir} {output_dir}"
    )


SLOW_FAKE = slow_fake(1)
Events = list[dict[str, Any]]


def json_lines(path: Path) -> Events:
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def gone(pid: int) -> bool:
    """True once `pid` is no process at all (neither running nor a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Engine:
    """One `python -m reactor engine` process and its JSON log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def events(self, name: str | None = None) -> Events:
        found = json_lines(self.log)
        return [e for e in found if name is None or e["event"] == name]

    def has(self, name: str) -> bool:
        return bool(self.events(name))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"engine did not exit within {timeout_s} s; see {self.log}")


class Run(ServedRun):
    """A run folder, its `reactor serve` process and the engines."""

    settings: ClassVar[dict[str, object]] = {
        **ServedRun.settings,
        "report_back_interval": LEASE_S,
        "sweep_interval": 0.2,
    }
    ready_timeout_s: ClassVar[float] = 20.0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.engines: list[Engine] = []
        self.read_ids: dict[str, list[str]] = {}
        self.orphans: list[int] = []  # commands of SIGKILLed engines, killed at teardown

    def add_files(self, count: int) -> None:
        """Complete .pod5 files, renamed in whole as MinKNOW's finished files are."""
        start = len(self.read_ids)
        for i in range(start, start + count):
            name = f"PAK00000_pass_abcdef12_0123abcd_{i}.pod5"
            staged = self.root / name
            self.read_ids[name] = write_pod5(staged, READS_PER_FILE, seed=i)
            staged.rename(self.input_dir / name)

    def all_done(self) -> bool:
        return self.files_done() == len(self.read_ids)

    def server_events(self, name: str) -> Events:
        found: Events = []
        for path in sorted(self.logs.glob("server-*.jsonl")):
            found.extend(e for e in json_lines(path) if e["event"] == name)
        return found

    def start_engine(self, engine_id: str, *args: str) -> Engine:
        log = self.logs / f"engine-{engine_id}-{len(self.engines)}.jsonl"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "reactor", "engine",
                    "--manager", self.url,
                    "--engine-id", engine_id,
                    "--input-dir", str(self.input_dir),
                    "--output-dir", str(self.output_dir),
                    "--poll-interval", "0.05",
                    "--max-poll-interval", "0.5",
                    "--grace", "30",
                    "--kill-grace", "5",
                    "--log-format", "json",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )  # fmt: skip
        engine = Engine(process, log)
        self.engines.append(engine)
        return engine

    def stop(self) -> None:
        for engine in self.engines:
            if engine.process.poll() is None:
                engine.process.kill()
                engine.process.wait(timeout=10)
        for pid in self.orphans:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.stop_server(timeout_s=20)

    def assert_exactly_once(self) -> None:
        """Every read id of every input in pass/+fail/ once; each file merged by one job."""
        expected = Counter(rid for ids in self.read_ids.values() for rid in ids)
        found: Counter[str] = Counter()
        for kind in ("pass", "fail"):
            for path in (self.output_dir / kind).iterdir():
                headers = path.read_text().splitlines()[0::4]
                found.update(header.split()[0].removeprefix("@") for header in headers)
        assert not expected - found, f"{len(expected - found)} reads lost"
        assert not found - expected, f"{len(found - expected)} reads duplicated or unknown"
        merged: Counter[str] = Counter()
        for record in job_records(self.output_dir):
            if record["state"] == "done":
                merged.update(list(record["files"]))  # name -> attempt
        assert merged == Counter(dict.fromkeys(self.read_ids, 1))
        assert not list(self.input_dir.glob("ASSIGNED_*"))
