"""The command screen in a real browser: Debian's headless Chromium driven by Playwright,
against the embedded platform served by uvicorn on a loopback port.

Log in, see a number change without reload when an event arrives, switch to English,
drill down from the province to a city. A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from fangkong_cli.platform import create_platform
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import TestPositive

from tests.browser import ARTIFACTS, CHROMIUM, needs_chromium, serving
from tests.multiprocess import free_port

pytestmark = needs_chromium


def positive(n: int) -> Envelope:
    key = uuid.uuid4().hex * 2
    return Envelope.wrap(TestPositive(person_key=key, barcode=f"SCREEN-{n}", lab_id="lab-1", region_code="440305",
                                      origin_region_code="440305", resulted_at=datetime.now(UTC)),
                         source="testing", key=key)


async def test_the_screen_logs_in_updates_live_switches_language_and_drills_down(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    port = free_port()
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://screen-{uuid.uuid4().hex}"})
    async with serving(platform, port), async_playwright() as playwright:
        bus = platform.apps["dashboard"].state.bus
        await bus.publish([positive(1)])
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 900}, locale="zh-CN")
            failed_requests: list[str] = []
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            await page.goto(f"http://127.0.0.1:{port}/")
            await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            await page.get_by_test_id("dev-region").fill("440000")
            await page.get_by_test_id("dev-login").click()
            positives = page.get_by_test_id("positives")
            await expect(positives).to_have_text("1", timeout=15_000)
            await expect(page.get_by_test_id("kpis")).to_contain_text("应救尽救")

            await bus.publish([positive(2), positive(3)])  # no reload: the stream brings it
            await expect(positives).to_have_text("3", timeout=15_000)
            await expect(page.get_by_test_id("unclassified")).to_have_text("3")

            await page.get_by_test_id("lang-toggle").click()
            await expect(page.locator("html")).to_have_attribute("lang", "en")
            await expect(page.get_by_test_id("kpis")).not_to_contain_text("应救尽救")

            city = page.locator('[data-testid=regions] tr[data-region="440300"]')
            await expect(city).to_be_visible()
            await city.click()
            await expect(page.get_by_test_id("crumbs")).to_contain_text("440300")
            await expect(page.locator('[data-testid=regions] tr[data-region="440305"]')).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "command-screen.png"), full_page=True)
            # Everything the page loads is served by the platform itself: nothing from the internet.
            assert not [url for url in failed_requests if not url.startswith(f"http://127.0.0.1:{port}/")]
        finally:
            await browser.close()
