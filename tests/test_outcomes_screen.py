"""The command screen's 四早 panel in a real browser (Debian's headless Chromium, Playwright): the
intervals from events, the longest wait for a bed and the oldest unclassified positive in red
(glowing past 24 h), Chinese first and English after the switch. A screenshot goes to test-artifacts/."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fangkong_cli.platform import create_platform
from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope

from tests.browser import ARTIFACTS, CHROMIUM, needs_chromium, serving
from tests.multiprocess import free_port

pytestmark = needs_chromium


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def at(payload, moment: datetime) -> Envelope:
    return Envelope.wrap(payload, source="test", key=getattr(payload, "person_key", None) or "k", occurred_at=moment)


def outbreak(now: datetime) -> list[Envelope]:
    """One positive waiting 30 h for a bed, one admitted an hour after their result; nobody classified."""
    waiting, admitted = key("waiting"), key("admitted")
    return [
        at(ev.TestPositive(person_key=waiting, barcode="OUT-1", lab_id="lab", region_code="440305",
                           resulted_at=now - timedelta(hours=30)), now - timedelta(hours=30)),
        at(ev.TestPositive(person_key=admitted, barcode="OUT-2", lab_id="lab", region_code="440305",
                           resulted_at=now - timedelta(hours=3)), now - timedelta(hours=3)),
        at(ev.QuarantineAdmitted(person_key=admitted, region_code="440307", origin_region_code="440305",
                                 site_id="sz-hospital-3", site_kind="hospital", admitted_at=now - timedelta(hours=2)),
           now - timedelta(hours=2)),
    ]


async def test_the_outcomes_panel_shows_the_waits_in_red(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    port = free_port()
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://outcomes-screen-{uuid.uuid4().hex}"})
    async with serving(platform, port), async_playwright() as playwright:
        await platform.apps["dashboard"].state.bus.publish(outbreak(datetime.now(UTC)))
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 1400}, locale="zh-CN")
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.get_by_test_id("dev-region").fill("440300")
            await page.get_by_test_id("dev-login").click()
            panel = page.get_by_test_id("outcomes-panel")
            await expect(panel).to_contain_text("四早")
            bed = page.get_by_test_id("bed-wait-card")
            # The live feed brings the events: 30 h without a bed, red and past the 24 h line.
            await expect(page.get_by_test_id("bed-wait")).to_have_text("1天6小时", timeout=15_000)
            await expect(bed).to_have_class("alert red over")
            await expect(page.get_by_test_id("bed-waiting")).to_have_text("等待 1 人")
            await expect(page.get_by_test_id("oldest-unclassified")).to_have_text("1天6小时")
            await expect(page.get_by_test_id("unclassified-count")).to_have_text("未分类 2 人")
            await expect(page.get_by_test_id("unclassified-age-card")).to_have_attribute("data-over", "true")
            row = page.locator('[data-testid=outcomes] tr[data-interval="result_to_bed"] td')
            await expect(row.nth(0)).to_have_text("阳性结果 → 入院床位")
            await expect(row.nth(1)).to_have_text("1")
            await expect(row.nth(2)).to_have_text("1小时")
            ARTIFACTS.mkdir(exist_ok=True)
            await panel.screenshot(path=str(ARTIFACTS / "outcomes-panel.png"))

            await page.get_by_test_id("lang-toggle").click()
            await expect(panel).to_contain_text("Longest wait for a bed")
            await expect(page.get_by_test_id("bed-wait")).to_have_text("1d6h")
            await expect(row.nth(0)).to_have_text("Positive result → hospital bed")
        finally:
            await browser.close()
