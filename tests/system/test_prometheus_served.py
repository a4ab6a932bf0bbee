"""A real Prometheus scrapes a live simulated host: `reactor serve --watch-root` with a
token, `reactor simulate-run --flow-cells 2` writing real .pod5 files in MinKNOW's
layouts, real `reactor engine` processes with the stand-in basecaller, one of them
killed with a batch in hand. Prometheus reads /metrics every second with the token from
a file (as docs/operations.md's scrape job does) and loads the shipped alert rules.

Then every query docs/operations.md gives is evaluated by Prometheus (`/api/v1/query`)
and compared with what the test counted on its own: the files the simulator wrote per
run, the batches the engines' logs say they received and reported, the one lease that
had to expire (the p99s: numbers within their buckets). Every query of the Grafana
dashboard runs there and has data, and its variables list this host and its runs. A
scrape without the token, or with a wrong one, is refused (the target is down with a
401). Every wait polls with a deadline."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.engine_run import gone, json_lines
from tests.support.launch import free_port
from tests.support.paths import REPO
from tests.support.prometheus import (
    DASHBOARD,
    RULES,
    Prometheus,
    dashboard_targets,
    documented_queries,
    tool,
    with_variables,
)
from tests.support.served import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FLOW_CELLS = 2
FILES = 4  # per run
LEASE_S = 2
JOB = "pod5-reactor"
LABEL_VALUES = re.compile(r"label_values\((.+), (\w+)\)")
RUN_FOLDER = re.compile(r"\d{8}_\d{4}_[^_]+_(?P<key>[^_]+_[0-9a-f]{8})")


class LiveHost:
    """`reactor serve --watch-root` with a token, the simulator and the engines."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "data"
        self.root.mkdir()
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.token = secrets.token_hex(32)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.orphans: list[int] = []  # commands of killed engines (their own sessions)
        self.serve: subprocess.Popen[bytes] | None = None

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.jsonl").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reactor", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **env},
            )
        self.processes.append(process)
        return process

    def start_serve(self) -> None:
        self.serve = self._start(
            "serve",
            [
                "serve", "--watch-root", str(self.root), "--listen", self.address,
                "--report-back-interval", str(LEASE_S), "--sweep-interval", "0.2",
                "--settle-seconds", "1", "--log-format", "json",
            ],
            {"REACTOR_TOKEN": self.token},
        )  # fmt: skip
        wait_for(self._ready, 30, "reactor serve to be ready")

    def _ready(self) -> bool:
        assert self.serve is not None
        if self.serve.poll() is not None:
            pytest.fail(f"reactor serve exited with {self.serve.returncode}; see {self.logs}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def simulate(self) -> None:
        """Write every run's files (and its final summary), and wait for the simulator."""
        simulator = self._start(
            "simulate-run",
            [
                "simulate-run", str(self.root), "--flow-cells", str(FLOW_CELLS),
                "--files", str(FILES), "--reads-per-file", "3", "--interval", "0.8",
                "--pieces", "2", "--stagger", "0", "--seed", "16", "--quiet",
            ],
            {},
        )  # fmt: skip
        assert simulator.wait(timeout=60) == 0, f"see {self.logs / 'simulate-run.jsonl'}"

    def start_engine(self, engine_id: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """`reactor engine` given the root, batches of 2; its process and its log."""
        process = self._start(
            f"engine-{engine_id}",
            [
                "engine", "--manager", self.url, "--engine-id", engine_id,
                "--input-dir", str(self.root), "--output-dir", str(self.root),
                "--batch-size", "2", "--poll-interval", "0.05", "--max-poll-interval", "0.5",
                "--log-format", "json", *args,
            ],
            {"REACTOR_ENGINE_TOKEN": self.token},
        )  # fmt: skip
        return process, self.logs / f"engine-{engine_id}.jsonl"

    def events(self, log: Path, name: str) -> list[dict[str, Any]]:
        return [e for e in json_lines(log) if e.get("event") == name]

    def stop(self) -> None:
        for process in reversed(self.processes):  # engines first, the service last
            if process.poll() is None:
                if process is self.serve:
                    process.send_signal(signal.SIGTERM)
                else:
                    process.kill()
                process.wait(timeout=30)
        for pid in self.orphans:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def files_written(root: Path) -> Counter[str]:
    """The .pod5 files of each run, counted in the run folders the simulator made
    (MinKNOW's layout: `{group}/{sample}/{date}_{time}_{device}_{flow cell}_{prid8}/`,
    files in `pod5*/` and its barcode folders)."""
    counted: Counter[str] = Counter()
    for folder in root.glob("*/*/*"):
        match = RUN_FOLDER.fullmatch(folder.name)
        if match is None:
            continue
        for pod5_folder in folder.glob("pod5*"):
            counted[match["key"]] += len(list(pod5_folder.rglob("*.pod5")))
    return counted


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LiveHost]:
    tool("prometheus")  # skip before starting anything without it
    live = LiveHost(tmp_path)
    yield live
    live.stop()


@pytest.fixture
def prometheus(tmp_path: Path, host: LiveHost) -> Iterator[Prometheus]:
    token_file = tmp_path / "reactor.token"
    token_file.write_text(host.token + "\n")
    token_file.chmod(0o600)
    wrong_file = tmp_path / "wrong.token"
    wrong_file.write_text(secrets.token_hex(32))
    targets = [{"targets": [host.address]}]
    server = Prometheus(
        tmp_path / "prometheus",
        [
            {
                "job_name": JOB,
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": targets,
            },
            {"job_name": "no-token", "static_configs": targets},
            {
                "job_name": "wrong-token",
                "authorization": {"type": "Bearer", "credentials_file": str(wrong_file)},
                "static_configs": targets,
            },
        ],
        rule_files=(RULES,),
    )
    server.start()
    yield server
    server.stop()


def is_number(value: float, low: float, high: float) -> bool:
    return not math.isnan(value) and low <= value <= high


def test_prometheus_scrapes_a_live_host_and_the_documented_queries_count_what_happened(
    host: LiveHost, prometheus: Prometheus
) -> None:
    host.start_serve()
    prometheus.wait_until(lambda: prometheus.target_up(JOB), 20, "the scrape with the token up")

    # The runs' files, written while the service watches; no engine yet.
    host.simulate()
    written = files_written(host.root)
    assert len(written) == FLOW_CELLS and set(written.values()) == {FILES}, written
    total = sum(written.values())
    queries = documented_queries()
    progress, ingest, trouble, disk, loop = queries  # docs/operations.md's five, in order
    assert "reactor_files" in progress and "reactor_ingest_seconds" in ingest
    assert "reactor_expiries_total" in trouble and "reactor_disk_commit" in disk
    assert "reactor_loop_lag" in loop

    # 1. Progress, with nothing to do the work: every file ready, per run too.
    everything_ready = {("incomplete",): 0.0, ("ready",): float(total), ("assigned",): 0.0}
    prometheus.wait_for_values(
        progress, ("state",), lambda got: got == everything_ready, 20, "every file ready"
    )
    ready_per_run = prometheus.values('sum by (run) (reactor_files{state="ready"})', "run")
    assert ready_per_run == {(key,): float(n) for key, n in written.items()}
    # ... which the shipped rule sees: work waiting and no engine (pending: its `for` is
    # 10 minutes), once for the host, with the files of both runs.
    prometheus.wait_until(
        lambda: any(
            alert["labels"]["alertname"] == "ReactorWorkWaitingNoEngine"
            and alert["state"] == "pending"
            and alert["labels"]["instance"] == host.address
            and "run" not in alert["labels"]
            and float(alert["value"]) == total
            for alert in prometheus.api("alerts")["alerts"]
        ),
        20,
        "ReactorWorkWaitingNoEngine pending",
    )

    # An engine killed with a batch in hand: its lease expires, once.
    doomed_engine, doomed = host.start_engine("doomed", "--command", "sleep 60")
    wait_for(lambda: bool(host.events(doomed, "command_started")), 20, "the doomed batch")
    host.orphans.append(host.events(doomed, "command_started")[0]["pid"])
    doomed_engine.kill()
    serve_log = host.logs / "serve.jsonl"
    wait_for(lambda: bool(host.events(serve_log, "job_expired")), 20, "the lease to expire")

    healthy = [host.start_engine(f"gpu{i}", "--preset", "fake")[1] for i in range(2)]
    done_per_run = {(key,): float(n) for key, n in written.items()}
    prometheus.wait_for_values(
        'sum by (run) (reactor_files{state="done"})',
        ("run",),
        lambda got: got == done_per_run,
        60,
        "every file done, per run",
    )

    # What the engines say they did, from their own logs (an engine logs its report
    # once the service has answered it: a moment after the service counted it).
    logs = [doomed, *healthy]

    def files_reported() -> int:
        return sum(e["files"] for log in logs for e in host.events(log, "job_reported"))

    wait_for(lambda: files_reported() == total, 10, "the engines to log every report")
    received = sum(len(host.events(log, "job_received")) for log in logs)
    reported = Counter(e["state"] for log in logs for e in host.events(log, "job_reported"))
    assert set(reported) == {"DONE"}
    prometheus.wait_for_values(
        "sum(reactor_assignments_total)", (), lambda got: got == {(): float(received)}, 10,
        "the assignments the engines received",
    )  # fmt: skip
    prometheus.wait_for_values(
        "sum by (outcome) (reactor_completions_total)",
        ("outcome",),
        lambda got: got == {(state,): float(n) for state, n in reported.items()},
        10,
        "the completions the engines reported",
    )

    # Per engine: the files each engine's own log says it reported DONE, and the one
    # lease that expired on the engine that was killed.
    per_engine = Counter()
    for log in logs:
        for event in host.events(log, "job_reported"):
            per_engine[event["engine_id"]] += event["files"]
    prometheus.wait_for_values(
        "sum by (engine) (reactor_engine_files_done_total)",
        ("engine",),
        lambda got: (
            {key: n for key, n in got.items() if n}
            == {(engine,): float(n) for engine, n in per_engine.items()}
        ),
        10,
        "each engine's files done",
    )
    assert prometheus.values("sum(reactor_engine_jobs_expired_total)") == {(): 1.0}

    # 1. Progress: nothing waiting, in engines or being written any more.
    nothing_left = {("incomplete",): 0.0, ("ready",): 0.0, ("assigned",): 0.0}
    prometheus.wait_for_values(
        progress, ("state",), lambda got: got == nothing_left, 10, "nothing left"
    )
    # 3. Trouble: one expired lease (increase() extrapolates a little past the samples,
    # so the hour's figure is about 1, never 0 or 2), no file quarantined.
    (((), expired_and_quarantined),) = prometheus.values(trouble).items()
    assert round(expired_and_quarantined) == 1, expired_and_quarantined
    assert prometheus.values("sum(reactor_expiries_total)") == {(): 1.0}
    assert prometheus.values("sum(reactor_quarantined_files_total)") == {(): 0.0}
    # 2, 4, 5: the p99s of histograms that saw every file arrive, every group commit and
    # the loop's probe: a number within their buckets (the largest finite bound is what
    # histogram_quantile gives past it).
    for name, expr, high in (("ingest", ingest, 2.5), ("disk", disk, 2.5), ("loop", loop, 1.0)):
        (((), value),) = prometheus.values(expr).items()
        assert is_number(value, 0.0, high), (name, expr, value)
    counted = prometheus.values("sum(reactor_ingest_seconds_count)")[()]
    assert 1 <= counted <= total  # files found by a scan at a run's start are not timed

    # Scrapes without the token, or with a wrong one, are refused.
    for job in ("no-token", "wrong-token"):
        refused = prometheus.target(job)
        assert refused["health"] == "down", refused
        assert "401" in refused["lastError"], refused
    assert prometheus.values('up{job="no-token"}') == {(): 0.0}

    # Every alert rule loaded and evaluated without error against the real series.
    loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    assert sorted(r["name"] for r in loaded) == sorted(
        r["alert"] for g in shipped for r in g["rules"]
    )
    assert {r["health"] for r in loaded} == {"ok"}, [r for r in loaded if r["health"] != "ok"]

    check_dashboard(prometheus, host, written)


def check_dashboard(prometheus: Prometheus, host: LiveHost, written: Counter[str]) -> None:
    """Every query of the dashboard runs in Prometheus; each one that is not the fleet's
    (no fleet here) has data from this run; its variables list this host and its runs."""
    dashboard = json.loads(DASHBOARD.read_text())
    targets = list(dashboard_targets(dashboard))
    empty: list[tuple[str, str]] = []

    def every_query_has_data() -> bool:
        # each runs without error (`query` fails the test on one); rates and increases
        # need two samples of a series, so the newest series may take a scrape or two
        empty[:] = [
            (title, expr)
            for title, expr in targets
            if not prometheus.query(with_variables(expr)) and "reactor_fleet_" not in expr
        ]
        return not empty

    prometheus.wait_until(
        every_query_has_data, 15, "every dashboard query to have data", lambda: empty
    )
    # The variables' lists, as Grafana asks for them (label_values(SELECTOR, LABEL)).
    listed: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = LABEL_VALUES.fullmatch(variable["definition"])
        assert found, variable
        selector, label = found.groups()
        match = {"match[]": with_variables(selector)}
        listed[variable["name"]] = prometheus.api(f"label/{label}/values", **match)
    assert listed == {"instance": [host.address], "run": sorted(written)}
