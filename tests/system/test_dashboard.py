"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a
real `reactor serve`: a simulated host of three flow cells with engines running the
stand-in basecaller and one poison `.pod5`, and a single run with a token.

The page loads with no console error, its numbers and charts follow the files as they
are basecalled, the quarantined poison file shows up and its Requeue button puts it back
(it fails again: poison), a run reaches "complete" with on_complete's result, and the
engines are listed. With a token, the page asks for it, says so when it is refused, and
never puts it in a URL. Every wait is a bounded condition (Playwright's `expect`), never
a sleep. Screenshots go to the test's temporary folder (`make screenshots` refreshes the
committed ones in docs/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import Console, chromium
from tests.support.live_host import LiveHost
from tests.support.pod5files import write_pod5
from tests.support.served import ServedRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

TOKEN = "dashboard-token-4f9c2a7e"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 60_000  # the bound of every wait on the page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_the_dashboard_follows_a_live_host(browser: Browser, tmp_path: Path) -> None:
    """Host view, run view and engines view during a live simulated host, to the end."""
    host = LiveHost(tmp_path / "host", on_complete="/bin/true")
    console = Console()
    page = browser.new_page(viewport=VIEWPORT)
    console.watch(page)
    try:
        host.start()
        page.goto(f"{host.url}/")
        expect(page.get_by_test_id("run-card").first).to_be_visible(timeout=WAIT_MS)
        run = host.poison()
        files_done = page.get_by_test_id("files-done").locator(".value")
        expect(files_done).not_to_have_text("0", timeout=WAIT_MS)
        before = int(files_done.inner_text().replace(",", ""))
        # the numbers move as files are basecalled, pushed by the stream (no reload)
        page.wait_for_function(
            "(before) => Number(document.querySelector('[data-testid=files-done] .value')"
            ".textContent.replace(/,/g, '')) > before",
            arg=before,
            timeout=WAIT_MS,
        )
        expect(page.get_by_test_id("run-card")).to_have_count(3, timeout=WAIT_MS)
        card = page.locator(f"[data-run='{run}']")
        expect(card.locator(".spark")).to_have_attribute(
            "data-points", re.compile(r"^[1-9]"), timeout=WAIT_MS
        )
        page.screenshot(path=tmp_path / "host.png")

        card.click()
        expect(page).to_have_url(re.compile(f"#/run/{run}$"))
        assert host.poison_path is not None
        poisoned = page.get_by_test_id("quarantined-file").filter(has_text=host.poison_path.name)
        expect(poisoned).to_have_count(1, timeout=WAIT_MS)
        for chart in ("yield", "length", "quality"):
            expect(page.get_by_test_id(f"chart-{chart}")).to_have_attribute(
                "data-points", re.compile(r"^[1-9]"), timeout=WAIT_MS
            )
        expect(page.get_by_test_id("run-yield").locator(".value")).not_to_have_text("0")
        # the run reaches its end: complete, and on_complete's result shown
        expect(page.get_by_test_id("phase")).to_have_text("complete", timeout=WAIT_MS)
        expect(page.get_by_test_id("on-complete")).to_contain_text("exit code 0", timeout=WAIT_MS)
        page.screenshot(path=tmp_path / "run.png", full_page=True)

        requeue = page.get_by_role("button", name="Requeue")
        folder = requeue.get_attribute("data-folder")
        assert folder is not None and folder.startswith("FAILED_")
        requeue.click()
        expect(page.get_by_test_id("requeue-message")).to_have_text(
            f"1 file back in the queue ({folder})", timeout=WAIT_MS
        )
        # back in the queue and handed out again, though its run is complete: engines
        # fail it again (poison) and it is quarantined anew, in a folder of a new job
        again = page.get_by_role("button", name="Requeue")
        expect(again).not_to_have_attribute("data-folder", folder, timeout=WAIT_MS)
        assert _quarantine_folders(host, run) not in ([], [folder])
        page.get_by_role("link", name="Engines").click()
        expect(page.locator("[data-testid=engines] tr[data-engine]")).to_have_count(
            host.engines, timeout=WAIT_MS
        )
        page.screenshot(path=tmp_path / "engines.png")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.goto(f"{host.url}/#/")
        expect(page.get_by_test_id("run-card")).to_have_count(3, timeout=WAIT_MS)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        assert console.problems == []
    finally:
        page.close()
        host.stop()


def _quarantine_folders(host: LiveHost, run: str) -> list[str]:
    files = host.status(run)["quarantined"]["files"]
    return [entry["folder"] for entry in files if entry["folder"]]


def test_the_page_asks_for_the_token_and_refuses_a_wrong_one(
    browser: Browser, tmp_path: Path
) -> None:
    """Prompted once, kept in the tab, sent as a header and never in a URL or the log;
    a wrong token is refused and the page says so and asks again."""
    served = ServedRun(tmp_path)
    for i in range(3):
        write_pod5(served.input_dir / f"PAK00000_pass_abc_def_{i}.pod5", n_reads=2, seed=i)
    console = Console()
    page = browser.new_page(viewport=VIEWPORT)
    console.watch(page)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    try:
        served.start_server("--token", TOKEN)
        page.goto(f"{served.url}/")
        prompt = page.locator("#token-box")
        expect(prompt).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#token-why")).to_contain_text("needs its access token")
        page.fill("#token-input", "not-the-token")
        page.click("#token-form button")
        expect(page.locator("#token-why")).to_contain_text("refused", timeout=WAIT_MS)
        expect(prompt).to_be_visible()
        expect(page.locator("#view")).to_be_hidden()
        page.fill("#token-input", TOKEN)
        page.click("#token-form button")
        expect(prompt).to_be_hidden(timeout=WAIT_MS)
        expect(page.get_by_test_id("files-done")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_test_id("backlog").locator(".value")).to_have_text(
            "3files", timeout=WAIT_MS
        )
        assert page.evaluate("sessionStorage.getItem('pod5-reactor-token')") == TOKEN
        page.reload()  # the same tab: not asked again
        expect(page.get_by_test_id("files-done")).to_be_visible(timeout=WAIT_MS)
        expect(prompt).to_be_hidden()
    finally:
        page.close()
        served.stop_server()
    assert urls and not [url for url in urls if TOKEN in url]
    assert TOKEN not in "".join(path.read_text() for path in served.logs.iterdir())
    # the refused requests are the browser's own console lines; nothing else was said
    assert [p for p in console.problems if "401" not in p] == []


def test_times_are_the_hosts_whatever_the_browsers_zone(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sequencer in Tokyo watched from New York: the page's clock is Tokyo's, and says so."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the served process's zone
    served = ServedRun(tmp_path)
    context = browser.new_context(viewport=VIEWPORT, timezone_id="America/New_York")
    page = context.new_page()
    console = Console()
    console.watch(page)
    try:
        served.start_server()
        page.goto(f"{served.url}/")
        conn = page.locator("#conn")
        expect(conn).to_have_attribute("data-zone", "Asia/Tokyo", timeout=WAIT_MS)
        expect(page.locator("#zone-note")).to_have_text("the host's time zone (Asia/Tokyo)")
        shown = re.search(r"(\d{1,2}):(\d{2}):\d{2}\s*([AP]M)?", conn.inner_text())
        assert shown is not None, conn.inner_text()
        hour, minute = (
            int(shown.group(1)) % 12 if shown.group(3) else int(shown.group(1)),
            int(shown.group(2)),
        )
        if shown.group(3) == "PM":
            hour += 12
        tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
        apart = abs((tokyo.hour * 60 + tokyo.minute) - (hour * 60 + minute)) % (24 * 60)
        assert min(apart, 24 * 60 - apart) <= 2, (conn.inner_text(), tokyo)
    finally:
        context.close()
        served.stop_server()
    assert console.problems == []
