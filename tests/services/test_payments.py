"""Payment creation at a remote provider: the lease that keeps concurrent repeats to one payment."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from services import payments
from services.db import db, transaction
from services.errors import ProviderUnavailable
from services.models import Order
from services.orders import find_order
from services.providers import registry
from services.providers.base import CreatedPayment

REQUEST = {"order_id": "lease-1", "provider": "sbp", "amount": Decimal(100), "currency": None}


class RemoteStub:
    """A remote provider whose create() can run a side effect while "the network call" is in flight."""

    name, local = "sbp", False

    def __init__(self, during_call=lambda: None):
        self.during_call = during_call
        self.calls = 0

    def default_currency(self) -> str:
        return "RUB"

    def currency_problem(self, currency: str) -> None:
        return None

    def create(self, draft) -> CreatedPayment:
        self.calls += 1
        self.during_call()
        return CreatedPayment(provider_ref=f"mine-{self.calls}", data={"payUrl": "https://pay.example/mine"})


@pytest.fixture
def ctx(app, clock, monkeypatch):
    with app.app_context():
        yield app.config["SETTINGS"], clock


def use(monkeypatch, stub: RemoteStub) -> None:
    monkeypatch.setattr(registry, "payment_provider", lambda name, settings: stub)


def test_lease_covers_every_call_a_create_may_make(ctx):
    settings, _ = ctx
    assert payments.create_lease(settings) > timedelta(seconds=payments.CALLS_PER_CREATE * settings.http_timeout)


def test_payment_attached_by_another_request_is_kept_when_our_lease_ran_out(ctx, monkeypatch):
    settings, clock = ctx

    def other_request_attaches():
        with transaction():
            db.session.execute(update(Order).where(Order.order_id == "lease-1").values(provider_ref="theirs"))

    use(monkeypatch, RemoteStub(other_request_attaches))
    order, created = payments.create_payment(dict(REQUEST), settings, clock.now)
    assert created and order.provider_ref == "theirs"


def test_a_repeat_waits_for_the_creating_request_then_gives_up_with_503(ctx, monkeypatch):
    settings, clock = ctx
    stub = RemoteStub()
    use(monkeypatch, stub)
    waits: list[float] = []
    # The first request holds the lease and has not attached yet.
    with transaction():
        db.session.add(Order(order_id="lease-1", provider="sbp", status="pending", amount=Decimal(100),
                             currency="RUB", meta={}, provider_data={}, created_at=clock.now,
                             updated_at=clock.now, expires_at=clock.now + timedelta(minutes=15),
                             create_lease_until=clock.now + timedelta(minutes=1)))
    with pytest.raises(ProviderUnavailable):
        payments.create_payment(dict(REQUEST), settings, clock.now, sleep=waits.append)
    assert stub.calls == 0
    assert sum(waits) == pytest.approx(payments.MAX_WAIT_SECONDS, abs=payments.WAIT_STEP_SECONDS)
    assert find_order("lease-1").provider_ref is None
