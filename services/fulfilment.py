"""Granting what a paid order bought, and taking it back on refund, exactly once per order."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from services import ledger, metrics, outbox
from services.db import db, insert_ignore
from services.models import Fulfilment, Order, Purchase
from webhook_config import Settings

CREDIT, SUBSCRIPTION = "credit", "subscription"
CREDIT_REVERSAL, SUBSCRIPTION_REVERSAL = "credit_reversal", "subscription_reversal"


def _claim(order: Order, kind: str, event_pk: int | None, now: datetime, **details) -> bool:
    """Record that `kind` was done for this order; False if it already was (unique per order and kind)."""
    claimed = insert_ignore(Fulfilment, {
        "order_pk": order.id, "kind": kind, "event_pk": event_pk, "details": details, "created_at": now,
    }, ["order_pk", "kind"]) is not None
    if claimed:
        metrics.record_fulfilment(kind)
    return claimed


def grant(order: Order, event_pk: int | None, settings: Settings, now: datetime) -> None:
    """Credit the balance and activate or extend the subscription the order asked for."""
    if order.credit and _claim(order, CREDIT, event_pk, now, amount=order.credit, unit=settings.credit_unit):
        ledger.post(order, order.credit, "order_paid", settings.credit_unit, now)
    if order.subscription_plan and _claim(order, SUBSCRIPTION, event_pk, now, days=order.subscription_days):
        purchase = _extend_purchase(order, timedelta(days=order.subscription_days), now)
        order.purchase_id = purchase.id
        if settings.panel_type:
            outbox.enqueue(outbox.PANEL, "panel.sync", f"panel:{order.order_id}:sync",
                           {"purchase_id": purchase.id, "notify": True}, now, order)


def reverse(order: Order, event_pk: int | None, settings: Settings, now: datetime) -> None:
    """Take back what `grant` gave, once."""
    if order.credit and _claim(order, CREDIT_REVERSAL, event_pk, now, amount=-order.credit):
        ledger.post(order, -order.credit, "order_refunded", settings.credit_unit, now)
    if order.subscription_plan and order.purchase_id and _claim(order, SUBSCRIPTION_REVERSAL, event_pk, now):
        purchase = db.session.get(Purchase, order.purchase_id, with_for_update=True)
        purchase.expires_at -= timedelta(days=order.subscription_days)
        purchase.updated_at = now
        if settings.panel_type:
            outbox.enqueue(outbox.PANEL, "panel.sync", f"panel:{order.order_id}:reverse",
                           {"purchase_id": purchase.id, "notify": False}, now, order)


def _extend_purchase(order: Order, period: timedelta, now: datetime) -> Purchase:
    """The buyer's purchase of this plan, created or extended from max(now, current expiry)."""
    insert_ignore(Purchase, {
        "telegram_id": order.telegram_id, "plan": order.subscription_plan, "status": "active",
        "expires_at": now, "created_at": now, "updated_at": now,
    }, ["telegram_id", "plan"])
    purchase = db.session.execute(
        select(Purchase).where(Purchase.telegram_id == order.telegram_id, Purchase.plan == order.subscription_plan)
        .with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    purchase.expires_at = max(purchase.expires_at, now) + period
    purchase.status = "active"
    purchase.updated_at = now
    return purchase
