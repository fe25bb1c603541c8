"""The portal in a real browser (Debian's chromium driven by Playwright): what an officer does with it.

The three services run as processes on the seed reports plus a few figures this test posts for Xã Bến Lức
(Tây Ninh, 2025 edition) and its legacy communes. Every step is a user's: paste the key, see the nation,
search "ben luc" without diacritics, open the commune, read the posted figure as Vietnamese writes it, see
its chart, switch to English, export, and look at it on a 360-px phone. Nothing may reach beyond the query
service and nothing may be written to the console as an error. Screenshots of every step go to
.run/portal/ (the last one taken is where a failure happened).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.cli import DEMO_EVENTS
from shared.periods import today_in_vietnam
from tests.fixtures.infra import RUN_DIR, Stack
from tests.fixtures.processes import ServiceProcesses, start_services
from tests.fixtures.waiting import until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
SHOTS = RUN_DIR / "portal"
BEN_LUC = "27991"  # Xã Bến Lức, Tây Ninh (2025)
ISSUED, ELIGIBLE = 45_678, 50_000  # 91.3560 %: "91,4 %" in Vietnamese, "91.4%" in English


def _chromium() -> str:
    """Debian's chromium, installed with apt when missing; skip (saying why) only where that cannot be done."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs apt-get as root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                pytest.skip(f"`{' '.join(command)}` failed, so the portal cannot be tested in a browser:\n"
                            f"{done.stderr[-2000:]}")
    return CHROMIUM


def _month(d: date, back: int) -> str:
    index = d.year * 12 + d.month - 1 - back
    return f"{index // 12}-{index % 12 + 1:02d}"


@pytest.fixture
def services(stack: Stack) -> Iterator[ServiceProcesses]:
    with start_services(stack) as procs:
        yield procs


def _post(procs: ServiceProcesses, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{procs.ingest}/v1/events", json={"events": events},
                          headers={"Authorization": f"Bearer {procs.key}"}, timeout=30)
    assert response.status_code == 202, response.text


def _load(procs: ServiceProcesses, shown: str, before: str) -> None:
    """The seed reports, and Bến Lức's chip ID cards for the month the portal opens on and the one before."""
    _post(procs, json.loads(DEMO_EVENTS.read_text())["events"])
    events = [
        {"unit": BEN_LUC, "indicator": "cccd_issued", "period": shown, "value": ISSUED},
        {"unit": BEN_LUC, "indicator": "cccd_coverage", "period": shown, "numerator": ISSUED, "denominator": ELIGIBLE},
        {"unit": BEN_LUC, "indicator": "cccd_coverage", "period": before, "numerator": 44_000, "denominator": ELIGIBLE},
    ]
    _post(procs, events)
    headers = {"Authorization": f"Bearer {procs.key}"}

    def visible() -> bool:
        r = httpx.get(f"{procs.query}/v1/units/{BEN_LUC}/values", headers=headers, timeout=5,
                      params={"edition": "2025", "period": shown, "indicator": "cccd_issued"})
        return r.status_code == 200 and r.json()["values"][0]["value"] == ISSUED

    until(visible, what="Bến Lức's posted figure served by the query service")


class Browser:
    """One page, with what the test checks at the end: console errors, requests, screenshots."""

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.step = 0
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"{self.step:02d}-{name}.png"), full_page=True)


@pytest.fixture
def browser(services: ServiceProcesses) -> Iterator[Browser]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (dev dependency)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="vi-VN")
        page = context.new_page()
        page.set_default_timeout(20_000)
        seen = Browser(page, services.query)
        try:
            yield seen
        finally:
            context.close()
            chromium.close()


def test_an_officer_finds_a_commune_reads_its_figure_and_exports_it(
    services: ServiceProcesses, browser: Browser
) -> None:
    today = today_in_vietnam()
    shown, before = _month(today, 1), _month(today, 2)  # the portal opens on the last month that has ended
    _load(services, shown, before)
    page = browser.page
    try:
        page.goto(f"{services.query}/")
        page.keyboard.press("Tab")  # the keyboard's first stop is the skip link, visibly focused
        assert page.evaluate("document.activeElement.className") == "skip"
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
        page.get_by_label("Khóa API (chỉ giữ trong phiên trình duyệt này)").fill(services.key)
        page.get_by_role("button", name="Dùng khóa").click()
        page.locator("h1", has_text="Việt Nam").wait_for()
        page.locator("#ranking .bars, #ranking .main-svg").first.wait_for()
        browser.shot("nation")

        page.get_by_label("Tìm đơn vị (gõ không dấu được)").fill("ben luc")
        page.locator("#results a", has_text="Xã Bến Lức").first.click()
        page.locator("h1", has_text="Xã Bến Lức").wait_for()
        page.locator(".card .big", has_text="45.678").wait_for()  # cccd_issued, as Vietnamese writes it
        coverage = page.locator(".card.chosen .big")
        assert coverage.inner_text().startswith("91,4 %")
        page.locator("#series .scatterlayer .point").first.wait_for()
        assert page.locator("#series .scatterlayer .point").count() >= 2
        browser.shot("ben-luc")

        page.get_by_role("button", name="English").click()
        page.get_by_role("button", name="Tiếng Việt").wait_for()
        assert coverage.inner_text().startswith("91.4%")
        assert "45,678" in page.locator("#cards").inner_text()
        browser.shot("english")

        with page.expect_download() as downloading:
            page.get_by_role("button", name="Download CSV").click()
        download = downloading.value
        assert download.suggested_filename == f"d06-2025-{BEN_LUC}-{shown}.csv"
        rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
        assert {"section": "indicators", "unit": BEN_LUC, "indicator": "cccd_issued", "value": str(ISSUED)}.items() \
            <= next(r for r in rows if r["indicator"] == "cccd_issued").items()

        page.set_viewport_size({"width": 360, "height": 740})
        page.wait_for_timeout(300)  # the charts follow the new width
        browser.shot("phone")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the page scrolls sideways at 360 px: {width} px wide"
    except BaseException:
        browser.shot("failed")
        raise

    assert browser.errors == [], f"console errors: {browser.errors}"
    inside = (f"{services.query}/", "blob:", "data:")
    outside = [u for u in browser.requests if not u.startswith(inside)]
    assert outside == [], f"requests that left the query service: {outside}"
