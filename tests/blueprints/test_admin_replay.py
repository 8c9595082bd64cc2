"""Admin replay of CryptoBot and Telegram events whose processing failed, from real signed deliveries.

The replay app is built with a rotated token or secret: a stored body was authenticated on receipt
and is not checked again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from unittest import mock

import pytest

from services import events, notices, orders
from services.providers.cryptobot import inbound as cryptobot_service
from services.audit import AuditLog
from services.db import db, transaction
from services.models import LedgerEntry, ProviderEvent
from services.providers.cryptobot.client import CryptoPayClient
from tests.blueprints.test_cryptobot import create_invoice, deliver, paid_body
from tests.blueprints.test_telegram import (BUYER, PRE_CHECKOUT, REFUNDED_PAYMENT, SECRET, SUCCESSFUL_PAYMENT,
                                            create_stars, send)
from tests.helpers import balance, status
from tests.support.admin import ADMIN, ADMIN_KEY


@contextmanager
def failing_fulfilment() -> Iterator[None]:
    """Every ledger posting raises, as a bug in fulfilment would: the event is stored as failed."""
    with mock.patch("services.settle.ledger.post", side_effect=RuntimeError("ledger bug")):
        yield


def replay(client, order_id: str) -> dict:
    response = client.post(f"/admin/orders/{order_id}/replay", headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def stored(app, event_id: int) -> ProviderEvent:
    with app.app_context(), transaction():
        return db.session.get(ProviderEvent, event_id, populate_existing=True)


def ledger_amounts(app) -> list:
    with app.app_context(), transaction():
        return sorted(db.session.execute(db.select(LedgerEntry.amount)).scalars())


def replay_audits(app) -> int:
    with app.app_context(), transaction():
        return db.session.execute(db.select(db.func.count()).select_from(AuditLog)
                                  .where(AuditLog.action == "order.replay")).scalar_one()


def assert_replayed_once(app, client, order_id: str, event_id: int, order_status: str) -> None:
    """The first replay re-processes the failed event; the second finds nothing left to do."""
    first = replay(client, order_id)
    assert first["status"] == order_status
    assert first["events"] == [{"eventId": event_id, "outcome": "processed"}]
    again = replay(client, order_id)
    assert (again["status"], again["events"], again["queued"]) == (order_status, [], 0)
    event = stored(app, event_id)
    assert (event.status, event.error, event.processing_attempts) == ("processed", None, 2)
    assert replay_audits(app) == 2


# --- CryptoBot ---------------------------------------------------------------------------------------------


@pytest.fixture
def crypto_apps(make_app, cryptopay, clock):
    """The app that received the webhook, and the one replaying it after CRYPTOBOT_TOKEN was rotated."""
    received = make_app(CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url)
    replaying = make_app(CRYPTOBOT_TOKEN="4321:ROTATED-TOKEN", CRYPTOBOT_API_URL=cryptopay.api_url,
                         ADMIN_API_KEY=ADMIN_KEY)
    for app in (received, replaying):
        app.config["CLOCK"] = clock
    return received, replaying


def test_replay_settles_a_failed_cryptobot_payment_once(crypto_apps, cryptopay):
    received, replaying = crypto_apps
    client = received.test_client()
    create_invoice(client, telegramId=42, credit=500)
    with failing_fulfilment():
        response = deliver(client, paid_body(cryptopay))
    assert response.status_code == 200 and response.get_json()["outcome"] == "failed"
    assert status(client)["status"] == "pending" and balance(client, 42) == 0
    assert_replayed_once(replaying, replaying.test_client(), "order-1", response.get_json()["eventId"], "paid")
    assert status(client)["status"] == "paid" and balance(client, 42) == 500
    assert ledger_amounts(received) == [500]


def test_replay_settles_a_failed_reconciled_cryptobot_invoice_once(crypto_apps, cryptopay, clock):
    received, replaying = crypto_apps
    client = received.test_client()
    invoice_id = create_invoice(client, telegramId=42, credit=500).get_json()["invoiceId"]
    cryptopay.mark_paid(invoice_id)
    with received.app_context():
        [invoice] = CryptoPayClient(received.config["SETTINGS"]).get_invoices([invoice_id])
        with failing_fulfilment():
            result = cryptobot_service.record_invoice(invoice, received.config["SETTINGS"], clock())
    assert result.outcome == "failed"
    assert stored(received, result.event_id).verification == cryptobot_service.FETCHED
    assert_replayed_once(replaying, replaying.test_client(), "order-1", result.event_id, "paid")
    assert balance(client, 42) == 500 and ledger_amounts(received) == [500]


# --- Telegram ----------------------------------------------------------------------------------------------


@pytest.fixture
def telegram_apps(make_app, telegram, clock):
    """The app that received the updates, and the one replaying them after the webhook secret was rotated."""
    env = {"TELEGRAM_BOT_TOKEN": telegram.bot_token, "TELEGRAM_API_URL": telegram.api_url}
    received = make_app(TELEGRAM_WEBHOOK_SECRET=SECRET, **env)
    replaying = make_app(TELEGRAM_WEBHOOK_SECRET="rotated-secret-0123456789", ADMIN_API_KEY=ADMIN_KEY, **env)
    for app in (received, replaying):
        app.config["CLOCK"] = clock
    return received, replaying


def test_replay_settles_a_failed_telegram_payment_once(telegram_apps):
    received, replaying = telegram_apps
    client = received.test_client()
    create_stars(client)
    with failing_fulfilment():
        response = send(client, SUCCESSFUL_PAYMENT)
    assert response.status_code == 200 and response.get_json()["outcome"] == "failed"
    assert status(client, "order-45")["status"] == "pending" and balance(client, BUYER) == 0
    assert_replayed_once(replaying, replaying.test_client(), "order-45", response.get_json()["eventId"], "paid")
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    assert ledger_amounts(received) == [500]


def test_replay_reverses_a_failed_telegram_refund_once(telegram_apps):
    received, replaying = telegram_apps
    client = received.test_client()
    create_stars(client)
    assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "processed"
    with failing_fulfilment():
        response = send(client, REFUNDED_PAYMENT)
    assert response.get_json()["outcome"] == "failed"
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    assert_replayed_once(replaying, replaying.test_client(), "order-45", response.get_json()["eventId"], "refunded")
    assert status(client, "order-45")["status"] == "refunded" and balance(client, BUYER) == 0
    assert ledger_amounts(received) == [-500, 500]


def test_a_failed_pre_checkout_query_is_not_replayed(telegram_apps):
    received, replaying = telegram_apps
    client = received.test_client()
    create_stars(client)
    assert send(client, PRE_CHECKOUT).get_json()["ok"] is True
    with received.app_context(), transaction():
        # Nothing in a pre-checkout query's own processing fails; the row is marked failed as a bug would leave it.
        event = db.session.execute(db.select(ProviderEvent)).scalar_one()
        event.status, event_id = notices.ERROR, event.id
    body = replay(replaying.test_client(), "order-45")
    assert body["events"] == [{"eventId": event_id,
                               "outcome": "skipped: no way to read back a telegram pre_checkout_query event"}]
    assert body["status"] == "pending" and stored(received, event_id).status == notices.ERROR


def test_reading_back_a_telegram_refund_leaves_the_callers_transaction_open(telegram_apps):
    """Assignment reads an event back while holding row locks: the reader must not commit them away."""
    received, _ = telegram_apps
    client = received.test_client()
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    assert send(client, REFUNDED_PAYMENT).get_json()["outcome"] == "processed"
    with received.app_context():
        refund = db.session.execute(db.select(ProviderEvent)
                                    .where(ProviderEvent.event_type == "refunded_payment")).scalar_one()
        orders.find_order("order-45", lock=True).status = orders.CANCELLED
        notice = events.read_notice(refund, received.config["SETTINGS"])
        db.session.rollback()
    assert (notice.action, notice.order_id) == (notices.REFUNDED, "order-45")
    assert status(client, "order-45")["status"] == "refunded"
