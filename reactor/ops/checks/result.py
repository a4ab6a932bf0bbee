"""What one check of `reactor check` found: `CheckResult`, with its `Status`.

Each check is a function returning a `CheckResult` (name, status, message, fix); none
prints, and none raises for what it is checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # serve will run, but something will go wrong or is risky
    FAIL = "fail"  # serve will not start, or will not work
    SKIP = "skip"  # does not apply here (says why)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    message: str
    fix: str = ""

    @property
    def problem(self) -> bool:
        return self.status in (Status.WARN, Status.FAIL)


def strerror(err: OSError) -> str:
    """The system's words for an OSError, or its text when it has none."""
    return err.strerror or str(err)
