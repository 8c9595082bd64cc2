"""The sbp worker: T-Bank payments whose notification never came are settled by GetState, once, also when the
payment was confirmed just after the order expired."""

from __future__ import annotations

import json

import pytest

from services.db import db, transaction
from services.models import ProviderEvent
from tests.conftest import AUTH
from tests.helpers import balance, status
from tests.support.worker import frozen_now, run_worker, wired_env

BUYER = 7
ORDER_TTL = 900  # ORDER_TTL_SECONDS' default
TURN = 60  # RECONCILE_INTERVAL_SECONDS' default


def events(app) -> list[ProviderEvent]:
    with app.app_context(), transaction():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


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


def get_states(tbank, payment_id) -> int:
    return sum(1 for r in tbank.requests if r.path == "/v2/GetState" and str(r.json["PaymentId"]) == str(payment_id))


def expired_order(app, client, tbank):
    """An order past its deadline, expired by the worker, whose T-Bank payment was still open then."""
    client.post("/api/payment", json={"amount": 100, "orderId": "t-1", "telegramId": BUYER, "credit": 20},
                headers=AUTH)
    payment_id = tbank.payment_by_order("t-1")["PaymentId"]
    app.config["CLOCK"].advance(seconds=ORDER_TTL + 1)
    run_worker(app, "sbp")
    assert status(client, "t-1")["status"] == "expired"
    return payment_id


def turns(app, count: int) -> None:
    for _ in range(count):
        app.config["CLOCK"].advance(seconds=TURN)
        run_worker(app, "sbp")


def test_a_payment_confirmed_just_after_its_order_expired_is_found_though_its_notification_was_lost(
        tbank_app, tbank):
    client = tbank_app.test_client()
    payment_id = expired_order(tbank_app, client, tbank)
    tbank.set_status(payment_id, "CONFIRMED")  # sent by the buyer before the deadline, confirmed after it
    turns(tbank_app, 6)
    assert status(client, "t-1")["status"] == "paid" and balance(client, BUYER) == 20
    [event] = events(tbank_app)
    assert (event.event_key, event.status, event.verification) == (
        f"{payment_id}:CONFIRMED", "processed", "reconciled via GetState")


def test_an_expired_order_is_asked_about_twice_and_its_closed_payment_stores_nothing(tbank_app, tbank):
    client = tbank_app.test_client()
    payment_id = expired_order(tbank_app, client, tbank)
    tbank.set_status(payment_id, "DEADLINE_EXPIRED")
    asked = get_states(tbank, payment_id)
    turns(tbank_app, 40)
    # Two checkpoints after the deadline (5 and 30 minutes), each seen by one or two turns.
    assert 2 <= get_states(tbank, payment_id) - asked <= 4
    assert status(client, "t-1")["status"] == "expired" and events(tbank_app) == []
    asked = get_states(tbank, payment_id)
    turns(tbank_app, 30)
    assert get_states(tbank, payment_id) == asked


def test_a_late_check_that_finds_t_bank_down_is_made_again_on_the_next_turn(tbank_app, tbank):
    client = tbank_app.test_client()
    payment_id = expired_order(tbank_app, client, tbank)
    tbank.set_status(payment_id, "CONFIRMED")
    turns(tbank_app, 4)  # 5 minutes after the deadline: the first checkpoint is one turn away
    tbank.fail_next(1)
    turns(tbank_app, 1)
    assert status(client, "t-1")["status"] == "expired" and events(tbank_app) == []
    turns(tbank_app, 1)
    assert status(client, "t-1")["status"] == "paid" and balance(client, BUYER) == 20
