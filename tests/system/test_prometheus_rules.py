"""The alert rules reactor ships (docs/prometheus/reactor-alerts.yml): Prometheus's own
verdict on them (`promtool check rules`), their unit tests on made-up series
(`promtool test rules`: each alert fires when it should and not otherwise, in promtool's
time, where a `for: 10m` takes no ten minutes), and the metric names they and their
tests use, each one that a real /metrics has. They are loaded into a live Prometheus
in tests/system/test_prometheus_served.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.api import AiohttpClient
from tests.support.prometheus import (
    OPERATIONS,
    RULE_TESTS,
    RULES,
    exported_names,
    metric_names,
    promtool,
)

SERIES_NAME = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_promtool_finds_the_rules_valid() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    """promtool runs the unit tests beside the rules; every alert has some."""
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    unit_tests = yaml.safe_load(RULE_TESTS.read_text())
    alerts_tested = {
        case["alertname"]
        for test in unit_tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert alerts_tested == {rule["alert"] for rule in rules()}


async def test_rules_and_their_tests_name_only_metrics_the_service_exports(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    exported = await exported_names(aiohttp_client, tmp_path)
    used: set[str] = set()
    for rule in rules():
        used |= metric_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            used |= metric_names(text)
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in test["input_series"]:
            name = SERIES_NAME.match(series["series"])
            assert name is not None, series
            used.add(name.group(1))
    assert used, "no metric found in the rules"
    assert used <= exported, f"not in /metrics: {sorted(used - exported)}"


def test_the_documented_alerts_are_the_rules() -> None:
    """docs/operations.md's "Scraping metrics" shows the two alerts it describes as they
    are in the rules file, and points to the rules file and the dashboard."""
    section = OPERATIONS.read_text().split("## Scraping metrics", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    by_name = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules()}
    for name in ("ReactorWorkWaitingNoEngine", "ReactorJobHeld"):
        assert name in section
        assert by_name[name] in flat, (name, by_name[name])
    assert "prometheus/reactor-alerts.yml" in section
    assert "prometheus/reactor-alerts.test.yml" in section
    assert "grafana/pod5-reactor.json" in section
