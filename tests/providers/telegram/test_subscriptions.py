"""Stars subscriptions: a recurring invoice link, the first charge, renewals once per charge, cancel, refunds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from services.db import db
from services.models import Fulfilment, LedgerEntry, Order, OutboxMessage, Purchase
from tests.blueprints.test_telegram import BUYER, SECRET, SECRET_HEADER, send
from tests.conftest import AUTH, FrozenClock
from tests.helpers import assert_error, assert_processed_once, balance, create, post_concurrently, status
from tests.support.worker import run_worker, wired_env

ORDER = "vpn-sub-1"
PARALLEL = 20
FIRST, SECOND, THIRD = "stxFirstCharge0001", "stxRenewal0002", "stxRenewal0003"
PERIOD = timedelta(days=30)


@pytest.fixture
def app(make_app, telegram, merchant):
    app = make_app(TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url,
                   TELEGRAM_WEBHOOK_SECRET=SECRET, **wired_env(merchant))
    app.config["CLOCK"] = FrozenClock()
    return app


def create_subscription(client, order_id: str = ORDER, **body):
    fields = {"orderId": order_id, "amount": 100, "provider": "telegram", "currency": "XTR", "telegramId": BUYER,
              "credit": 10, "subscription": {"plan": "vpn", "days": 30}, "recurring": True, **body}
    return create(client, **fields)


def charge(charge_id: str, update_id: int, *, first: bool = False, recurring: bool = True, amount: int = 100,
           payer: int = BUYER, expires: datetime | None = None, order_id: str = ORDER) -> dict:
    payment = {"currency": "XTR", "total_amount": amount, "invoice_payload": order_id,
               "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}
    if recurring:
        payment.update(is_recurring=True, subscription_expiration_date=int((expires or datetime(
            2026, 12, 23, 10, tzinfo=timezone.utc)).timestamp()))
    if first:
        payment["is_first_recurring"] = True
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1763892000, "chat": {"id": payer, "type": "private"},
        "from": {"id": payer, "is_bot": False, "first_name": "Ivan"}, "successful_payment": payment}}


def refund(charge_id: str, update_id: int, amount: int = 100) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1763892000, "chat": {"id": BUYER, "type": "private"},
        "from": {"id": BUYER, "is_bot": False}, "refunded_payment": {
            "currency": "XTR", "total_amount": amount, "invoice_payload": ORDER,
            "telegram_payment_charge_id": charge_id}}}


def purchase(app) -> Purchase:
    with app.app_context():
        return db.session.execute(db.select(Purchase)).scalar_one()


def order(app, order_id: str = ORDER) -> Order:
    with app.app_context():
        return db.session.execute(db.select(Order).where(Order.order_id == order_id)).scalar_one()


def kinds(app, model, column) -> list:
    with app.app_context():
        return sorted(db.session.execute(db.select(column)).scalars())


def subscribed(app, client, clock):
    """A recurring order paid by its first charge."""
    assert create_subscription(client).status_code == 201
    assert send(client, charge(FIRST, 1, first=True)).get_json()["outcome"] == "processed"
    return purchase(app).expires_at


# --- creating the subscription ----------------------------------------------------------------------------------

def test_a_recurring_order_creates_a_subscription_invoice_link(client, telegram):
    body = create_subscription(client).get_json()
    assert telegram.invoice_links[body["invoiceLink"]]["subscription_period"] == 2_592_000
    assert body["recurring"] is True and status(client, ORDER)["recurring"] is True


@pytest.mark.parametrize("changes, field", [
    ({"subscription": {"plan": "vpn", "days": 31}}, "subscription"),
    ({"subscription": None, "credit": 10}, "subscription"),
    ({"provider": "sbp", "currency": "RUB"}, "recurring"),
])
def test_a_recurring_order_must_be_a_30_day_stars_subscription(client, changes, field):
    assert_error(create_subscription(client, **changes), 422, "validation_error")
    assert field in create_subscription(client, **changes).get_json()["error"]["fields"]


def test_recurring_is_part_of_the_order_terms(client):
    create_subscription(client)
    assert_error(create_subscription(client, recurring=False), 409)


# --- charges --------------------------------------------------------------------------------------------------

def test_the_first_charge_pays_and_keeps_what_cancelling_needs(app, client):
    clock = app.config["CLOCK"]
    expires = subscribed(app, client, clock)
    assert expires == clock.now + PERIOD and balance(client, BUYER) == 10
    assert order(app).renewal == {"chargeId": FIRST, "payerId": BUYER, "expiresAt": "2026-12-23T10:00:00+00:00"}
    assert status(client, ORDER)["renewal"]["expiresAt"] == "2026-12-23T10:00:00+00:00"


def test_each_renewal_grants_one_more_period_once(app, client, telegram):
    clock = app.config["CLOCK"]
    first_expiry = subscribed(app, client, clock)
    clock.advance(days=29)
    renewal = charge(SECOND, 2, expires=datetime(2027, 1, 22, 10, tzinfo=timezone.utc))
    assert send(client, renewal).get_json()["outcome"] == "processed"
    assert send(client, renewal).get_json()["outcome"] == "duplicate"
    assert purchase(app).expires_at == first_expiry + PERIOD
    clock.advance(days=30)
    assert send(client, charge(THIRD, 3)).get_json()["outcome"] == "processed"
    assert purchase(app).expires_at == first_expiry + 2 * PERIOD
    assert balance(client, BUYER) == 30 and status(client, ORDER)["status"] == "paid"
    assert order(app).renewal["expiresAt"] == "2026-12-23T10:00:00+00:00"
    with app.app_context():
        renewals = db.session.execute(db.select(Fulfilment.kind).where(Fulfilment.kind.startswith("renewal:"))
                                      ).scalars().all()
        merchant_kinds = db.session.execute(db.select(OutboxMessage.kind).where(OutboxMessage.channel == "merchant")
                                            .order_by(OutboxMessage.id)).scalars().all()
        notes = db.session.execute(db.select(OutboxMessage.kind).where(OutboxMessage.channel == "telegram")
                                   ).scalars().all()
    assert len(renewals) == 2
    assert merchant_kinds == ["order.paid", "order.renewed", "order.renewed"]
    assert notes.count("notify.renewed") == 2


def test_a_pre_checkout_for_a_renewal_is_answered_ok(app, client):
    subscribed(app, client, app.config["CLOCK"])
    query = {"update_id": 10, "pre_checkout_query": {"id": "q-renew", "from": {"id": BUYER, "is_bot": False},
                                                      "currency": "XTR", "total_amount": 100,
                                                      "invoice_payload": ORDER}}
    assert send(client, query).get_json() == {"method": "answerPreCheckoutQuery",
                                              "pre_checkout_query_id": "q-renew", "ok": True}


def test_a_renewal_of_an_order_that_is_not_recurring_is_left_to_support(app, client):
    create_subscription(client, recurring=False)
    send(client, charge(FIRST, 1, recurring=False))
    assert send(client, charge(SECOND, 2)).get_json()["outcome"] == "conflict"
    assert balance(client, BUYER) == 10


def test_concurrent_copies_of_a_renewal_grant_one_period(app, base_env, telegram, tmp_path):
    from tests.support.live import LiveServer

    env = {**base_env, "TELEGRAM_BOT_TOKEN": telegram.bot_token, "TELEGRAM_API_URL": telegram.api_url,
           "TELEGRAM_WEBHOOK_SECRET": SECRET}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        body = {"orderId": ORDER, "amount": 100, "provider": "telegram", "currency": "XTR", "telegramId": BUYER,
                "credit": 10, "subscription": {"plan": "vpn", "days": 30}, "recurring": True}
        assert requests.post(f"{live.url}/api/payment", json=body, headers=AUTH, timeout=30).status_code == 201
        headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
        for number, update in enumerate((charge(FIRST, 1, first=True), charge(SECOND, 2), charge(THIRD, 3))):
            responses = post_concurrently(f"{live.url}/webhook/telegram", json.dumps(update).encode(), headers,
                                          PARALLEL)
            assert_processed_once(responses)
        balance_now = requests.get(f"{live.url}/api/balance/{BUYER}", headers=AUTH, timeout=10).json()["balance"]
    assert balance_now == 30
    assert len(kinds(app, LedgerEntry, LedgerEntry.reason)) == 3
    assert len([k for k in kinds(app, Fulfilment, Fulfilment.kind) if k.startswith("renewal:")]) == 2


# --- cancel ---------------------------------------------------------------------------------------------------

def test_cancel_stops_the_renewals_and_keeps_the_paid_period(app, client, telegram):
    expires = subscribed(app, client, app.config["CLOCK"])
    response = client.post(f"/api/subscriptions/{ORDER}/cancel", headers=AUTH)
    assert response.status_code == 200 and response.get_json() == {"success": True, "orderId": ORDER,
                                                                     "cancelled": True}
    assert telegram.subscription_edits == [{"user_id": BUYER, "telegram_payment_charge_id": FIRST,
                                            "is_canceled": True}]
    assert client.post(f"/api/subscriptions/{ORDER}/cancel", headers=AUTH).status_code == 200
    assert len(telegram.subscription_edits) == 1
    assert purchase(app).expires_at == expires and status(client, ORDER)["status"] == "paid"
    assert status(client, ORDER)["renewal"]["cancelledAt"]


def test_cancel_while_telegram_is_down_is_queued_for_the_worker(app, client, telegram):
    subscribed(app, client, app.config["CLOCK"])
    telegram.down()
    response = client.post(f"/api/subscriptions/{ORDER}/cancel", headers=AUTH)
    assert response.status_code == 202 and response.get_json()["cancelled"] is False
    telegram.up()
    run_worker(app, "telegram")
    assert [edit["telegram_payment_charge_id"] for edit in telegram.subscription_edits] == [FIRST]
    assert "cancelledAt" in order(app).renewal


@pytest.mark.parametrize("order_id, expected", [("unknown", 404), ("plain", 409)])
def test_cancel_of_an_order_without_renewals(app, client, order_id, expected):
    create_subscription(client, order_id="plain", recurring=False)
    assert client.post(f"/api/subscriptions/{order_id}/cancel", headers=AUTH).status_code == expected


def test_cancel_needs_the_api_token(app, client):
    assert_error(client.post(f"/api/subscriptions/{ORDER}/cancel"), 401)


# --- refunds --------------------------------------------------------------------------------------------------

def test_a_refunded_renewal_takes_back_only_its_period(app, client):
    clock = app.config["CLOCK"]
    first_expiry = subscribed(app, client, clock)
    send(client, charge(SECOND, 2))
    assert send(client, refund(SECOND, 3)).get_json()["outcome"] == "processed"
    assert send(client, refund(SECOND, 3)).get_json()["outcome"] == "duplicate"
    assert status(client, ORDER)["status"] == "paid" and balance(client, BUYER) == 10
    assert purchase(app).expires_at == first_expiry
    assert send(client, refund(FIRST, 4)).get_json()["outcome"] == "processed"
    assert status(client, ORDER)["status"] == "refunded" and balance(client, BUYER) == 0
