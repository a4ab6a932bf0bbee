"""`make screenshots`: the dashboard's screenshots in docs/, from a real simulated host.

Starts a simulated host (tests/support/live_host.py: `reactor serve --watch-root`, the
host simulator with four flow cells, engines running the stand-in basecaller, one poison
file), opens the dashboard in Debian's Chromium and takes the host view mid-run (light
and dark), the run of the poison file once it is quarantined, and the engines, at
1280x800. Every wait is bounded; every process it started is stopped.

    python -m tests.system.screenshots --out docs/screenshots
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.support.browser import CHROMIUM_ARGS
from tests.support.live_host import LiveHost

WAIT_MS = 90_000
VIEWPORT = {"width": 1280, "height": 800}


def shoot(host: LiveHost, page: Page, out: Path, run: str) -> None:
    page.goto(f"{host.url}/")
    expect(page.get_by_test_id("run-card")).to_have_count(host.flow_cells, timeout=WAIT_MS)
    # mid-run: every run has started and some files are done
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=run-card] .spark')]"
        ".every((s) => Number(s.dataset.points || 0) >= 3)",
        timeout=WAIT_MS,
    )
    page.screenshot(path=out / "host.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=out / "host-dark.png")
    page.emulate_media(color_scheme="light")
    page.goto(f"{host.url}/#/run/{run}")
    expect(page.get_by_test_id("quarantined-file")).to_have_count(1, timeout=WAIT_MS)
    expect(page.get_by_test_id("chart-yield")).to_have_attribute(
        "data-points", re.compile(r"^([4-9]|\d\d+)$"), timeout=WAIT_MS
    )
    page.screenshot(path=out / "run.png", full_page=True)
    page.goto(f"{host.url}/#/engines")
    expect(page.locator("[data-testid=engines] tr[data-engine]")).to_have_count(
        host.engines, timeout=WAIT_MS
    )
    page.screenshot(path=out / "engines.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reactor-screenshots-") as folder:
        host = LiveHost(
            Path(folder), flow_cells=4, files=24, reads_per_file=60, engines=3,
            interval_s=1.5, on_complete="/bin/true", preset="fake-dorado-fastq",
        )  # fmt: skip
        try:
            host.start()
            run = host.poison()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                try:
                    shoot(host, browser.new_page(viewport=VIEWPORT), args.out, run)
                finally:
                    browser.close()
        finally:
            host.stop()
    print(
        f"screenshots in {args.out}: " + ", ".join(sorted(p.name for p in args.out.glob("*.png")))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
