"""The console in a real browser (headless Chromium via Playwright) against a real gunicorn.

Needs Debian's `chromium` package at /usr/bin/chromium (Playwright's own browser downloads are never used).
Without it the test is skipped on a developer machine and fails on CI (env CI set).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.admin import BOT_TOKEN, PASSWORD, create_order, pay, staff
from tests.support.live import ROOT, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture
def app(make_app):
    return make_app(TELEGRAM_BOT_TOKEN=BOT_TOKEN)


@pytest.fixture
def live(app, base_env, tmp_path):
    server = LiveServer({**base_env, "TELEGRAM_BOT_TOKEN": BOT_TOKEN}, workers=1, log_path=tmp_path / "gunicorn.log")
    # Plain http on loopback: the session cookie must not be marked Secure here.
    server.env["SERVER_URL"] = server.url
    with server:
        yield server


@pytest.fixture
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_support_finds_an_order_and_resends_its_notification(app, client, live, browser):
    pay(client, create_order(client, "order-browser-1", telegramId=4242, credit=100,
                             description="100 NDN top-up"))
    staff(app, "sam@example.test", "support")
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(15000)
    page.goto(f"{live.url}/console/")
    page.fill("input[name=email]", "sam@example.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_selector("text=Needs review")

    page.fill("input[name=q]", "order-browser-1")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"/console/orders/order-browser-1$"))
    timeline = page.inner_text("ol.timeline")
    for text in ("Order created", "sbp CONFIRMED", "Fulfilment: credit", "Notification: notify.paid"):
        assert text in timeline
    assert page.locator("li.entry.notification").count() == 1

    page.click("button:has-text('Resend notification')")
    page.wait_for_selector(".flash.ok")
    assert "Queued again as message" in page.inner_text(".flash.ok")
    assert page.locator("li.entry.notification").count() == 2
    page.screenshot(path=str(ARTIFACTS / "console-order.png"), full_page=True)

    phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{live.url}/console/orders/order-browser-1")
    phone.wait_for_selector("ol.timeline")
    # Readable on a phone: nothing wider than the screen, so no sideways scrolling.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(ARTIFACTS / "console-order-phone.png"), full_page=True)
