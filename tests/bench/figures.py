"""One figure of the benchmark: a value, its floor or ceiling from the same run, the
ratio between them, and the target it is held to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    reference: float | None = None  # the floor or ceiling, same unit
    reference_kind: str = ""  # "floor", "ceiling", "at 10,000", ...
    compare: str = "ratio"  # "ratio" (value / reference) or "difference" (value - reference)
    target: str = ""
    met: bool | None = None  # None: no target
    # Why the target cannot be met by any server on this machine, shown by a ceiling of
    # the same run: reported as out of reach, and `--strict` does not fail on it.
    out_of_reach: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.reference is None:
            return None
        if self.compare == "difference":
            return self.value - self.reference
        return self.value / self.reference if self.reference else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": _round(self.ratio)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ratio_text(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return "-"
    if figure.compare == "difference":
        return f"{ratio:+.1f} {figure.unit}"
    return f"{ratio:.2f}x"


def missed(figures: list[Figure]) -> list[Figure]:
    """The targets not met that the same run shows could be."""
    return [f for f in figures if f.met is False and not f.out_of_reach]


def rows(figures: list[Figure]) -> list[list[str]]:
    header = ["figure", "value", "floor/ceiling", "ratio", "target", "met?"]
    body = []
    for f in figures:
        reference = "-"
        if f.reference is not None:
            reference = f"{_number(f.reference, f.unit)} ({f.reference_kind})"
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        if f.met is False and f.out_of_reach:
            met = f"out of reach: {f.out_of_reach}"
        body.append(
            [f.name, _number(f.value, f.unit), reference, _ratio_text(f), f.target or "-", met]
        )
    return [header, *body]


def table(figures: list[Figure]) -> str:
    """A plain-text table, one figure a line."""
    lines = rows(figures)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = []
    for k, row in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if k == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in out)


def markdown(figures: list[Figure]) -> str:
    """The same table in Markdown, for docs/operations.md."""
    lines = rows(figures)
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in lines[1:]]
    return "\n".join(out)
