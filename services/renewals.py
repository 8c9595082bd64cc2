"""Stopping the renewals of a subscription its provider charges by itself (Stars): the paid period runs on.

The provider is called outside any transaction; when it cannot be reached, the cancellation is queued for
the provider's worker (the caller is told 202), which retries it on the outbox schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from services import audit, notifications, orders, outbox
from services.db import db, transaction
from services.errors import ActionConflict, NotFound, ProviderUnavailable
from services.models import Order
from services.outbox import Job
from services.providers import registry
from webhook_config import Settings

# Outbox kind, on the provider's own channel, of a cancellation the provider could not take at once.
CANCEL_KIND = "renewal.cancel"


@dataclass(frozen=True)
class Cancellation:
    order_id: str
    # False: queued for the provider's worker.
    done: bool


def cancel(order_id: str, actor: str, settings: Settings, now: datetime,
           buyer: int | None = None) -> Cancellation:
    """Stop the order's renewals; idempotent. `buyer` limits it to that buyer's own orders (the Mini App)."""
    with transaction():
        order = orders.lock_order(order_id)
        if order is None or (buyer is not None and order.telegram_id != buyer):
            raise NotFound(f"No order with orderId {order_id!r}.")
        renewal = dict(order.renewal or {})
        if not order.recurring or not renewal.get("chargeId"):
            raise ActionConflict(f"Order {order_id} has no subscription that renews (it is {order.status}).")
        if renewal.get("cancelledAt"):
            return Cancellation(order_id, True)
        provider = order.provider
    try:
        registry.plugin(provider).cancel_renewal(settings, renewal)
    except ProviderUnavailable:
        with transaction():
            order = orders.lock_order(order_id)
            outbox.enqueue(provider, CANCEL_KIND, f"{provider}:{order_id}:{CANCEL_KIND}", {"orderId": order_id},
                           now, order)
            audit.record(actor, "order.cancel_renewal", f"order:{order_id}", now, outcome="queued")
        return Cancellation(order_id, False)
    with transaction():
        mark_cancelled(order_id, settings, now)
        audit.record(actor, "order.cancel_renewal", f"order:{order_id}", now, outcome="cancelled")
    return Cancellation(order_id, True)


def mark_cancelled(order_id: str, settings: Settings, now: datetime) -> None:
    """Record that the provider stopped the renewals, and tell the buyer (in the caller's transaction)."""
    order = orders.lock_order(order_id)
    if (order.renewal or {}).get("cancelledAt"):
        return
    orders.save(order, now, renewal={**(order.renewal or {}), "cancelledAt": now.isoformat()})
    if order.telegram_id:
        outbox.enqueue_buyer_message(order.telegram_id, notifications.renewal_cancelled_text(order),
                                     "notify.renewal_cancelled",
                                     f"{outbox.buyer_channel()}:{order_id}:renewal_cancelled", settings, now, order)


class QueuedCancellation:
    """Outbox handler (kind "renewal.cancel" on a renewing provider's channel): cancel, then record it."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, job: Job, now: datetime) -> None:
        order_id = job.payload["orderId"]
        with transaction():
            order = orders.find_order(order_id)
            renewal = dict(order.renewal or {})
            provider = order.provider
        if not renewal.get("cancelledAt"):
            registry.plugin(provider).cancel_renewal(self.settings, renewal)
        with transaction():
            mark_cancelled(order_id, self.settings, now)


_RENEWING = (select(Order.order_id, Order.purchase_id, Order.renewal)
             .where(Order.telegram_id == bindparam("buyer"), Order.recurring.is_(True),
                    Order.status == orders.PAID)
             .order_by(Order.paid_at.desc(), Order.id.desc()))


def renewing_orders(buyer: int) -> list[tuple[str, int | None]]:
    """(orderId, purchase id) of the buyer's paid recurring orders whose renewals still run, newest first."""
    with transaction():
        rows = db.session.execute(_RENEWING, {"buyer": buyer}).all()
    return [(row.order_id, row.purchase_id) for row in rows if not _cancelled(row.renewal)]


def _cancelled(renewal: dict[str, Any] | None) -> bool:
    return bool((renewal or {}).get("cancelledAt"))
