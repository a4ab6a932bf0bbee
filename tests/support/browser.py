"""Debian's Chromium driven by Playwright (from PyPI), for the dashboard's browser tests.

Playwright's own browser download cannot be used here, so the tests launch the system's
`/usr/bin/chromium` (Debian's package `chromium`, which .ci/run installs). Without it the
tests skip locally and fail under CI=true (tests/support/tools.py). `Console` collects
what the page says on its console and every uncaught error, so a test can require none.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.support.tools import require_tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> Path:
    """The system's Chromium; skips (fails under CI=true) when it is not installed."""
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None and (which := shutil.which("chromium")) is not None:
        found = Path(which)
    require_tool(found is not None, "chromium is not installed (apt-get install chromium)")
    assert found is not None
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed afterwards."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """Console messages of level warning or error, and uncaught page errors."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("console", self._message)
        page.on("pageerror", self._error)

    def _message(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"{message.type}: {message.text}")

    def _error(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error}")
