"""Controls of docs/security.md that had no test of their own: escaping in the console, bound SQL parameters,
and outbound requests that only ever go where the configuration says."""

from __future__ import annotations

import hmac
import re
from decimal import Decimal

import pytest
import requests

from services.db import db, transaction
from services.models import Order, ProviderEvent
from tests.conftest import AUTH
from tests.helpers import assert_error
from tests.support.admin import PASSWORD, cheap_hashing, create_order, staff  # noqa: F401
from tests.support.worker import frozen_now, paid_order, run_worker, wired_env

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
SCRIPT = '<script>alert("x")</script>'
IMAGE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def console(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    token = _TOKEN.search(client.get("/console/login").get_data(as_text=True)).group(1)
    client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD, "csrf_token": token})
    return client


def orders_count(app) -> int:
    with app.app_context(), transaction():
        return db.session.execute(db.select(db.func.count()).select_from(Order)).scalar_one()


# --- XSS: everything a payer or caller wrote is escaped in the console -----------------------------------

def test_caller_and_payer_text_is_escaped_in_the_console(app, console):
    create_order(console, "xss-1", description=SCRIPT, telegramId=5, credit=1, metadata={"note": IMAGE})
    with app.app_context(), transaction():
        db.session.add(ProviderEvent(provider="bmc", event_key="x", event_type=SCRIPT, status="unmatched",
                                     amount=Decimal(1), currency="USD", verification="valid", headers={}, body=b"{}",
                                     details={"message": IMAGE, "supporterEmail": SCRIPT}))
    pages = [console.get(path).get_data(as_text=True) for path in ("/console/orders/xss-1", "/console/")]
    pages.append(console.get("/console/", query_string={"q": SCRIPT}).get_data(as_text=True))
    for page in pages:
        assert SCRIPT not in page and IMAGE not in page
    assert "&lt;script&gt;" in pages[0] and "&lt;img src=x onerror=alert(1)&gt;" in pages[1]


# --- SQL injection: every value is a bound parameter ------------------------------------------------------

INJECTIONS = ["x' OR '1'='1", "x\" OR \"1\"=\"1", "1; DROP TABLE orders; --", "' UNION SELECT order_id FROM orders --"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injected_sql_in_a_path_reads_no_other_order(app, client, text):
    create_order(client, "real-1")
    assert_error(client.get(f"/api/status/{requests.utils.quote(text, safe='')}", headers=AUTH), 404)
    assert orders_count(app) == 1


@pytest.mark.parametrize("text", INJECTIONS)
def test_injected_sql_in_the_console_search_finds_nothing(app, console, text):
    create_order(console, "real-1")
    page = console.get("/console/", query_string={"q": text}).get_data(as_text=True)
    assert "real-1" not in page and "No order has this orderId" in page
    assert orders_count(app) == 1


@pytest.mark.parametrize("text", ["' OR '1'='1", "admin@example.test' --"])
def test_injected_sql_in_the_login_logs_nobody_in(app, client, cheap_hashing, text):  # noqa: F811
    staff(app)
    token = _TOKEN.search(client.get("/console/login").get_data(as_text=True)).group(1)
    response = client.post("/console/login", data={"email": text, "password": text, "csrf_token": token})
    assert response.status_code == 401 and client.get("/console/").status_code == 302


# --- SSRF: no request names where the gateway sends its own requests -------------------------------------

def test_a_payment_request_cannot_name_a_url_to_call(client):
    body = {"amount": 1, "orderId": "ssrf-0", "webhookUrl": "http://169.254.169.254/latest/meta-data/",
            "callbackUrl": "http://127.0.0.1:22/"}
    error = assert_error(client.post("/api/payment", json=body, headers=AUTH), 422, "validation_error")
    assert {"webhookUrl", "callbackUrl"} <= set(error["fields"])


def test_urls_in_an_order_never_become_destinations(make_app, merchant, telegram, monkeypatch):
    app = make_app(**wired_env(merchant, telegram))
    frozen_now(app)
    sent: list[str] = []
    original = requests.Session.request
    monkeypatch.setattr(requests.Session, "request",
                        lambda self, method, url, *args, **kwargs: sent.append(url) or original(
                            self, method, url, *args, **kwargs))
    planted = "http://169.254.169.254/latest/meta-data/"
    paid_order(app.test_client(), "ssrf-1", telegramId=5, credit=1, description=planted,
               metadata={"webhookUrl": planted, "callback_url": planted, "telegram_api": planted})
    run_worker(app, "merchant")
    run_worker(app, "telegram")
    assert len(merchant.deliveries()) == 1 and sent
    assert all(url.startswith((merchant.hook_url, telegram.api_url)) for url in sent), sent


# --- secrets compared in constant time --------------------------------------------------------------------

@pytest.fixture
def compared(monkeypatch) -> list[int]:
    """Counts hmac.compare_digest calls: every secret comparison must go through it."""
    calls: list[int] = []
    original = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or original(a, b))
    return calls


def test_a_bearer_token_is_compared_with_every_rotated_one_in_constant_time(make_app, compared):
    old, new = "old-token-0123456789abcdef0123456789", "new-token-0123456789abcdef0123456789"
    client = make_app(WEBHOOK_API_TOKEN=f"{old},{new}").test_client()
    auth = {"Authorization": f"Bearer {old}"}
    assert client.post("/api/payment", json={"amount": 100, "orderId": "o-1"}, headers=auth).status_code == 201
    # Through Flask's route check, then through the status reader's in front of Flask.
    for path in ("/api/balance/7", "/api/status/o-1"):
        compared.clear()
        assert client.get(path, headers=auth).status_code == 200
        assert len(compared) == 2  # no early exit on the first match: the time does not tell which one matched


@pytest.mark.parametrize("path, env, headers", [
    ("/webhook/telegram", {"TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_WEBHOOK_SECRET": "s" * 32},
     {"X-Telegram-Bot-Api-Secret-Token": "t" * 32}),
    ("/bmc-webhook", {"BMC_WEBHOOK_SECRET": "b" * 32}, {"X-Signature-Sha256": "0" * 64}),
    ("/webhook/cryptobot", {"CRYPTOBOT_TOKEN": "1:token"}, {"Crypto-Pay-Api-Signature": "0" * 64}),
])
def test_webhook_secrets_are_compared_in_constant_time(make_app, compared, path, env, headers):
    response = make_app(**env).test_client().post(path, data=b'{"update_id": 1}', headers=headers,
                                                  content_type="application/json")
    assert_error(response, 401)
    assert compared
