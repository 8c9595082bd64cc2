"""Reconciliation (missed CryptoBot and T-Bank webhooks) and expiry, run as `worker run --provider P --once`."""

from __future__ import annotations

import json

import pytest

from services.db import db, transaction
from services.models import LedgerEntry, ProviderEvent
from tests.conftest import AUTH
from tests.fakes import FakeMerchant
from tests.helpers import balance, status
from tests.support.worker import frozen_now, run_worker, wired_env
from tests.support.worker import outbox as outbox_rows

BUYER = 7


def events(app) -> list[ProviderEvent]:
    with app.app_context(), transaction():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


def ledger_count(app) -> int:
    with app.app_context(), transaction():
        return db.session.execute(db.select(db.func.count()).select_from(LedgerEntry)).scalar_one()


@pytest.fixture
def crypto_app(make_app, cryptopay, merchant):
    app = make_app(CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url, **wired_env(merchant))
    frozen_now(app)
    return app


def create_crypto(client, order_id="c-1"):
    body = {"amount": "1.5", "orderId": order_id, "provider": "cryptobot", "currency": "USDT",
            "telegramId": BUYER, "credit": 50}
    response = client.post("/api/payment", json=body, headers=AUTH)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["invoiceId"]


def test_missed_cryptobot_webhook_is_settled_once_by_reconciliation(crypto_app, cryptopay):
    client = crypto_app.test_client()
    invoice_id = create_crypto(client)
    cryptopay.mark_paid(invoice_id)
    run_worker(crypto_app, "cryptobot")  # too young: the webhook may still come
    assert status(client, "c-1")["status"] == "pending"
    crypto_app.config["CLOCK"].advance(seconds=121)
    run_worker(crypto_app, "cryptobot")
    assert status(client, "c-1")["status"] == "paid" and balance(client, BUYER) == 50
    [event] = events(crypto_app)
    assert event.event_key == f"invoice:{invoice_id}:paid" and event.status == "processed"
    assert "getInvoices" in event.verification
    for _ in range(2):
        crypto_app.config["CLOCK"].advance(seconds=61)
        run_worker(crypto_app, "cryptobot")
    assert balance(client, BUYER) == 50 and ledger_count(crypto_app) == 1 and len(events(crypto_app)) == 1
    assert [r.kind for r in outbox_rows(crypto_app, "merchant")] == ["order.paid"]


def test_webhook_arriving_after_reconciliation_is_a_duplicate(crypto_app, cryptopay):
    client = crypto_app.test_client()
    invoice_id = create_crypto(client)
    cryptopay.mark_paid(invoice_id)
    crypto_app.config["CLOCK"].advance(seconds=121)
    run_worker(crypto_app, "cryptobot")
    body = cryptopay.webhook_body(invoice_id)
    response = client.post("/webhook/cryptobot", data=body, content_type="application/json",
                           headers={"crypto-pay-api-signature": cryptopay.sign(body)})
    assert response.status_code == 200 and response.get_json()["duplicate"] is True
    assert balance(client, BUYER) == 50


def test_unpaid_cryptobot_order_is_left_pending_then_expired(crypto_app, cryptopay, merchant):
    client = crypto_app.test_client()
    create_crypto(client)
    crypto_app.config["CLOCK"].advance(seconds=121)
    run_worker(crypto_app, "cryptobot")
    assert status(client, "c-1")["status"] == "pending" and events(crypto_app) == []
    crypto_app.config["CLOCK"].advance(seconds=900)
    run_worker(crypto_app, "cryptobot")
    assert status(client, "c-1")["status"] == "expired"


@pytest.fixture
def tbank_app(make_app, tbank, merchant):
    app = make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key, TBANK_PASSWORD=tbank.password,
                   TBANK_API_URL=tbank.api_url, **wired_env(merchant))
    frozen_now(app)
    return app


def test_missed_tbank_notification_is_settled_by_getstate(tbank_app, tbank):
    client = tbank_app.test_client()
    client.post("/api/payment", json={"amount": 100, "orderId": "t-1", "telegramId": BUYER, "credit": 20},
                headers=AUTH)
    payment_id = tbank.payment_by_order("t-1")["PaymentId"]
    tbank.set_status(payment_id, "CONFIRMED")
    tbank_app.config["CLOCK"].advance(seconds=121)
    run_worker(tbank_app, "sbp")
    assert status(client, "t-1")["status"] == "paid" and balance(client, BUYER) == 20
    [event] = events(tbank_app)
    assert (event.event_key, event.verification) == (f"{payment_id}:CONFIRMED", "reconciled via GetState")
    assert json.loads(event.body)["Status"] == "CONFIRMED"
    late = client.post("/webhook/sbp/tbank", json=tbank.notification(payment_id, "CONFIRMED"))
    assert late.get_data() == b"OK"
    tbank_app.config["CLOCK"].advance(seconds=61)
    run_worker(tbank_app, "sbp")
    assert balance(client, BUYER) == 20 and len(events(tbank_app)) == 1


def test_tbank_payment_still_new_changes_nothing(tbank_app, tbank):
    client = tbank_app.test_client()
    client.post("/api/payment", json={"amount": 100, "orderId": "t-1"}, headers=AUTH)
    tbank_app.config["CLOCK"].advance(seconds=121)
    run_worker(tbank_app, "sbp")
    assert status(client, "t-1")["status"] == "pending" and events(tbank_app) == []
    assert [r.path for r in tbank.requests][-1] == "/v2/GetState"


@pytest.fixture
def lenient_merchant():
    # The test clock runs 15 minutes ahead of the receiver's: its timestamp tolerance is off.
    with FakeMerchant(tolerance_seconds=None) as merchant:
        yield merchant


def test_expiry_emits_order_expired_to_the_merchant(make_app, lenient_merchant):
    app = make_app(**wired_env(lenient_merchant))
    clock = frozen_now(app)
    client = app.test_client()
    client.post("/api/payment", json={"amount": 100, "orderId": "e-1"}, headers=AUTH)
    clock.advance(seconds=899)
    run_worker(app, "sbp")
    assert status(client, "e-1")["status"] == "pending"
    clock.advance(seconds=1)
    run_worker(app, "sbp")
    assert status(client, "e-1")["status"] == "expired"
    run_worker(app, "merchant")
    [event] = lenient_merchant.events()
    assert event["type"] == "order.expired" and event["data"]["orderId"] == "e-1"
    assert event["data"]["status"] == "expired"
