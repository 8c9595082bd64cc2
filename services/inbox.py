"""Provider events: persist a verified delivery and process it in the same transaction, exactly once.

A delivery that is already stored counts as seen only if it was processed:
one whose processing failed is processed again when the provider retries
(the dj-stripe #832 trap).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update

from services import fulfilment, metrics, orders
from services.errors import SignatureInvalid
from services.db import DATABASE_DOWN, db, insert_ignore, transaction
from services.models import Order, ProviderEvent
from webhook_config import Settings

logger = logging.getLogger(__name__)

PAID, REFUNDED, FAILED, CANCELLED, EXPIRED, IGNORE = "paid", "refunded", "failed", "cancelled", "expired", "ignore"

# Event outcomes. Those in NEEDS_REVIEW are shown to support as work to do.
PROCESSED, IGNORED, UNMATCHED, MISMATCH, CONFLICT, ERROR, ASSIGNED = (
    "processed", "ignored", "unmatched", "mismatch", "conflict", "failed", "assigned")
NEEDS_REVIEW = frozenset({UNMATCHED, MISMATCH, CONFLICT, ERROR})
# Outcomes of an event that was applied to its order.
SETTLED = frozenset({PROCESSED, ASSIGNED})
RETRYABLE = frozenset({ERROR})
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Delivery:
    """The raw inbound request, kept for the audit trail."""

    provider: str
    body: bytes
    headers: dict[str, str]
    remote_addr: str | None
    verification: str = "valid"


@dataclass(frozen=True)
class Notice:
    """What a provider's event means, in the gateway's own terms."""

    event_key: str
    event_type: str
    action: str
    order_id: str | None = None
    provider_ref: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    provider_payment_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    event_id: int
    outcome: str
    order_id: str | None

    @property
    def duplicate(self) -> bool:
        return self.outcome == DUPLICATE


@dataclass
class EventState:
    """The stored event being processed: `apply` may set the problem support should read."""

    id: int
    provider: str
    error: str | None = None


# Statements built once: the ingest path runs them on every delivery (see bench/README.md).
_EVENT_ROW = (select(ProviderEvent.id, ProviderEvent.status, ProviderEvent.claimed_order_id)
              .where(ProviderEvent.provider == bindparam("provider"), ProviderEvent.event_key == bindparam("event_key"))
              .with_for_update())
_EVENT_OUTCOME = (update(ProviderEvent.__table__).where(ProviderEvent.__table__.c.id == bindparam("event_id"))
                  .values(status=bindparam("outcome"), order_pk=bindparam("order"), error=bindparam("problem"),
                          processed_at=bindparam("at", type_=ProviderEvent.__table__.c.processed_at.type),
                          processing_attempts=ProviderEvent.__table__.c.processing_attempts + 1))
_SETTLING_EVENT = (select(ProviderEvent.id)
                   .where(ProviderEvent.order_pk == bindparam("order_pk"), ProviderEvent.provider == bindparam("provider"),
                          ProviderEvent.provider_payment_id == bindparam("payment_id"),
                          ProviderEvent.status.in_(SETTLED))
                   .limit(1))
_ORDER_BY_PROVIDER_REF = (select(Order).where(Order.provider == bindparam("provider"),
                                              Order.provider_ref == bindparam("provider_ref"))
                          .with_for_update().execution_options(populate_existing=True))


@contextmanager
def rejection_logged(what: str, provider: str, header_present: bool) -> Iterator[None]:
    """Log a refused signature once (never the secret or the header's value) and let it propagate as 401."""
    try:
        yield
    except SignatureInvalid as exc:
        logger.warning("rejected a %s: %s", what, exc.message,
                       extra={"provider": provider, "header_present": header_present})
        raise


def ingest(delivery: Delivery, notice: Notice, settings: Settings, now: datetime) -> IngestResult:
    """Store the event and apply it; a repeat is a no-op. Database errors propagate (the caller answers 503)."""
    result = _ingest_committed(delivery, notice, settings, now)
    metrics.record_webhook(delivery.provider, result.outcome)
    return result


def _ingest_committed(delivery: Delivery, notice: Notice, settings: Settings, now: datetime) -> IngestResult:
    try:
        with transaction():
            return _ingest_once(delivery, notice, settings, now)
    except DATABASE_DOWN:
        raise
    except Exception as exc:
        # Bugs and data surprises must not make the provider retry forever:
        # the event is stored as failed (so it is never lost) and support replays it.
        logger.exception("processing a %s event failed", delivery.provider,
                         extra={"event_key": notice.event_key, "order_id": notice.order_id})
        with transaction():
            event_id = _store_failed(delivery, notice, f"{type(exc).__name__}: {exc}"[:2000], now)
            return IngestResult(event_id, ERROR, notice.order_id)


def _ingest_once(delivery: Delivery, notice: Notice, settings: Settings, now: datetime) -> IngestResult:
    event = _claim_event(delivery, notice, now)
    if event is None:
        row = _locked_event_row(delivery.provider, notice.event_key)
        if row.status not in RETRYABLE:
            return IngestResult(row.id, DUPLICATE, row.claimed_order_id)
        event = EventState(row.id, delivery.provider)
    order = _find_order(delivery.provider, notice)
    status = apply(event, notice, order, settings, now)
    _record_outcome(event, status, order, processed_at=now)
    logger.info("%s event %s: %s", delivery.provider, notice.event_type, status,
                extra={"order_id": notice.order_id, "event_id": event.id})
    return IngestResult(event.id, status, order.order_id if order is not None else notice.order_id)


def _claim_event(delivery: Delivery, notice: Notice, now: datetime) -> EventState | None:
    """Store the delivery; None when this event was stored before (a repeat, or a retry of a failed one)."""
    new_id = insert_ignore(ProviderEvent, _event_values(delivery, notice, now), ["provider", "event_key"])
    return EventState(new_id, delivery.provider) if new_id is not None else None


def _locked_event_row(provider: str, event_key: str):
    return db.session.connection().execute(_EVENT_ROW, {"provider": provider, "event_key": event_key}).one()


def _record_outcome(event: EventState, status: str, order: Order | None, processed_at: datetime | None) -> None:
    db.session.connection().execute(_EVENT_OUTCOME, {
        "event_id": event.id, "outcome": status, "order": order.id if order is not None else None,
        "problem": event.error, "at": processed_at})
    # A caller may hold the event as an ORM object (admin replay does): reload it on next access rather
    # than let it show the state from before this write.
    loaded = db.session.identity_map.get(db.session.identity_key(ProviderEvent, event.id))
    if loaded is not None:
        db.session.expire(loaded)


def _store_failed(delivery: Delivery, notice: Notice, error: str, now: datetime) -> int:
    event = _claim_event(delivery, notice, now) or EventState(
        _locked_event_row(delivery.provider, notice.event_key).id, delivery.provider)
    event.error = error
    _record_outcome(event, ERROR, None, processed_at=None)
    return event.id


def _event_values(delivery: Delivery, notice: Notice, now: datetime) -> dict[str, Any]:
    return {
        "provider": delivery.provider,
        "event_key": notice.event_key,
        "event_type": notice.event_type,
        "status": "received",
        "claimed_order_id": notice.order_id,
        "amount": notice.amount,
        "currency": notice.currency,
        "provider_payment_id": notice.provider_payment_id,
        "verification": delivery.verification,
        "details": notice.details,
        "headers": delivery.headers,
        "body": delivery.body,
        "remote_addr": delivery.remote_addr,
        "processing_attempts": 0,
        "received_at": now,
    }


def _find_order(provider: str, notice: Notice) -> Order | None:
    """The order by the provider's own payment id when it is ours, else by the orderId the event names."""
    if notice.provider_ref:
        order = db.session.execute(_ORDER_BY_PROVIDER_REF,
                                   {"provider": provider, "provider_ref": notice.provider_ref}).scalar_one_or_none()
        if order is not None:
            return order
    return orders.find_order(notice.order_id, lock=True) if notice.order_id else None


def apply(event: EventState, notice: Notice, order: Order | None, settings: Settings, now: datetime) -> str:
    """Apply one event to its order and say what came of it (an event outcome)."""
    if notice.action == IGNORE:
        return IGNORED
    if order is None:
        return UNMATCHED
    if notice.action == PAID:
        return _apply_payment(event, notice, order, settings, now)
    if notice.action == REFUNDED:
        problem = refund_mismatch(notice, order, event.provider)
        if problem:
            event.error = problem
            return CONFLICT
        if not orders.change_status(order, orders.REFUNDED, settings, now):
            return CONFLICT
        fulfilment.reverse(order, event.id, settings, now)
        return PROCESSED
    target = {FAILED: orders.FAILED, CANCELLED: orders.CANCELLED, EXPIRED: orders.EXPIRED}[notice.action]
    return PROCESSED if orders.change_status(order, target, settings, now) else IGNORED


def _apply_payment(event: EventState, notice: Notice, order: Order, settings: Settings, now: datetime) -> str:
    problem = payment_mismatch(notice, order, event.provider)
    if problem:
        event.error = problem
        return MISMATCH
    if not orders.change_status(order, orders.PAID, settings, now):
        # A second, distinct payment for an order that is not awaiting one: money to give back.
        return CONFLICT
    fulfilment.grant(order, event.id, settings, now)
    return PROCESSED


def payment_mismatch(notice: Notice, order: Order, provider: str) -> str | None:
    """Why this payment does not settle the order, or None when provider, amount and currency all match."""
    if provider != order.provider:
        return f"paid through {provider}, but the order was created for {order.provider}"
    if notice.currency is None or notice.currency.upper() != order.currency:
        return f"currency {notice.currency} does not match the order's {order.currency}"
    if notice.amount is None or notice.amount != order.amount:
        return f"amount {notice.amount} does not match the order's {order.amount}"
    if notice.provider_ref and order.provider_ref and notice.provider_ref != order.provider_ref:
        return f"payment {notice.provider_ref} is not the one created for this order ({order.provider_ref})"
    return None


def refund_mismatch(notice: Notice, order: Order, provider: str) -> str | None:
    """Why this refund must not reverse the order, or None when the refunded payment is one that settled it.

    An order may have been paid twice (the second payment is stored as a conflict, money to give back);
    refunding that second payment must not take back what the first one bought.
    """
    if notice.provider_payment_id is None:
        return None
    if provider != order.provider:
        return f"refunded through {provider}, but the order was created for {order.provider}"
    settling = db.session.connection().execute(_SETTLING_EVENT, {
        "order_pk": order.id, "provider": provider, "payment_id": notice.provider_payment_id}).first()
    if settling is None:
        return f"the refunded payment {notice.provider_payment_id} did not pay for this order"
    return None
