"""What host mode's run verbs answer, for the API to know without importing the host
(`reactor.serve.host`, imported only when the service runs in host mode)."""

from __future__ import annotations

DEFAULT_PRIORITY = 10.0  # the weight `reactor run prioritise` gives without --weight


class Busy(Exception):
    """A re-basecall cannot start now: batches of the run are out with its old
    parameters (it waits for them), or the run is complete."""

    def __init__(self, live: int, detail: str = "") -> None:
        detail = detail or (
            f"{live} batches of the run are out with its old parameters: ask again once "
            "they are back (reactor status shows them)"
        )
        super().__init__(detail)
        self.live = live
        self.detail = detail


class UnknownRun(KeyError):
    """No run by that name (its flow cell and protocol run, or its folder)."""
