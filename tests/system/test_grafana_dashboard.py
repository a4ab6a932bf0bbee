"""The Grafana dashboard reactor ships (docs/grafana/pod5-reactor.json): a dashboard
Grafana can import (a data source variable, unique panel ids, panels on its grid), built
on docs/operations.md's queries, naming only metrics a real /metrics has, with every
query one Prometheus parses (`promtool check rules`, each query as a recording rule).
Each query runs against a live scrape in tests/system/test_prometheus_served.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.api import AiohttpClient
from tests.support.prometheus import (
    DASHBOARD,
    dashboard_targets,
    documented_queries,
    exported_names,
    metric_names,
    promtool,
    with_variables,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    """Every query of every panel, and the selectors of the variables' lists."""
    found = [expr for _, expr in dashboard_targets(dashboard())]
    found += [v["definition"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_is_one_grafana_can_import() -> None:
    board = dashboard()
    assert board["uid"] == "pod5-reactor" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"])


def test_the_dashboard_shows_every_documented_query() -> None:
    """Each of docs/operations.md's queries is on the dashboard (per run where the
    metric has a `run` label): every metric it names is in some panel's query."""
    on_board = set().union(*(metric_names(expr) for _, expr in dashboard_targets(dashboard())))
    documented = documented_queries()
    assert len(documented) == 5
    for query in documented:
        assert metric_names(query) <= on_board, query


async def test_the_dashboard_names_only_metrics_the_service_exports(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    exported = await exported_names(aiohttp_client, tmp_path)
    used = set().union(*(metric_names(expr) for expr in expressions()))
    assert len(used) > 20
    assert used <= exported, f"not in /metrics: {sorted(used - exported)}"


def test_every_dashboard_query_parses_in_prometheus(tmp_path: Path) -> None:
    """promtool parses each query (its variables filled in) as a recording rule."""
    queries = [expr for _, expr in dashboard_targets(dashboard())]
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": with_variables(expr)}
                    for i, expr in enumerate(queries)
                ],
            }
        ]
    }
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text(json.dumps(recorded))  # JSON is YAML
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout
    assert not any("$" in with_variables(expr) for expr in queries), "a variable left"
