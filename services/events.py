"""The one inbox: persist a verified delivery, deduplicate it, and hand it to the settle step, in one
transaction, exactly once.

A delivery that is already stored counts as seen only if it was processed:
one whose processing failed is processed again when the provider retries
(the dj-stripe #832 trap).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update

from services import metrics, orders, settle
from services.db import DATABASE_DOWN, db, expire_loaded, transaction
from services.driver import claim_finds_stored, fetch_one, fetch_row, insert_or_find, write_connection, write_later
from services.errors import GatewayError, SignatureInvalid
from services.models import ProviderEvent
from services.notices import DUPLICATE, ERROR, REFUNDED, RETRYABLE, Delivery, IngestResult, Notice
from services.providers import registry
from services.unit import write_unit
from webhook_config import Settings

logger = logging.getLogger(__name__)


# Failed events the worker looks at per turn; the rest wait for the next turn.
RETRY_BATCH = 50
MAX_ERROR_LENGTH = 2000
# PostgreSQL refuses NUL in text and JSON, and no encoder takes a lone surrogate: a signed event holding
# either is stored with U+FFFD in its parsed fields (its raw body keeps the bytes as they came).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass
class _StoredEvent:
    id: int
    provider: str
    attempts: int = 0


# Statements built once: the ingest path runs them on every delivery (see bench/README.md).
_STORED_COLUMNS = ("status", "claimed_order_id", "processing_attempts")
_EVENT_ROW = (select(ProviderEvent.id, ProviderEvent.status, ProviderEvent.claimed_order_id,
                     ProviderEvent.processing_attempts)
              .where(ProviderEvent.provider == bindparam("provider"), ProviderEvent.event_key == bindparam("event_key"))
              .with_for_update())
_EVENT_OUTCOME = (update(ProviderEvent.__table__).where(ProviderEvent.__table__.c.id == bindparam("event_id"))
                  .values(status=bindparam("outcome"), order_pk=bindparam("order"), error=bindparam("problem"),
                          processed_at=bindparam("at", type_=ProviderEvent.__table__.c.processed_at.type),
                          next_attempt_at=bindparam("retry_at", type_=ProviderEvent.__table__.c.next_attempt_at.type),
                          processing_attempts=ProviderEvent.__table__.c.processing_attempts + 1))


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
    # A repeat needs only its key made storable; the whole notice is cleaned for the write path alone.
    result = _repeat_of(delivery.provider, _clean(notice.event_key))
    if result is None:
        result = _ingest_committed(_storable_delivery(delivery), _storable(notice), settings, now)
    metrics.record_webhook(delivery.provider, result.outcome)
    return result


def settled_repeat(provider: str, event_key: str) -> IngestResult | None:
    """The duplicate answer to a repeat of an event settled before, counted as ingest counts it; None when the
    event is new or failed, and always on PostgreSQL, where the event's claim answers a repeat itself. For
    blueprints/webhook_reader.py, which receives webhooks in front of Flask."""
    result = _already_settled(provider, _clean(event_key))
    if result is not None:
        metrics.record_webhook(provider, result.outcome)
    return result


# What settled_repeat found for the delivery being received, so that its ingest does not ask the database again.
_LOOKED_UP: ContextVar[tuple[str, str, Exception | None] | None] = ContextVar("looked_up", default=None)


@contextmanager
def looked_up(provider: str, event_key: str, failure: Exception | None = None) -> Iterator[None]:
    """Within: settled_repeat found nothing settled under this key, so an ingest of the same key goes straight to
    the write path, which decides under its lock as always; or the look-up or a first receipt of the delivery
    raised `failure` (the database down), which an ingest of the same key raises again instead of retrying."""
    token = _LOOKED_UP.set((provider, _clean(event_key), failure))
    try:
        yield
    finally:
        _LOOKED_UP.reset(token)


def _repeat_of(provider: str, event_key: str) -> IngestResult | None:
    looked = _LOOKED_UP.get()
    if looked is None or looked[:2] != (provider, event_key):
        return _already_settled(provider, event_key)
    if looked[2] is not None:
        raise looked[2]
    return None


# A repeat is a read: the event's row looked up by its unique key before any write transaction is opened.
_SEEN_SQL = "SELECT id, status, claimed_order_id FROM provider_events WHERE provider = ? AND event_key = ?"


def _already_settled(provider: str, event_key: str) -> IngestResult | None:
    """The duplicate answer for an event stored and settled before; None when it is new or failed (then the write
    transaction decides, under its lock, exactly as without this look-up: a failed event is processed again).
    Not asked where the event's claim reads the stored event in the same statement (driver.claim_finds_stored)."""
    if claim_finds_stored():
        return None
    row = fetch_one(_SEEN_SQL, (provider, event_key))
    if row is None or row[1] in RETRYABLE:
        return None
    return IngestResult(row[0], DUPLICATE, row[2])


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
        with write_unit():
            result = _ingest_once(delivery, notice, settings, now)
    except DATABASE_DOWN:
        raise
    except Exception as exc:
        # Bugs and data surprises must not make the provider retry forever:
        # the event is stored as failed (so it is never lost) and support replays it.
        logger.exception("processing a %s event failed", delivery.provider,
                         extra={"event_key": notice.event_key, "order_id": notice.order_id})
        error = _clean(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_LENGTH]
        return IngestResult(_store_failed(delivery, notice, error, settings, now), ERROR, notice.order_id)
    # Logged once committed: the SQLite writer lock is held until then.
    if not result.duplicate:
        logger.info("%s event %s: %s", delivery.provider, notice.event_type, result.outcome,
                    extra={"order_id": notice.order_id, "event_id": result.event_id})
    return result


def _ingest_once(delivery: Delivery, notice: Notice, settings: Settings, now: datetime) -> IngestResult:
    event = _claim_event(delivery, notice, now)
    if isinstance(event, IngestResult):
        return event
    order = _find_order(delivery.provider, notice)
    settlement = settle.apply(event.id, delivery.provider, notice, order, settings, now)
    _record_outcome(event.id, settlement.outcome, order, settlement.problem and _clean(settlement.problem),
                    processed_at=now)
    return IngestResult(event.id, settlement.outcome, order.order_id if order is not None else notice.order_id)


def _claim_event(delivery: Delivery, notice: Notice, now: datetime) -> _StoredEvent | IngestResult:
    """Store the delivery as a new event to process; else the event stored before, to process again when its
    processing failed, or the duplicate answer."""
    new_id, stored = insert_or_find(ProviderEvent, _event_values(delivery, notice, now), ["provider", "event_key"],
                                    _STORED_COLUMNS)
    if new_id is not None:
        return _StoredEvent(new_id, delivery.provider)
    if stored is None or stored["status"] in RETRYABLE:
        # Committed while the claim waited for it (so not in its snapshot), or failed: read again under the row's
        # lock, where a concurrent retry of a failed event waits for the first one's outcome.
        stored = _locked_event_row(delivery.provider, notice.event_key)
        if stored["status"] in RETRYABLE:
            return _StoredEvent(stored["id"], delivery.provider, stored["processing_attempts"])
    return IngestResult(stored["id"], DUPLICATE, stored["claimed_order_id"])


def _locked_event_row(provider: str, event_key: str) -> dict[str, Any]:
    return fetch_row(write_connection(), _EVENT_ROW, {"provider": provider, "event_key": event_key})


def _record_outcome(event_id: int, outcome: str, order: orders.OrderRow | None, problem: str | None,
                    processed_at: datetime | None, retry_at: datetime | None = None) -> None:
    write_later(_EVENT_OUTCOME, {
        "event_id": event_id, "outcome": outcome, "order": order.id if order is not None else None,
        "problem": problem, "at": processed_at, "retry_at": retry_at})
    # A caller may hold the event as an ORM object (admin replay does).
    expire_loaded(ProviderEvent, event_id)


def _store_failed(delivery: Delivery, notice: Notice, error: str, settings: Settings, now: datetime) -> int:
    """Keep the failed event, due for an automatic retry; if even its parsed fields cannot be stored, keep the
    raw body with its identity alone, so that an acknowledged event is never lost."""
    try:
        with write_unit():
            return _mark_failed(delivery, notice, error, settings, now)
    except DATABASE_DOWN:
        raise
    except Exception:
        logger.exception("a failed %s event could not be stored with its fields", delivery.provider,
                         extra={"event_key": notice.event_key})
    bare = Notice(event_key=notice.event_key[:200], event_type=notice.event_type[:64], action=notice.action,
                  details={"note": "stored without its parsed fields: see the raw body"})
    with write_unit():
        return _mark_failed(delivery, bare, error, settings, now)


def _mark_failed(delivery: Delivery, notice: Notice, error: str, settings: Settings, now: datetime) -> int:
    event = _claim_event(delivery, notice, now)
    if isinstance(event, IngestResult):
        # Settled since this delivery's transaction rolled back, by another delivery of the same event: its
        # outcome stands (marked failed, its retry would settle the paid order again and report a conflict).
        return event.event_id
    schedule = settings.event_retry_schedule
    retry_at = now + timedelta(seconds=schedule[event.attempts]) if event.attempts < len(schedule) else None
    _record_outcome(event.id, ERROR, None, error, processed_at=None, retry_at=retry_at)
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


def _find_order(provider: str, notice: Notice) -> orders.OrderRow | None:
    """The order by the provider's own payment id when it is ours, else by the orderId the event names.

    A refund goes to the order its payment settled, however that payment was matched (support may have
    assigned it to an order it did not name).
    """
    if notice.action == REFUNDED and notice.provider_payment_id:
        paid = settle.orders_paid_by(provider, notice.provider_payment_id)
        if paid:
            return orders.lock_order(paid[0])
    if notice.provider_ref:
        order = orders.lock_order_by_ref(provider, notice.provider_ref)
        if order is not None:
            return order
    return orders.lock_order(notice.order_id) if notice.order_id else None


def _clean(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(key)): _clean_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(item) for item in value]
    return value


def _storable(notice: Notice) -> Notice:
    """The notice with every text field storable as text (see _UNSTORABLE)."""
    texts = {name: _clean(value) for name in ("event_key", "event_type", "order_id", "provider_ref", "currency",
                                              "provider_payment_id")
             if isinstance(value := getattr(notice, name), str) and _UNSTORABLE.search(value)}
    return dataclasses.replace(notice, details=_clean_json(notice.details), **texts)


def _storable_delivery(delivery: Delivery) -> Delivery:
    return dataclasses.replace(delivery, headers=_clean_json(delivery.headers))


def read_notice(event: ProviderEvent, settings: Settings) -> Notice | None:
    """The stored event as a Notice with its stored identity and order, or None when it cannot be read back."""
    if event.provider not in registry.NAMES:
        return None
    try:
        # The body was authenticated when it was received; no signature is checked again (the token or
        # secret may have been rotated since, and the stored headers keep no Telegram secret).
        notice = registry.plugin(event.provider).read_stored(event, settings)
    except (GatewayError, ValueError, KeyError, TypeError) as exc:
        logger.warning("a stored event could not be read back: %s", type(exc).__name__, extra={"event_id": event.id})
        return None
    if notice is None:
        return None
    # What was decided at receipt (identity, the order matched) stays as stored.
    return dataclasses.replace(notice, event_key=event.event_key, order_id=event.claimed_order_id)


def reprocess(event: ProviderEvent, settings: Settings, now: datetime) -> str:
    """The same path a provider's retry takes: ingest finds the failed event and processes it again."""
    notice = read_notice(event, settings)
    if notice is None:
        return f"skipped: no way to read back a {event.provider} {event.event_type} event"
    delivery = Delivery(provider=event.provider, body=event.body, headers=event.headers,
                        remote_addr=event.remote_addr, verification=event.verification)
    return ingest(delivery, notice, settings, now).outcome


_DUE_RETRIES = (select(ProviderEvent)
                .where(ProviderEvent.provider == bindparam("provider"), ProviderEvent.status == ERROR,
                       ProviderEvent.next_attempt_at <= bindparam("now", type_=ProviderEvent.next_attempt_at.type))
                .order_by(ProviderEvent.next_attempt_at).limit(RETRY_BATCH))
_GIVE_UP = (update(ProviderEvent.__table__)
            .where(ProviderEvent.__table__.c.id == bindparam("event_id"), ProviderEvent.__table__.c.status == ERROR)
            .values(next_attempt_at=None))


def retry_failed(provider: str, settings: Settings, now: datetime) -> int:
    """Process this provider's failed events again once their retry is due (the worker's periodic task).

    After the last step of EVENT_RETRY_SCHEDULE an event stays failed with no retry due: the console and
    GET /admin/events list it for a person, and /admin/orders/{orderId}/replay runs it again.
    """
    with transaction():
        due = list(db.session.execute(_DUE_RETRIES, {"provider": provider, "now": now}).scalars())
    settled = 0
    for event in due:
        outcome = reprocess(event, settings, now)
        if outcome.startswith("skipped"):
            with transaction():
                db.session.connection().execute(_GIVE_UP, {"event_id": event.id})
        settled += outcome not in (ERROR, DUPLICATE) and not outcome.startswith("skipped")
        logger.info("%s event retried: %s", provider, outcome, extra={"event_id": event.id, "provider": provider})
    return settled
