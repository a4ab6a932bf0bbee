"""A real Prometheus for tests, and the files reactor ships for it.

`Prometheus` runs Debian's `prometheus` as a process of the test's own: a free loopback
port, a config file and a TSDB folder under the test's temporary folder (never the
system service's), stopped by its pid. Queries go through its HTTP API, and every wait
polls it with a deadline. `promtool` checks rule files and runs their unit tests.

Without the `prometheus` package a test skips (fails under CI=true: .ci/run installs
it; tests/support/tools.py). The names of the metrics reactor really exports are read
from the `/metrics` of real apps (`exported_names`), so the shipped rules and dashboard
are checked against the service, not against a list written by hand.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.serve.app import create_app, create_host_app
from reactor.settings.fleet import FleetConfig
from reactor.settings.serve import ServeConfig, prepare_output_dirs
from tests.support.api import AiohttpClient, Client, get_json
from tests.support.launch import free_port
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.tools import require_tool

RULES = REPO / "docs" / "prometheus" / "reactor-alerts.yml"
RULE_TESTS = REPO / "docs" / "prometheus" / "reactor-alerts.test.yml"
DASHBOARD = REPO / "docs" / "grafana" / "pod5-reactor.json"
OPERATIONS = REPO / "docs" / "operations.md"

METRIC_NAME = re.compile(r"\breactor_[a-z0-9_]*[a-z0-9]")
# Grafana's variables in the dashboard's expressions, and what a check puts in their
# place: every instance, every run (a regex matching the empty string also matches the
# series of a service that serves one run, which have no `run` label).
VARIABLES = {"$instance": ".*", "$run": ".*"}


def tool(name: str) -> str:
    """The path of Prometheus's `name` (prometheus or promtool); skips if missing."""
    path = shutil.which(name)
    require_tool(path is not None, f"{name} is not installed (Debian package prometheus)")
    assert path is not None
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `promtool args`, bounded, and return what it did."""
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def metric_names(text: str) -> set[str]:
    """Every `reactor_*` name an expression (or a whole file) mentions."""
    return set(METRIC_NAME.findall(text))


def sample_names(exposition: str) -> set[str]:
    """The series names of a /metrics answer, as Prometheus stores them (`_total`,
    `_bucket`, `_count`, `_sum`, `_created` included)."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


async def _scrape(client: Client) -> str:
    """/metrics twice (the first request's latency shows in the second answer)."""
    for _ in range(2):
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
    return text


async def exported_names(aiohttp_client: AiohttpClient, folder: Path) -> set[str]:
    """The series names real apps put in /metrics: a one-run service with a fleet (its
    Slurm commands run through `false`, so they fail and touch no cluster) after a job
    went through DONE, and a host serving one run."""
    input_dir, output_dir = folder / "input", folder / "output"
    input_dir.mkdir(parents=True)
    output_dir.mkdir()
    fleet = FleetConfig(
        manager_url="http://127.0.0.1:1", name="reactor-names", submit_via=("false",)
    )
    config = ServeConfig(input_dir=input_dir, output_dir=output_dir, fleet=fleet)
    prepare_output_dirs(config)
    write_pod5(input_dir / "PAK00000_pass_abc_def_0.pod5", n_reads=1, seed=1)
    one_run = await aiohttp_client(create_app(config, watch=False, sweep=False))
    job = await get_json(one_run, "/assignwork", engineid="gpu0", batchsize=1)
    out = output_dir / job["job_output_dir"] / "pass"
    (out / "PAK00000_pass_abc_def_0.fastq").write_text("@r\nACGT\n+\nIIII\n")
    await get_json(one_run, "/completed", job_id=job["jobid"], job_state="DONE")
    names = sample_names(await _scrape(one_run))

    root = folder / "data"
    run = root / "grp" / "s1" / "20261205_1412_1A_PAW00001_aaaaaaaa"
    (run / "pod5").mkdir(parents=True)
    write_pod5(run / "pod5" / "PAW00001_aaaaaaaa_0f1d7e9e_0.pod5", n_reads=1, seed=2)
    host = await aiohttp_client(create_host_app(ServeConfig(watch_root=(root,))))
    host_names = sample_names(await _scrape(host))
    assert "reactor_runs" in host_names and "reactor_files" in host_names
    return names | host_names


def documented_queries() -> list[str]:
    """The PromQL of docs/operations.md's "Scraping metrics": one query per entry of its
    `promql` block (comment lines apart), in order."""
    section = OPERATIONS.read_text().split("## Scraping metrics", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```promql\n(.*?)```", section, re.DOTALL)
    queries: list[str] = []
    for block in blocks:
        current: list[str] = []
        for line in [*block.splitlines(), ""]:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                current.append(stripped)
            elif current:
                queries.append(" ".join(current))
                current = []
    return queries


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' panels included."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target["expr"]


def with_variables(expr: str) -> str:
    """`expr` with Grafana's variables replaced as `VARIABLES` says."""
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


class Prometheus:
    """One `prometheus` process of the test's own (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        scrape_configs: list[dict[str, Any]],
        *,
        rule_files: tuple[Path, ...] = (),
        interval_s: int = 1,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "prometheus.yml"
        config = {
            "global": {
                "scrape_interval": f"{interval_s}s",
                "scrape_timeout": f"{interval_s}s",
                "evaluation_interval": f"{interval_s}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": scrape_configs,
        }
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log = folder / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait (bounded) until it says it is ready."""
        checked = promtool("check", "config", str(self.config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_until(self._ready, timeout_s, "Prometheus to be ready")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM by pid, then SIGKILL if it does not go within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def wait_until(
        self,
        condition: Callable[[], bool],
        timeout_s: float,
        what: str,
        detail: Callable[[], object] = lambda: "",
    ) -> None:
        """Poll `condition` every 0.2 s until true; fail after `timeout_s`, saying
        `detail()` (what was last seen)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what} {detail()}")
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/`path` and return its `data` (failing the test on an error)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as reply:  # noqa: S310
                answer = json.load(reply)
        except urllib.error.HTTPError as error:
            answer = json.load(error)
        assert answer["status"] == "success", (path, params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [time, "text"]}]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, *by: str) -> dict[tuple[str, ...], float]:
        """An instant query's values, keyed by the labels `by` of each series."""
        return {
            tuple(series["metric"].get(label, "") for label in by): float(series["value"][1])
            for series in self.query(expr)
        }

    def wait_for_values(
        self,
        expr: str,
        by: tuple[str, ...],
        expected: Callable[[dict[tuple[str, ...], float]], bool],
        timeout_s: float,
        what: str,
    ) -> dict[tuple[str, ...], float]:
        """Poll `expr` until `expected(values)`; return those values."""
        seen: dict[tuple[str, ...], float] = {}

        def check() -> bool:
            seen.clear()
            seen.update(self.values(expr, *by))
            return expected(seen)

        self.wait_until(check, timeout_s, what, lambda: f"(`{expr}` last gave {seen})")
        return seen

    def targets(self) -> list[dict[str, Any]]:
        data = self.api("targets", state="active")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def target(self, job: str) -> dict[str, Any]:
        """The scrape target of `job` ({} until discovered)."""
        found = [t for t in self.targets() if t["labels"].get("job") == job]
        assert len(found) <= 1, found
        return found[0] if found else {}

    def target_up(self, job: str) -> bool:
        return self.target(job).get("health") == "up"
