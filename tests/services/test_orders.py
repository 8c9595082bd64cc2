"""Orders past their deadline are expired by their provider's worker, and announced."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy.exc import OperationalError

from services import orders
from services.db import db, transaction
from services.models import Order, ProviderEvent
from tests.conftest import AUTH
from tests.fakes import FakeMerchant
from tests.helpers import status
from tests.support.worker import frozen_now, run_worker, wired_env



def events(app) -> list[ProviderEvent]:
    with app.app_context(), transaction():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()





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


def test_a_locked_order_row_holds_every_column_of_the_order_and_its_link():
    assert ([field.name for field in dataclasses.fields(orders.OrderRow)]
            == [prop.key for prop in Order.__mapper__.column_attrs] + ["subscription_url"])


def _by_order_id(order):
    return orders.lock_order(order.order_id)


def _by_payment_reference(order):
    return orders.lock_order_by_ref(order.provider, order.provider_ref)


@pytest.mark.parametrize("lock", [_by_order_id, _by_payment_reference])
def test_a_locked_order_keeps_another_locker_waiting_until_its_transaction_ends(make_app, lock):
    """Two events for one order (a payment and its refund, a payment and the expiry) decide one after the other."""
    app = make_app(DATABASE_LOCK_TIMEOUT_SECONDS="0.2")
    app.test_client().post("/api/payment", json={"amount": 100, "orderId": "l-1"}, headers=AUTH)
    with app.app_context():
        created = orders.find_order("l-1")
    assert created.provider_ref is not None
    seen = {}

    def another_worker():
        with app.app_context():
            try:
                with transaction():
                    seen["order"] = lock(created)
            except OperationalError as exc:
                seen["waited out"] = exc

    with app.app_context(), transaction():
        assert lock(created).status == "pending"
        thread = threading.Thread(target=another_worker)
        thread.start()
        thread.join(timeout=30)
    assert "order" not in seen and "waited out" in seen
    another_worker()
    assert seen["order"].order_id == "l-1"
