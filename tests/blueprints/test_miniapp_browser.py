"""The Mini App page in a real browser (headless Chromium via Playwright) against a real gunicorn.

Telegram's WebApp script is replaced by a stub (Playwright intercepts its URL) that hands the page
init data signed by the test with the test bot's token, a dark theme, and recorders for openLink and
openInvoice. Like the console's browser test, it needs Debian's /usr/bin/chromium (`make browser-deps`).
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from sqlalchemy import update

from services.db import transaction
from services.models import Purchase
from tests.blueprints.test_console_browser import ARTIFACTS, browser, chromium_path  # noqa: F401 (fixtures)
from tests.conftest import AUTH
from tests.fakes.telegram import FakeTelegram
from tests.support.live import LiveServer
from tests.support.miniapp import BOT_TOKEN, buyer_init_data, write_catalog

BUYER = 4242
WEB_APP_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
THEME = {"bg_color": "#17212b", "text_color": "#f5f5f5", "hint_color": "#708499", "link_color": "#6ab3f3",
         "button_color": "#5288c1", "button_text_color": "#ffffff", "secondary_bg_color": "#232e3c",
         "section_bg_color": "#17212b", "destructive_text_color": "#ec3942"}
LINK = "https://panel.example.test/sub/4242-vpn"


def web_app_stub(init_data: str) -> str:
    """Telegram.WebApp as far as the page uses it; what the page asks Telegram to do is kept in __calls."""
    return f"""
    window.__calls = [];
    (function () {{
      var handlers = {{}};
      window.Telegram = {{WebApp: {{
        initData: {json.dumps(init_data)}, initDataUnsafe: {{}}, colorScheme: "dark",
        themeParams: {json.dumps(THEME)},
        ready: function () {{ window.__calls.push(["ready"]); }},
        expand: function () {{ window.__calls.push(["expand"]); }},
        onEvent: function (name, callback) {{ (handlers[name] = handlers[name] || []).push(callback); }},
        openLink: function (url) {{ window.__calls.push(["openLink", url]); }},
        openInvoice: function (url, callback) {{ window.__calls.push(["openInvoice", url]); }},
      }}}};
    }})();
    """


@pytest.fixture
def bot_api():
    """The Bot API for Stars invoices, answering for the test bot's token."""
    with FakeTelegram(BOT_TOKEN) as server:
        yield server


@pytest.fixture
def env(base_env, tmp_path, bot_api) -> dict[str, str]:
    return {**base_env, "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_URL": bot_api.api_url,
            "CATALOG_FILE": write_catalog(tmp_path)}


@pytest.fixture
def app(make_app, env):
    return make_app(**env)


@pytest.fixture
def live(app, env, tmp_path):
    server = LiveServer(env, workers=1, log_path=tmp_path / "gunicorn.log")
    # The QR image's URL is built from SERVER_URL: the live server itself.
    server.env["SERVER_URL"] = server.url
    with server:
        yield server


def phone(browser, init_data: str):  # noqa: F811 (fixture)
    """A phone-sized page whose Telegram.WebApp is the stub, handing the page `init_data`."""
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.set_default_timeout(15000)
    stub = web_app_stub(init_data)
    page.route(WEB_APP_SCRIPT, lambda route: route.fulfill(status=200, content_type="text/javascript", body=stub))
    return page


def test_buyer_pays_with_sbp_and_sees_the_order_paid(app, live, browser):  # noqa: F811 (fixture)
    ARTIFACTS.mkdir(exist_ok=True)
    page = phone(browser, buyer_init_data(BUYER, int(time.time())))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    console = []
    page.on("console", lambda message: console.append(message.text))

    response = page.goto(f"{live.url}/miniapp/")
    assert "frame-ancestors https://web.telegram.org" in response.headers["content-security-policy"]
    page.wait_for_selector("article[data-product-id='vpn-30'] button[data-provider='sbp']")
    # The catalogue and the buyer's view arrive separately: wait for the second too.
    page.wait_for_selector("#balance:text-is('0 NDN')")
    assert page.inner_text("article[data-product-id='vpn-30']").count("199 ₽") == 1
    assert "SBP · 49.90 ₽" in page.inner_text("article[data-product-id='credits-500']")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(35, 46, 60)"

    with page.expect_response(lambda answer: answer.url.endswith("/miniapp/api/orders")) as answered:
        page.click("article[data-product-id='vpn-30'] button[data-provider='sbp']")
    order = answered.value.json()
    assert answered.value.status == 201 and (order["amount"], order["currency"]) == (199, "RUB")
    page.wait_for_selector(f"li[data-order-id='{order['orderId']}'] .status.pending")
    page.wait_for_function("() => { const qr = document.getElementById('payment-qr');"
                           " return qr.complete && qr.naturalWidth > 0; }")
    page.click("#payment-open")
    assert page.evaluate("window.__calls").count(["openLink", order["qr"]]) == 1
    page.screenshot(path=str(ARTIFACTS / "miniapp-pay.png"), full_page=True)

    paid = requests.post(f"{live.url}/sandbox/sbp/{order['qrcId']}/pay", headers=AUTH, timeout=10)
    assert paid.status_code == 200, paid.text
    with app.app_context(), transaction() as session:
        # What the panel worker does once the panel has made the buyer's link.
        session.execute(update(Purchase).where(Purchase.telegram_id == BUYER).values(subscription_url=LINK))

    # The buyer comes back from the bank app.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_selector(f"li[data-order-id='{order['orderId']}'] .status.paid")
    assert page.inner_text("#balance") == "100 NDN"
    assert page.is_hidden("#payment")
    assert "Payment received" in page.inner_text("#notice")
    assert page.inner_text("#subscription-status").startswith("vpn: active until ")
    assert page.input_value("#subscription-url") == LINK

    page.click("#copy-link")
    page.wait_for_selector("#copy-link:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == LINK
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert not [text for text in console if "Content Security Policy" in text]
    page.screenshot(path=str(ARTIFACTS / "miniapp-paid.png"), full_page=True)


def test_stars_open_telegrams_invoice(live, browser, bot_api):  # noqa: F811 (fixture)
    page = phone(browser, buyer_init_data(BUYER, int(time.time())))
    page.goto(f"{live.url}/miniapp/")
    with page.expect_response(lambda answer: answer.url.endswith("/miniapp/api/orders")) as answered:
        page.click("article[data-product-id='vpn-30'] button[data-provider='telegram']")
    order = answered.value.json()
    assert bot_api.invoice_links[order["invoiceLink"]]["amount"] == 100
    page.wait_for_selector(f"li[data-order-id='{order['orderId']}'] .status.pending")
    assert ["openInvoice", order["invoiceLink"]] in page.evaluate("window.__calls")
    assert page.is_hidden("#payment")


def test_outside_telegram_the_page_says_where_to_open_it(live, browser):  # noqa: F811 (fixture)
    page = phone(browser, "")
    requests_made = []
    page.on("request", lambda request: requests_made.append(request.url))
    page.goto(f"{live.url}/miniapp/")
    page.wait_for_selector("#notice.error:has-text('Open this page from the bot in Telegram.')")
    assert not [url for url in requests_made if "/miniapp/api/" in url]
