"""/metrics in the Prometheus text format, parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from reactor.serve.app import create_app
from reactor.serve.app_keys import SWEEPER
from tests.support.paths import REPO
from tests.support.pod5files import write_pod5
from tests.support.prometheus import exported_names
from tests.support.runs import ManualClock, RunDirs

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


async def call(client: Client, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_what_happened(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock
) -> None:
    for i in range(5):
        write_pod5(run_dirs.input_dir / f"f{i}.pod5", n_reads=1, seed=i)
    config = run_dirs.config(report_back_interval=30.0, bench_after=0)
    client = await aiohttp_client(create_app(config, clock=clock, watch=False, sweep=False))
    done = await call(client, "/assignwork", engineid="e", batchsize=2)
    out = run_dirs.output_dir / done["job_output_dir"] / "pass"
    for name in done["batch"]:
        (out / f"{name}.fastq").write_text("@r\nA\n+\n!\n")
    await call(client, "/keepalive", job_id=done["jobid"], job_state="PROCESSING")
    clock.advance(12.0)
    await call(client, "/completed", job_id=done["jobid"], job_state="DONE")
    failed = await call(client, "/assignwork", engineid="e", batchsize=2)
    await call(client, "/completed", job_id=failed["jobid"], job_state="FAILED")
    await call(client, "/assignwork", engineid="e", batchsize=1)
    await client.server.app[SWEEPER].sweep_once(clock.advance(31.0))

    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    got = samples(await response.text())
    assert got[("reactor_assignments_total", ())] == 3
    assert got[("reactor_completions_total", (("outcome", "DONE"),))] == 1
    assert got[("reactor_completions_total", (("outcome", "FAILED"),))] == 1
    assert got[("reactor_retried_files_total", ())] == 2
    assert got[("reactor_expiries_total", ())] == 1
    assert got[("reactor_files", (("state", "done"),))] == 2
    assert got[("reactor_files", (("state", "ready"),))] == 3
    assert got[("reactor_jobs_live", ())] == 0
    assert got[("reactor_job_seconds_count", ())] == 1
    assert got[("reactor_job_seconds_sum", ())] == 12.0
    assigns = got[("reactor_request_seconds_count", (("route", "/assignwork"),))]
    assert assigns == 3


async def test_readme_queries_name_metrics_that_exist(
    aiohttp_client: AiohttpClient, run_dirs: RunDirs, clock: ManualClock, tmp_path: Path
) -> None:
    """Every metric and file state docs/operations.md's "Scraping metrics" names is in
    /metrics (of one run, a host's or a fleet's)."""
    readme = (REPO / "docs" / "operations.md").read_text()
    section = readme.split("## Scraping metrics", 1)[1].split("\n## ", 1)[0]
    used_names = set(re.findall(r"\breactor_[a-z_]+", section))
    used_states = {
        state
        for pattern in re.findall(r'state=~?"([^"]+)"', section)
        for state in pattern.split("|")
    }
    assert used_names
    assert used_states

    config = run_dirs.config()
    client = await aiohttp_client(create_app(config, clock=clock, watch=False, sweep=False))
    response = await client.get("/metrics")
    exposed = samples(await response.text())
    exposed_names = {name for name, _ in exposed} | await exported_names(
        aiohttp_client, tmp_path / "more"
    )
    exposed_states = {dict(labels)["state"] for name, labels in exposed if name == "reactor_files"}
    assert used_names <= exposed_names
    assert used_states <= exposed_states
