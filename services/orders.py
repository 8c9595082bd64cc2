"""The order state machine: the one place that changes an order's status and announces it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from services import notifications, outbox
from services.db import db
from services.errors import NotFound
from services.models import Order
from services.schemas import OrderStatusSchema
from webhook_config import Settings

PENDING, PAID, EXPIRED, CANCELLED, REFUNDED, FAILED = "pending", "paid", "expired", "cancelled", "refunded", "failed"

# An expired order may still become paid: the provider accepted the money
# after our deadline, and a buyer who paid must get what they paid for.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({PAID, EXPIRED, CANCELLED, FAILED}),
    EXPIRED: frozenset({PAID}),
    PAID: frozenset({REFUNDED}),
    CANCELLED: frozenset(),
    FAILED: frozenset(),
    REFUNDED: frozenset(),
}


_STATUS_SCHEMA = OrderStatusSchema()


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def find_order(order_id: str, *, lock: bool = False) -> Order | None:
    """The order with this orderId; `lock` takes its row lock for a state change (PostgreSQL)."""
    statement = select(Order).where(Order.order_id == order_id).execution_options(populate_existing=True)
    # PostgreSQL refuses FOR UPDATE across the outer join an eager load would add.
    statement = statement.with_for_update() if lock else statement.options(joinedload(Order.purchase))
    return db.session.execute(statement).scalar_one_or_none()


def get_order(order_id: str) -> Order:
    order = find_order(order_id)
    if order is None:
        raise NotFound(f"No order with orderId {order_id!r}.")
    return order


def change_status(order: Order, new_status: str, settings: Settings, now: datetime) -> bool:
    """Move the order to new_status if the state machine allows it, and queue the announcements."""
    if not can_transition(order.status, new_status):
        return False
    order.status = new_status
    order.updated_at = now
    if new_status == PAID:
        order.paid_at = now
    db.session.flush()
    announce(order, settings, now)
    return True


def announce(order: Order, settings: Settings, now: datetime) -> None:
    """Queue the merchant event and the buyer's message for the order's current status."""
    status = order.status
    if settings.merchant_webhook_url:
        event = {"type": f"order.{status}", "timestamp": int(now.timestamp()),
                 "data": _STATUS_SCHEMA.dump(order)}
        outbox.enqueue(outbox.MERCHANT, f"order.{status}", f"merchant:{order.order_id}:{status}", event, now, order)
    render = notifications.STATUS_TEXTS.get(status)
    if render and order.telegram_id and settings.telegram_bot_token:
        message = {"chat_id": order.telegram_id, "text": render(order, settings.credit_unit)}
        outbox.enqueue(outbox.TELEGRAM, f"notify.{status}", f"telegram:{order.order_id}:{status}", message, now, order)
