"""The shared fulfilment path: exactly once, subscriptions, refunds, failures stored and retried."""

from __future__ import annotations

import dataclasses

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest

from services import events, notices, orders
from services.db import db, transaction
from services.models import Fulfilment, LedgerEntry, OutboxMessage, ProviderEvent, Purchase
from services.orders import find_order
from tests.helpers import create

MERCHANT = {"MERCHANT_WEBHOOK_URL": "http://127.0.0.1:9/h",
            "MERCHANT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


@pytest.fixture
def ctx(app, clock):
    with app.app_context():
        yield app


def delivery() -> notices.Delivery:
    return notices.Delivery(provider="sbp", body=b"{}", headers={}, remote_addr="127.0.0.1")


def paid(key: str = "p1:CONFIRMED", amount: str = "100", order_id: str = "order-1", **kw) -> notices.Notice:
    return notices.Notice(event_key=key, event_type="CONFIRMED", action=notices.PAID, order_id=order_id,
                        amount=Decimal(amount), currency="RUB", **kw)


def ingest(app, notice: notices.Notice, clock) -> notices.IngestResult:
    return events.ingest(delivery(), notice, app.config["SETTINGS"], clock.now)


def count(model) -> int:
    return db.session.execute(db.select(db.func.count()).select_from(model)).scalar_one()


def test_second_distinct_payment_for_paid_order_is_a_conflict(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    assert ingest(ctx, paid("a"), clock).outcome == "processed"
    assert ingest(ctx, paid("b"), clock).outcome == "conflict"
    assert count(LedgerEntry) == 1 and count(Fulfilment) == 1


def test_subscription_is_activated_then_extended_from_its_expiry(ctx, client, clock):
    create(client, orderId="s1", telegramId=1, subscription={"plan": "pro", "days": 30})
    create(client, orderId="s2", telegramId=1, subscription={"plan": "pro", "days": 10})
    ingest(ctx, paid("a", order_id="s1"), clock)
    clock.advance(days=5)
    ingest(ctx, paid("b", order_id="s2"), clock)
    [purchase] = db.session.execute(db.select(Purchase)).scalars().all()
    assert purchase.expires_at == clock.now - timedelta(days=5) + timedelta(days=40)
    assert find_order("s1").purchase_id == find_order("s2").purchase_id == purchase.id


def test_late_payment_for_expired_order_is_honoured(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with transaction():
        find_order("order-1", lock=True).status = "expired"
    assert ingest(ctx, paid(), clock).outcome == "processed"
    assert find_order("order-1").status == "paid"


def test_currency_mismatch_is_held(ctx, client, clock):
    create(client)
    notice = notices.Notice(event_key="k", event_type="x", action=notices.PAID, order_id="order-1",
                          amount=Decimal(100), currency="USD")
    assert ingest(ctx, notice, clock).outcome == "mismatch"
    assert find_order("order-1").status == "pending"


def test_processing_error_is_stored_and_retried_not_treated_as_duplicate(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with mock.patch("services.settle.ledger.post", side_effect=RuntimeError("ledger bug")):
        failed = ingest(ctx, paid(), clock)
    assert failed.outcome == "failed"
    event = db.session.execute(db.select(ProviderEvent)).scalar_one()
    assert event.status == "failed" and "ledger bug" in event.error
    assert find_order("order-1").status == "pending" and count(LedgerEntry) == 0
    retried = ingest(ctx, paid(), clock)
    assert retried.outcome == "processed" and retried.event_id == failed.event_id
    assert count(LedgerEntry) == 1 and find_order("order-1").status == "paid"
    assert db.session.get(ProviderEvent, failed.event_id, populate_existing=True).processing_attempts == 2


def test_state_change_that_rolls_back_leaves_no_outbox_row(make_app, client, clock):
    app = make_app(**MERCHANT)
    with app.app_context():
        create(app.test_client())
        with pytest.raises(RuntimeError), transaction():
            order = orders.lock_order("order-1")
            assert orders.change_status(order, orders.PAID, app.config["SETTINGS"], clock.now)
            assert count(OutboxMessage) == 1
            raise RuntimeError("caller failed after the change")
        assert count(OutboxMessage) == 0
        assert find_order("order-1").status == "pending"


def test_refund_of_unpaid_order_is_a_conflict(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    refund = notices.Notice(event_key="r", event_type="REFUNDED", action=notices.REFUNDED, order_id="order-1",
                          amount=Decimal(100), currency="RUB")
    assert ingest(ctx, refund, clock).outcome == "conflict"
    assert count(LedgerEntry) == 0


def test_status_change_updates_the_row_the_locked_order_and_an_orm_copy_alike(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with transaction():
        held = find_order("order-1")  # e.g. read earlier in the same request through the ORM
        order = orders.lock_order("order-1")
        assert orders.change_status(order, orders.PAID, ctx.config["SETTINGS"], clock.now)
        assert (order.status, order.paid_at, order.updated_at) == ("paid", clock.now, clock.now)
        assert (held.status, held.paid_at) == ("paid", clock.now)
    db.session.expunge_all()
    stored = find_order("order-1")
    assert (stored.status, stored.paid_at, stored.updated_at) == ("paid", clock.now, clock.now)


def test_a_locked_order_changes_only_through_save(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with transaction():
        order = orders.lock_order("order-1")
        with pytest.raises(dataclasses.FrozenInstanceError):
            order.status = "paid"
    assert find_order("order-1").status == "pending"


def test_status_change_of_an_order_not_stored_is_refused(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with transaction():
        order = dataclasses.replace(orders.lock_order("order-1"), id=10**6)
    with pytest.raises(RuntimeError, match="not stored"):
        orders.change_status(order, orders.PAID, ctx.config["SETTINGS"], clock.now)
    db.session.rollback()
    assert count(OutboxMessage) == 0


def test_an_event_the_caller_holds_shows_the_outcome_of_its_reprocessing(ctx, client, clock):
    create(client, telegramId=1, credit=10)
    with mock.patch("services.settle.ledger.post", side_effect=RuntimeError("ledger bug")):
        failed = ingest(ctx, paid("a"), clock)
    held = db.session.get(ProviderEvent, failed.event_id)
    assert (held.status, held.processing_attempts) == ("failed", 1)
    assert ingest(ctx, paid("a"), clock).outcome == "processed"
    assert (held.status, held.processing_attempts, held.error) == ("processed", 2, None)
