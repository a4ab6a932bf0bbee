"""The lab's rules choose each run's basecall parameters from what the run says it is."""

from __future__ import annotations

import pytest

from reactor.core.params import (
    RuleError,
    RunFacts,
    choose,
    for_engines,
    parse_rules,
    seed_can_take,
)

RULES = parse_rules([
    {"set": {"sources": "auto"}},  # every run
    {"when": {"sample_rate": 5000, "flow_cell_product": "FLO-PRO114*"}, "set": {"model": "hac"}},
    {"when": {"sample_rate": 4000}, "set": {"model": "fast"}},
    {"when": {"path": "clinical/*"}, "set": {"model": "sup"}},
    {"when": {"barcoded": True, "barcoding_kit": "SQK-NBD114-*"},
     "set": {"kit_name": "SQK-NBD114-24"}},
])  # fmt: skip


def test_every_rule_that_holds_applies_later_keys_over_earlier_ones() -> None:
    r10 = RunFacts("research/s1/run", sample_rate=5000, flow_cell_product="FLO-PRO114M")
    assert choose(RULES, r10).params == {"sources": "auto", "model": "hac"}
    assert choose(RULES, r10).rules == (1, 2)
    clinical = RunFacts("clinical/s1/run", sample_rate=5000, flow_cell_product="FLO-PRO114M")
    assert choose(RULES, clinical).params["model"] == "sup"
    old = RunFacts("research/s2/run", sample_rate=4000, flow_cell_product="FLO-PRO002")
    assert choose(RULES, old).params == {"sources": "auto", "model": "fast"}
    barcoded = RunFacts("x/y/z", barcoding_kit="SQK-NBD114-24", aliases={"barcode01": "patient1"})
    assert choose(RULES, barcoded).params["kit_name"] == "SQK-NBD114-24"


def test_what_a_run_cannot_tell_yet_does_not_hold() -> None:
    young = RunFacts("research/s1/run")  # no POD5 read yet, no sample sheet
    assert choose(RULES, young).params == {"sources": "auto"}
    assert young.barcoded is None
    assert RunFacts("a", barcoding_kit="SQK-LSK114").barcoded is False


def test_seed_engines_take_only_runs_they_can_basecall() -> None:
    assert seed_can_take({}, {})
    assert seed_can_take({"model": "hac"}, {"model": "hac"})
    assert not seed_can_take({"model": "sup"}, {"model": "hac"})
    assert not seed_can_take({}, None)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"when": {}}, "must be a list"),
        (["x"], "rule 1 is not a table"),
        ([{"set": {"model": "hac"}, "then": 1}], "rule 1 has 'then'"),
        ([{"set": {}}], "rule 1: set must be a table"),
        ([{"when": {"colour": "red"}, "set": {"model": "hac"}}], "'colour' is not something"),
        ([{"when": {"sample_rate": "5k"}, "set": {"model": "hac"}}], "whole number of Hz"),
        ([{"when": {"barcoded": "yes"}, "set": {"model": "hac"}}], "true or false"),
        ([{"set": {"speed": "max"}}], "'speed' is not a parameter"),
        ([{"set": {"model": ""}}], "must be a non-empty string"),
        ([{"set": {"sources": "most"}}], "sources must be one of auto, all, pod5, pod5_skip"),
    ],
)
def test_a_rule_that_cannot_be_used_says_what_to_change(raw: object, words: str) -> None:
    with pytest.raises(RuleError, match=words):
        parse_rules(raw)


def test_engines_are_not_told_what_steers_reactor() -> None:
    assert for_engines({"model": "hac", "sources": "all"}) == {"model": "hac"}
