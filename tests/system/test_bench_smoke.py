"""The benchmark harness runs end to end at tiny sizes, so it cannot rot. No assertion
on timings: they depend on the machine, and a test that fails on a slow or busy machine
proves nothing about reactor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.figures import Figure, table
from tests.support.paths import REPO


def test_a_figure_compares_with_its_floor_as_a_ratio_or_a_difference() -> None:
    """Ratio is value/reference; a 'difference' figure reports value - reference."""
    assert Figure("x", 3.0, "s", 1.5, "floor").ratio == 2.0
    assert Figure("y", 12.0, "ms", 2.0, "floor", compare="difference").ratio == 10.0
    assert Figure("z", None, "s", 1.0).ratio is None
    assert "x" in table([Figure("x", 3.0, "s", 1.5, "floor", target="< 2 s", met=False)])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_quick_benchmark_measures_every_part_and_writes_its_figures(tmp_path: Path) -> None:
    """`--quick` on tiny trees: every part's figures present, no error, no file lost."""
    figures_path = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.bench", "--quick",
            "--data", str(tmp_path / "data"), "--json", str(figures_path),
        ],
        capture_output=True, text=True, timeout=230, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(figures_path.read_text())
    names = [figure["name"] for figure in figures["figures"]]
    assert any(name.startswith("restart ") for name in names)
    assert any(name.startswith("memory per tracked file") for name in names)
    assert any(name.startswith("ingest p99") for name in names)
    assert any(name.startswith("/keepalive") for name in names)
    assert any(name.startswith("/completed") for name in names)
    assert any(name.startswith("durable record writes on this disk") for name in names)
    assert any(name.startswith("/completed, 8 clients, fsync") for name in names)
    for verbs in figures["raw"]["durability"]["cells"].values():
        for cells in verbs.values():
            assert all(cell["errors"] == 0 for cell in cells.values()), cells
    assert all(figure["value"] is not None for figure in figures["figures"])
    for verb in figures["raw"]["api"]["200"]["verbs"].values():
        for cell in verb.values():
            assert cell["errors"] == 0, cell["error_samples"]
    assert figures["raw"]["ingest"]["idle"]["reactor"]["missing"] == 0
    for mode in ("idle", "loaded"):
        ingested = figures["raw"]["ingest"][mode]
        assert ingested["journal"]["missing"] == 0, ingested
        p99 = next(f for f in figures["figures"] if f["name"].startswith(f"ingest p99, {mode} ("))
        assert any(name.startswith(f"ingest p99, {mode} (") and "journal floor" in name
                   for name in names)  # fmt: skip
        # Out of reach only when the same run's journal floor misses the target itself,
        # recounted here from the trial.
        journal, floor = ingested["journal"]["p99_ms"], ingested["floor"]["p99_ms"]
        journal_misses = journal >= 50 or journal - floor > 10
        assert bool(p99["out_of_reach"]) == journal_misses, (p99, journal, floor)
    waits = [f for f in figures["figures"] if ", long-poll (" in f["name"]]
    assert sorted(f["name"].split(",")[0] for f in waits) == [
        "/assignwork requests per idle engine per minute",
        "new file to command started p50",
        "new file to command started p99",
    ]
    assert all(f["reference"] is not None and f["reference_kind"] == "polling" for f in waits)
    for mode in ("long-poll", "polling"):
        arrived = figures["raw"]["wait"]["latency"][mode]
        assert arrived["missing"] == 0, arrived
        assert arrived["done"] == arrived["files"], arrived
        assert figures["raw"]["wait"]["idle"][mode]["requests"] >= 1
    dashboard = [f["name"] for f in figures["figures"] if f["name"].startswith("dashboard, ")]
    for what in (
        "CPU, share of a core, 20 viewers of the host view",
        "CPU, share of a core, 20 viewers of the run view",
        "CPU, share of a core, 20 clients polling /status",
        "frames a second, slowest of 20 viewers of the host view",
        "frames a second, slowest of 20 viewers of the run view",
        "bytes per frame, the host view",
        "/status at 30 live jobs",
        "/status?run=, the busiest run at 30 live jobs",
    ):
        assert any(what in name for name in dashboard), (what, dashboard)
    watched = figures["raw"]["dashboard"]
    for kind in ("host_view", "run_view", "polling"):
        clients = watched[kind]["clients"]
        assert len(clients) == 20, kind
        assert all(client["frames"] >= 1 for client in clients), (kind, clients)
    assert all(client["runs"] == 8 for client in watched["host_view"]["clients"])
    assert all(c["named"] == c["target"] for c in watched["run_view"]["clients"])
    idle = figures["raw"]["idle"]
    assert idle["idle"]["requests"] >= 64  # every waiting engine asked at least once
    assert idle["loop_lag"]["samples"] > 0
    assert idle["cli"]["floor_s"] < idle["cli"]["reactor --help"]
    assert any(name.startswith("idle CPU, 64 engines waiting") for name in names)
    assert any(name.startswith("event loop lag p99 under load") for name in names)
    assert any(name.startswith("CLI start: reactor status") for name in names)
    throughput = figures["raw"]["throughput"]["median"]["8"]
    for kind, trial in throughput.items():
        assert trial["errors"] == 0, (kind, trial["error_samples"])
        assert trial["outputs"] == trial["files"] == figures["raw"]["throughput"]["files"], kind
    assert any(name.startswith("seed-like baseline (Flask), 8 engines") for name in names)
    starts = ("ceiling: no disk at all", "ceiling: the seed protocol's folder changes",
              "floor: the journal and read workers alone", "floor: the journal alone",
              "reactor, durability fsync, read_qc off", "reactor, fsync: ms per file")  # fmt: skip
    for start in starts:
        assert any(name.startswith(start) for name in names), start
    # Out of reach only when the same run's journal floor (fsync, no reads) is under 3x
    # the seed's files/s, recounted here from the trials.
    over_seed = next(
        f for f in figures["figures"] if f["name"].startswith("reactor, durability fsync, 8")
    )
    journal_over_seed = (
        throughput["floor fsync no reads"]["files_per_s"] / throughput["seed"]["files_per_s"]
    )
    assert bool(over_seed["out_of_reach"]) == (journal_over_seed < 3), (
        over_seed,
        journal_over_seed,
    )
    assert "| figure |" in figures["markdown"]
