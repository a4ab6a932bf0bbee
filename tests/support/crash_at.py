"""A journal checkpoint that crashes the service at a named step, as kill -9 would."""

from __future__ import annotations


class SimulatedCrash(BaseException):
    """Stands for kill -9: not an Exception, so no handler in reactor catches it."""


class CrashAt:
    """A journal checkpoint that crashes the n-th time `step` is reached."""

    def __init__(self, step: str | None, nth: int = 1) -> None:
        self.step = step
        self.nth = nth
        self.seen: list[str] = []

    def __call__(self, step: str) -> None:
        self.seen.append(step)
        if step == self.step and self.seen.count(step) == self.nth:
            raise SimulatedCrash(step)
