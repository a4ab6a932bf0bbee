"""Host mode end to end: a real `reactor serve --watch-root` process on a socket the test
holds (as systemd holds reactor.socket), runs appearing under a MinKNOW-like root while
it serves, 8 seed-protocol engines and 4 reference engines across them, `kill -9` of
the service mid-run and a restart, a run that appears after the restart. Every run
must end with every read exactly once in its own outputs, and its `on_complete` run
once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.activation import listening_socket, log_events, start_activated
from tests.support.exactly_once import recount
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.served import SEED_ENGINE, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUNID = "0f1d7e9e"
READS = 3
FAKE = "{python} -m reactor fake-basecaller {input_dir} {output_dir}"
RECORD = (
    f"{sys.executable} -c "
    "\"import os; open(os.environ['HOST_TEST_LOG'], 'a')"
    ".write(os.environ['REACTOR_RUN_NAME'] + '\\n')\""
)


class Run:
    """One MinKNOW-like run folder whose files arrive over time (written in `tmp/`, then
    moved into place, as MinKNOW does)."""

    def __init__(self, root: Path, relative: str, key: str, layout: str, files: int) -> None:
        self.folder = root / relative
        self.key = key
        self.layout = layout
        self.count = files
        self.files: list[Path] = []
        self.pooled = layout == "pooled"

    def target(self, i: int) -> Path:
        fc, prid = self.key.split("_")
        if self.layout == "barcoded":
            barcode = f"barcode0{i % 3 + 1}"
            name = f"{fc}_pass_{barcode}_{prid}_{RUNID}_{i}.pod5"
            return self.folder / "pod5_pass" / barcode / name
        return self.folder / "pod5" / f"{fc}_{prid}_{RUNID}_{i}.pod5"

    def arrive(self, i: int, seed: int) -> None:
        tmp = self.folder / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        staged = tmp / f"{self.key}_{i}.pod5"
        write_pod5(staged, READS, seed=seed)
        final = self.target(i)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(final)
        self.files.append(final)

    def finish(self) -> None:
        (self.folder / f"final_summary_{self.key}_{RUNID}.txt").write_text("done=1\n")

    def output_dir(self) -> Path:
        base = self.folder / "reactor"
        return base / self.key if self.pooled else base


class Host:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "data"
        self.root.mkdir()
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.completions = tmp / "on_complete.log"
        self.socket = listening_socket()
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.serve: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.engines: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.starts += 1
        args = [
            "reactor", "serve",
            "--watch-root", str(self.root),
            "--listen", f"127.0.0.1:{self.socket.getsockname()[1]}",
            "--sweep-interval", "0.2",
            "--report-back-interval", "5",
            "--settle-seconds", "1",
            "--log-format", "json",
            "--on-complete", RECORD,
        ]  # fmt: skip
        with (self.logs / f"server-{self.starts}.jsonl").open("wb") as log:
            env = {**_env(), "HOST_TEST_LOG": str(self.completions)}
            self.serve = start_activated(self.socket, args, log, env=env)
        wait_for(self.ready, 30, "the host to be ready")

    def ready(self) -> bool:
        assert self.serve is not None
        if self.serve.poll() is not None:
            pytest.fail(f"serve exited with {self.serve.returncode}; see {self.logs}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/status", timeout=5) as reply:  # noqa: S310
            answer: dict[str, Any] = json.load(reply)
            return answer

    def runs(self) -> dict[str, dict[str, Any]]:
        try:
            return {run["run"]: run for run in self.status()["runs"]}
        except OSError:
            return {}

    def kill(self) -> None:
        assert self.serve is not None
        self.serve.send_signal(signal.SIGKILL)
        self.serve.wait(timeout=30)

    def start_engines(self) -> None:
        for i in range(8):
            self._engine(
                [sys.executable, str(SEED_ENGINE), "--url", self.url,
                 "--engine-id", f"seed{i}", "--input-dir", str(self.root),
                 "--output-dir", str(self.root), "--batch-size", "4"],
                f"seed-{i}",
            )  # fmt: skip
        for i in range(4):
            self._engine(
                [sys.executable, "-m", "reactor", "engine", "--manager", self.url,
                 "--engine-id", f"ref{i}", "--input-dir", str(self.root),
                 "--output-dir", str(self.root), "--command", FAKE, "--batch-size", "3",
                 "--poll-interval", "0.05", "--max-poll-interval", "0.5",
                 "--log-format", "json"],
                f"ref-{i}",
            )  # fmt: skip

    def _engine(self, command: list[str], name: str) -> None:
        with (self.logs / f"engine-{name}.log").open("wb") as log:
            self.engines.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            )

    def stop(self) -> None:
        for engine in self.engines:
            if engine.poll() is None:
                engine.kill()
                engine.wait(timeout=10)
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            self.serve.wait(timeout=30)
        self.socket.close()


def _env() -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    the_host = Host(tmp_path)
    yield the_host
    the_host.stop()


def arrive_rest(
    runs: list[Run], seeds: Iterator[int], half: threading.Event, restarted: threading.Event
) -> None:
    """Every file after each run's first, the runs' files interleaved; half of them
    before the service is killed, the rest once it is back (`restarted`)."""
    order = [
        (run, i) for i in range(1, max(run.count for run in runs)) for run in runs if i < run.count
    ]
    for n, (run, i) in enumerate(order):
        if n == len(order) // 2:
            half.set()
            if not restarted.wait(timeout=120):
                return
        run.arrive(i, next(seeds))


def test_a_host_serves_every_run_through_a_kill_and_a_new_run(host: Host) -> None:
    root = host.root
    runs = [
        Run(root, "grp/s1/20261205_1412_1A_PAW00001_aaaaaaaa", "PAW00001_aaaaaaaa", "flat", 24),
        Run(root, "grp/s1/20261205_1420_1B_PAW00002_bbbbbbbb", "PAW00002_bbbbbbbb", "barcoded", 24),
        Run(root, "grp/pool", "PAW00003_cccccccc", "pooled", 16),
        Run(root, "grp/pool", "PAW00004_dddddddd", "pooled", 16),
    ]
    late = Run(root, "grp/s2/20261205_1600_1C_PAW00005_eeeeeeee", "PAW00005_eeeeeeee", "flat", 12)
    seeds = iter(range(1, 10_000))
    for run in runs:  # each run has its first file when the service starts
        run.arrive(0, next(seeds))
    host.start()
    host.start_engines()

    # the rest arrive while the engines work; the service is killed a third of the way
    half, restarted = threading.Event(), threading.Event()
    writer = threading.Thread(target=arrive_rest, args=(runs, seeds, half, restarted), daemon=True)
    writer.start()
    total = sum(run.count for run in runs)

    def done() -> int:
        return sum(r["done"] for r in host.runs().values())

    wait_for(lambda: half.is_set() and done() >= total // 4, 120, "a quarter of the files done")
    done_at_kill = done()
    host.kill()
    host.start()
    restarted.set()
    writer.join(timeout=120)
    assert done_at_kill < total, "killed mid-run: files were still arriving"
    assert not writer.is_alive()
    # a run that appears after the restart is found and served too
    for i in range(late.count):
        late.arrive(i, next(seeds))
    everything = [*runs, late]
    for run in everything:
        run.finish()
    wait_for(
        lambda: (
            len(host.runs()) == len(everything)
            and all(r["phase"] == "complete" for r in host.runs().values())
        ),
        180,
        "every run complete",
    )

    for run in everything:
        result = recount(run.files, run.output_dir())
        assert result.ok, (run.key, result)
        assert result.reads == READS * run.count == READS * len(run.files)
    # A run is complete once its marker is written; its on_complete runs after that, in a
    # process of its own, so its line comes a little later.
    once_each = Counter({run.key: 1 for run in everything})

    def ran() -> Counter[str]:
        return (
            Counter(host.completions.read_text().split())
            if host.completions.exists()
            else Counter()
        )

    wait_for(lambda: ran() == once_each, 60, "on_complete run for every run")
    assert ran() == once_each, "on_complete once per run"
    events = [e for path in sorted(host.logs.glob("server-*.jsonl")) for e in log_events(path)]
    assert {e["run"] for e in events if e["event"] == "job_done"} == {r.key for r in everything}
    engines_that_worked = {e["engine_id"] for e in events if e["event"] == "job_done"}
    assert len(engines_that_worked) >= 6, engines_that_worked
    assert all(engine.poll() is None for engine in host.engines), "no engine died"
