"""The observer's events, held back while the service starts and delivered in order.

The observer starts before recovery and the start-up scan (`reactor.serve.app`), so no
file written during start-up is missed; its events wait here until the service is
ready for them, and again from the moment shutdown begins.
"""

from __future__ import annotations

from collections.abc import Callable

from reactor.core.events import FsEvent


class HeldEvents:
    """The observer's way into the service: held while recovery and the scan run (and
    again once shutdown began), delivered in order when released."""

    def __init__(self, deliver: Callable[[FsEvent], None], on_lost: Callable[[str], None]):
        self._deliver = deliver
        self._on_lost = on_lost
        self._held: list[FsEvent] | None = []  # None: delivering
        self._lost: list[str] = []

    def on_event(self, event: FsEvent) -> None:
        if self._held is None:
            self._deliver(event)
        else:
            self._held.append(event)

    def on_lost(self, reason: str) -> None:
        if self._held is None:
            self._on_lost(reason)
        elif reason not in self._lost:
            self._lost.append(reason)

    def release(self) -> int:
        """Deliver what was held (a reconcile for events lost meanwhile); from now on,
        deliver at once. Returns how many events were held."""
        held, self._held = self._held or [], None
        lost, self._lost = self._lost, []
        for event in held:
            self._deliver(event)
        for reason in lost:
            self._on_lost(reason)
        return len(held)

    def hold(self) -> None:
        """Stop delivering (shutdown): later events are dropped with the process."""
        self._held = []
