"""The one inbox: persist a verified delivery, deduplicate it, and hand it to the settle step, in one
transaction, exactly once.

A delivery that is already stored counts as seen only if it was processed:
one whose processing failed is processed again when the provider retries
(the dj-stripe #832 trap).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from services import metrics, orders, settle
from services.db import DATABASE_DOWN, db, insert_ignore, transaction
from services.errors import SignatureInvalid
from services.models import Order, ProviderEvent
from services.notices import DUPLICATE, ERROR, RETRYABLE, Delivery, IngestResult, Notice
from webhook_config import Settings

logger = logging.getLogger(__name__)


@dataclass
class _StoredEvent:
    id: int
    provider: str


# Statements built once: the ingest path runs them on every delivery (see bench/README.md).
_EVENT_ROW = (select(ProviderEvent.id, ProviderEvent.status, ProviderEvent.claimed_order_id)
              .where(ProviderEvent.provider == bindparam("provider"), ProviderEvent.event_key == bindparam("event_key"))
              .with_for_update())
_EVENT_OUTCOME = (update(ProviderEvent.__table__).where(ProviderEvent.__table__.c.id == bindparam("event_id"))
                  .values(status=bindparam("outcome"), order_pk=bindparam("order"), error=bindparam("problem"),
                          processed_at=bindparam("at", type_=ProviderEvent.__table__.c.processed_at.type),
                          processing_attempts=ProviderEvent.__table__.c.processing_attempts + 1))
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


def note_reconciled(result: IngestResult, provider: str, order_id: str) -> int:
    """Count and log what a provider's API said about an order whose webhook never came; 1 when it was news."""
    metrics.record_reconciliation(provider, result.outcome)
    if result.duplicate:
        return 0
    logger.info("%s order settled by reconciliation: %s", provider, result.outcome,
                extra={"provider": provider, "order_id": order_id, "event_id": result.event_id})
    return 1


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
        event = _StoredEvent(row.id, delivery.provider)
    order = _find_order(delivery.provider, notice)
    settlement = settle.apply(event.id, delivery.provider, notice, order, settings, now)
    _record_outcome(event.id, settlement.outcome, order, settlement.problem, processed_at=now)
    logger.info("%s event %s: %s", delivery.provider, notice.event_type, settlement.outcome,
                extra={"order_id": notice.order_id, "event_id": event.id})
    return IngestResult(event.id, settlement.outcome, order.order_id if order is not None else notice.order_id)


def _claim_event(delivery: Delivery, notice: Notice, now: datetime) -> _StoredEvent | None:
    """Store the delivery; None when this event was stored before (a repeat, or a retry of a failed one)."""
    new_id = insert_ignore(ProviderEvent, _event_values(delivery, notice, now), ["provider", "event_key"])
    return _StoredEvent(new_id, delivery.provider) if new_id is not None else None


def _locked_event_row(provider: str, event_key: str):
    return db.session.connection().execute(_EVENT_ROW, {"provider": provider, "event_key": event_key}).one()


def _record_outcome(event_id: int, outcome: str, order: Order | None, problem: str | None,
                    processed_at: datetime | None) -> None:
    db.session.connection().execute(_EVENT_OUTCOME, {
        "event_id": event_id, "outcome": outcome, "order": order.id if order is not None else None,
        "problem": problem, "at": processed_at})
    # A caller may hold the event as an ORM object (admin replay does): reload it on next access rather
    # than let it show the state from before this write.
    loaded = db.session.identity_map.get(db.session.identity_key(ProviderEvent, event_id))
    if loaded is not None:
        db.session.expire(loaded)


def _store_failed(delivery: Delivery, notice: Notice, error: str, now: datetime) -> int:
    event = _claim_event(delivery, notice, now)
    event_id = event.id if event is not None else _locked_event_row(delivery.provider, notice.event_key).id
    _record_outcome(event_id, ERROR, None, error, processed_at=None)
    return event_id


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
