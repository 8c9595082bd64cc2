"""The cryptobot worker: invoices whose webhook never came are settled by getInvoices, once."""

from __future__ import annotations


import pytest

from services.db import db, transaction
from services.models import LedgerEntry, ProviderEvent
from tests.conftest import AUTH
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
