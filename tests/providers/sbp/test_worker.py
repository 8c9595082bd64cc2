"""The sbp worker: T-Bank payments whose notification never came are settled by GetState, once."""

from __future__ import annotations

import json

import pytest

from services.db import db, transaction
from services.models import ProviderEvent
from tests.conftest import AUTH
from tests.helpers import balance, status
from tests.support.worker import frozen_now, run_worker, wired_env

BUYER = 7


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
