"""Orders past their deadline are expired by their provider's worker, and announced."""

from __future__ import annotations


import pytest

from services.db import db, transaction
from services.models import ProviderEvent
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
