"""What /status raises for a person (`reactor.core.status.alerts`), case by case."""

from __future__ import annotations

from typing import Any

import pytest

from reactor.core.status import alerts

QUIET: dict[str, Any] = {
    "waiting_files": 0,
    "waiting_s": 0.0,
    "engine_seen_s": 5.0,
    "quarantined": 0,
    "held": 0,
    "paused": [],
    "storage": None,
    "hash_problems": [],
}


@pytest.mark.parametrize(
    ("change", "kinds"),
    [
        ({}, []),
        # work waiting 10 min, no engine for 10 min (or never): the lab's GPUs are gone
        ({"waiting_files": 4, "waiting_s": 600.0, "engine_seen_s": 600.0}, ["no_engine"]),
        ({"waiting_files": 4, "waiting_s": 900.0, "engine_seen_s": None}, ["no_engine"]),
        # an engine was seen a minute ago: busy engines, not missing ones
        ({"waiting_files": 4, "waiting_s": 900.0, "engine_seen_s": 60.0}, []),
        # nothing waited long yet
        ({"waiting_files": 4, "waiting_s": 30.0, "engine_seen_s": None}, []),
        ({"quarantined": 1}, ["quarantined"]),
        ({"held": 2, "quarantined": 1}, ["held", "quarantined"]),
        ({"paused": ["PAW00001_aaaaaaaa"]}, ["disk_low"]),
        ({"hash_problems": ["PAW00001_aaaaaaaa"]}, ["output_hash"]),
        ({"storage": "fsync failed", "quarantined": 3}, ["storage", "quarantined"]),
    ],
)
def test_alerts(change: dict[str, Any], kinds: list[str]) -> None:
    found = alerts(**{**QUIET, **change})
    assert [alert["kind"] for alert in found] == kinds
    assert all(alert["level"] in {"error", "warning"} and alert["text"] for alert in found)


def test_an_alert_says_how_much_and_for_how_long() -> None:
    (alert,) = alerts(
        **{**QUIET, "waiting_files": 1200, "waiting_s": 1800.0, "engine_seen_s": None}
    )
    assert alert["text"] == (
        "1,200 files waiting for 30 min and no engine has asked for work in 10 min"
    )
