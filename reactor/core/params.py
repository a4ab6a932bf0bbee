"""A run's basecall parameters, chosen by the lab's rules from what the run says it is.

A run says what it is in its own files: the sample rate, flow cell product and kit in
each POD5's run info, the barcoding kit and aliases in its `sample_sheet_*.csv`, its
group and sample in its path (`RunFacts`). A lab writes its rules once, in
`reactor.toml` (docs/host.md, "Basecall parameters"):

    [[rules]]
    when = { sample_rate = 5000, flow_cell_product = "FLO-PRO114*" }
    set = { model = "hac" }

    [[rules]]
    when = { path = "clinical/*" }
    set = { model = "sup" }

Every rule whose `when` holds applies, in order, a later one's keys over an earlier
one's; a rule with no `when` applies to every run. A `when` key the run cannot tell
(no POD5 read yet, no sample sheet) does not hold. Pure: facts and rules in,
parameters out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# What a rule may test, and what it may set.
WHEN_KEYS = {
    "sample_rate": "the POD5s' sample rate in Hz (4000, 5000)",
    "flow_cell_product": "the flow cell product code (FLO-PRO114M; a pattern)",
    "sequencing_kit": "the sequencing kit (SQK-LSK114; a pattern)",
    "barcoding_kit": "the sample sheet's kit (SQK-NBD114-24; a pattern)",
    "barcoded": "whether the sample sheet names barcodes (true/false)",
    "path": "the run's path below its root, {group}/{sample}/{run} (a pattern)",
}
SET_KEYS = {
    "model": "the basecalling model (fast, hac, sup, or a model name)",
    "kit_name": "the kit for barcode classification (dorado --kit-name)",
    "sources": "which POD5 folders are work: auto, all, pod5 or pod5_skip (not sent to engines)",
    "min_qscore": "the mean quality a read needs to pass (a number; not sent to engines)",
}
# Parameters that steer reactor itself, not the engines.
RUN_ONLY = frozenset({"sources", "min_qscore"})
# dorado's pass thresholds by model speed, the ones commonly cited (FIELD: dorado #445);
# a model that names none of them gets DEFAULT_MIN_QSCORE.
MIN_QSCORE_BY_MODEL = {"fast": 8.0, "hac": 9.0, "sup": 10.0}
DEFAULT_MIN_QSCORE = 9.0
SOURCES = ("auto", "all", "pod5", "pod5_skip")
Params = dict[str, str]


class RuleError(ValueError):
    """A rule that cannot be used, with what to change."""


@dataclass(frozen=True)
class RunFacts:
    """What a run says it is; None where it cannot tell (yet)."""

    path: str
    sample_rate: int | None = None
    flow_cell_product: str | None = None
    sequencing_kit: str | None = None
    barcoding_kit: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)  # barcode -> alias

    @property
    def barcoded(self) -> bool | None:
        return bool(self.aliases) if self.barcoding_kit is not None or self.aliases else None


@dataclass(frozen=True)
class Rule:
    when: Mapping[str, Any]
    set: Params
    number: int  # its place in the file, from 1, for the log


@dataclass(frozen=True)
class Choice:
    """A run's parameters, and the rules that chose them (by number)."""

    params: Params
    rules: tuple[int, ...]


def parse_rules(raw: object) -> tuple[Rule, ...]:
    """The `rules` of the settings file: a list of tables with `when` and `set`."""
    if not isinstance(raw, list):
        msg = "rules must be a list of tables ([[rules]] in the file), each with when and set"
        raise RuleError(msg)
    rules = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            msg = f"rule {number} is not a table: write [[rules]] with when = {{…}} and set = {{…}}"
            raise RuleError(msg)
        unknown = sorted(set(item) - {"when", "set"})
        if unknown:
            msg = f"rule {number} has {unknown[0]!r}: a rule has only when and set"
            raise RuleError(msg)
        when = item.get("when", {})
        chosen = item.get("set")
        if not isinstance(when, dict):
            msg = f"rule {number}: when must be a table such as {{ sample_rate = 5000 }}"
            raise RuleError(msg)
        if not isinstance(chosen, dict) or not chosen:
            msg = f'rule {number}: set must be a table such as {{ model = "hac" }}'
            raise RuleError(msg)
        for key, value in when.items():
            _check_when(number, key, value)
        for key, value in chosen.items():
            if key not in SET_KEYS:
                msg = f"rule {number}: set {key!r} is not a parameter; use {', '.join(SET_KEYS)}"
                raise RuleError(msg)
            if not isinstance(value, str) or not value or not value.isprintable():
                msg = f"rule {number}: set {key} must be a non-empty string"
                raise RuleError(msg)
            if key == "min_qscore" and _qscore(value) is None:
                msg = f'rule {number}: set min_qscore must be a number such as "10", 0 to 60'
                raise RuleError(msg)
            if key == "sources" and value not in SOURCES:
                msg = f"rule {number}: set sources must be one of {', '.join(SOURCES)}"
                raise RuleError(msg)
        rules.append(Rule(dict(when), dict(chosen), number))
    return tuple(rules)


def _check_when(number: int, key: str, value: object) -> None:
    if key not in WHEN_KEYS:
        msg = f"rule {number}: when {key!r} is not something a run says; use {', '.join(WHEN_KEYS)}"
        raise RuleError(msg)
    if key == "sample_rate":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            msg = f"rule {number}: when sample_rate must be a whole number of Hz, such as 5000"
            raise RuleError(msg)
    elif key == "barcoded":
        if not isinstance(value, bool):
            msg = f"rule {number}: when barcoded must be true or false"
            raise RuleError(msg)
    elif not isinstance(value, str) or not value:
        msg = f'rule {number}: when {key} must be a text or a pattern such as "FLO-PRO114*"'
        raise RuleError(msg)


def _holds(key: str, wanted: object, facts: RunFacts) -> bool:
    if key == "barcoded":
        return facts.barcoded is wanted
    value = getattr(facts, key)
    if value is None:
        return False  # the run cannot tell (yet): the rule does not hold
    if key == "sample_rate":
        return bool(value == wanted)
    if key == "path":
        return fnmatch.fnmatchcase(str(value), str(wanted))
    # product codes and kits: as MinKNOW writes them, in either case
    return fnmatch.fnmatchcase(str(value).upper(), str(wanted).upper())


def choose(rules: Sequence[Rule], facts: RunFacts) -> Choice:
    """Every rule that holds, in order, later keys over earlier ones."""
    params: Params = {}
    used = []
    for rule in rules:
        if all(_holds(key, wanted, facts) for key, wanted in rule.when.items()):
            params.update(rule.set)
            used.append(rule.number)
    return Choice(params, tuple(used))


def seed_can_take(params: Params, seed_params: Params | None) -> bool:
    """Whether an engine speaking only the seed's protocol (it cannot be told any
    parameters) may basecall a run chosen `params`: only when they are what the lab
    says its seed engines run (`seed_params`); None: seed engines take no run."""
    return seed_params is not None and params == seed_params


def _qscore(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 60 else None  # NaN fails both


def min_qscore(params: Params, setting: float | None = None) -> float:
    """The run's pass threshold: its parameters' `min_qscore`, else the `min_qscore`
    setting, else by its model's speed (`fast` 8, `hac` 9, `sup` 10, as a word of a
    simplex model's name: `dna_r10.4.1_e8.2_400bps_sup@v5.0.0`), else 9."""
    chosen = _qscore(params.get("min_qscore", ""))
    if chosen is not None:
        return chosen
    if setting is not None:
        return setting
    words = params.get("model", "").lower().replace("@", "_").replace("-", "_").split("_")
    for speed, threshold in MIN_QSCORE_BY_MODEL.items():
        if speed in words:
            return threshold
    return DEFAULT_MIN_QSCORE


def for_engines(params: Params) -> Params:
    """What engines are told: the parameters without reactor's own (`sources`)."""
    return {key: value for key, value in params.items() if key not in RUN_ONLY}
