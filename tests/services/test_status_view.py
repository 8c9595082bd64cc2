"""The status answer and merchant events are built without marshmallow: they must stay what OrderStatusSchema dumps."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from services.db import db, transaction
from services.models import Order, Purchase
from services.orders import find_order, lock_order, order_view, status_of
from services.schemas import OrderStatusSchema
from tests.helpers import create

SCHEMA = OrderStatusSchema()
PAID_AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)


def _shape(order: Order, shape: str) -> None:
    if shape in ("paid", "purchase", "recurring"):
        order.status, order.paid_at = "paid", PAID_AT
    if shape == "purchase":
        purchase = Purchase(telegram_id=order.telegram_id or 42, plan="vpn-month", expires_at=PAID_AT,
                            subscription_url="https://panel.example/sub/abc")
        db.session.add(purchase)
        db.session.flush()
        order.purchase_id = purchase.id
    if shape == "purchase_without_url":
        purchase = Purchase(telegram_id=42, plan="vpn-year", expires_at=PAID_AT)
        db.session.add(purchase)
        db.session.flush()
        order.purchase_id = purchase.id
    if shape == "recurring":
        order.recurring = True
        order.renewal = {"chargeId": "ch-1", "expiresAt": "2026-04-04T05:06:07+00:00"}
    if shape == "recurring_without_renewal":
        order.recurring = True
    if shape == "metadata":
        order.meta = {"cart": [1, 2], "price": Decimal("9.990"), "note": "ё"}


@pytest.mark.parametrize("shape", ["pending", "paid", "purchase", "purchase_without_url", "recurring",
                                   "recurring_without_renewal", "metadata"])
@pytest.mark.parametrize("amount", ["100", "1.50", "12345.67"])
def test_status_view_is_what_the_schema_dumps(app, client, shape, amount):
    assert create(client, amount=amount, telegramId=42, credit=7).status_code == 201
    with app.app_context():
        order = find_order("order-1", lock=True)
        _shape(order, shape)
        db.session.commit()
        order = db.session.execute(db.select(Order).where(Order.order_id == "order-1")).scalar_one()
        expected = SCHEMA.dump(order)
        db.session.rollback()
        with transaction():
            assert list(order_view(lock_order("order-1")).items()) == list(expected.items())
        assert list(status_of("order-1").items()) == list(expected.items())
