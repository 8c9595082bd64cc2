"""What support reads: order search, an order's full timeline, and the events that need a person."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from services import audit, outbox
from services.db import db, reading, transaction
from services.models import DeliveryAttempt, Fulfilment, Order, OutboxMessage, ProviderEvent, Purchase
from services.money import normalized
from services.notices import CONFLICT, ERROR, MISMATCH, NEEDS_REVIEW, UNMATCHED
from services.orders import get_order

SEARCH_LIMIT = 50
CORE_CHANNEL_LABELS = {outbox.MERCHANT: "merchant delivery", outbox.PANEL: "panel call"}


def channel_labels() -> dict[str, str]:
    """The console's name for each outbox channel."""
    return {outbox.buyer_channel(): "notification", **CORE_CHANNEL_LABELS}


def search_orders(query: str, limit: int = SEARCH_LIMIT) -> list[Order]:
    """Orders by exact orderId, by buyer Telegram id (digits) or by buyer e-mail; newest first."""
    query = query.strip()
    if not query:
        return []
    conditions = [Order.order_id == query]
    if query.isdigit() and len(query) <= 18:
        conditions.append(Order.telegram_id == int(query))
    if "@" in query:
        conditions.append(func.lower(Order.buyer_email) == query.lower())
    with transaction():
        return list(db.session.execute(
            select(Order).where(or_(*conditions)).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
        ).scalars())


def list_orders(status: str | None, limit: int) -> list[Order]:
    """The newest orders, optionally of one status."""
    statement = select(Order).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    if status:
        statement = statement.where(Order.status == status)
    with transaction():
        return list(db.session.execute(statement).scalars())


def needs_review(limit: int = 100) -> list[ProviderEvent]:
    """Events support must look at: unmatched payments, mismatches, conflicts and processing failures."""
    with transaction():
        return list(db.session.execute(
            select(ProviderEvent).where(ProviderEvent.status.in_(sorted(NEEDS_REVIEW)))
            .order_by(ProviderEvent.received_at.desc(), ProviderEvent.id.desc()).limit(limit)
        ).scalars())


# What support is told about an event that carries no error text of its own.
_SUPPORT_REASONS = {
    UNMATCHED: "No order matches this payment: assign it to the order it pays for.",
    CONFLICT: "A payment for an order that was already settled: refund it, or assign it to another order.",
    MISMATCH: "The payment does not match its order.",
    ERROR: "Processing failed.",
}
_SUPPORT_COLUMNS = (ProviderEvent.id, ProviderEvent.provider, ProviderEvent.event_type, ProviderEvent.status,
                    ProviderEvent.amount, ProviderEvent.currency, ProviderEvent.received_at,
                    ProviderEvent.claimed_order_id.label("order_id"), ProviderEvent.error)


def events_for_support(status: str | None, limit: int, before: int | None) -> dict[str, Any]:
    """The events that need a person (of one status, or all such), newest first, `limit` per page.

    `before` continues after the event with that id (`next_before` of the previous page, None on the last).
    """
    statuses = [status] if status else sorted(NEEDS_REVIEW)
    statement = (select(*_SUPPORT_COLUMNS).where(ProviderEvent.status.in_(statuses))
                 .order_by(ProviderEvent.received_at.desc(), ProviderEvent.id.desc()).limit(limit + 1))
    if before is not None:
        cursor = select(ProviderEvent.received_at).where(ProviderEvent.id == before).scalar_subquery()
        statement = statement.where(or_(ProviderEvent.received_at < cursor,
                                        and_(ProviderEvent.received_at == cursor, ProviderEvent.id < before)))
    with reading() as connection:
        rows = [row._asdict() for row in connection.execute(statement)]
    for row in rows:
        row["reason"] = row.pop("error") or _SUPPORT_REASONS.get(row["status"], row["status"])
    page = rows[:limit]
    return {"events": page, "next_before": page[-1]["id"] if len(rows) > limit else None}


def order_timeline(order_id: str) -> dict[str, Any]:
    """The order and everything that happened to it, oldest first: events, fulfilments, messages, staff actions."""
    with transaction():
        order = get_order(order_id)
        purchase = db.session.get(Purchase, order.purchase_id) if order.purchase_id else None
        events = list(db.session.execute(
            select(ProviderEvent).where(or_(ProviderEvent.order_pk == order.id,
                                            ProviderEvent.claimed_order_id == order.order_id))
            .order_by(ProviderEvent.received_at, ProviderEvent.id)).scalars())
        fulfilments = list(db.session.execute(
            select(Fulfilment).where(Fulfilment.order_pk == order.id).order_by(Fulfilment.id)).scalars())
        messages = list(db.session.execute(
            select(OutboxMessage).where(OutboxMessage.order_pk == order.id).order_by(OutboxMessage.id)).scalars())
        attempts = _attempts_by_message([message.id for message in messages])
        targets = [f"order:{order.order_id}", *(f"event:{e.id}" for e in events),
                   *(f"outbox:{m.id}" for m in messages)] + ([f"purchase:{purchase.id}"] if purchase else [])
        actions = audit.entries_for(targets)
    entries = [_created(order)]
    entries += [_event(event) for event in events]
    entries += [_fulfilment(item) for item in fulfilments]
    entries += [_message(message, attempts.get(message.id, [])) for message in messages]
    entries += [_action(entry) for entry in actions]
    entries.sort(key=lambda entry: (entry["at"], _ORDER[entry["kind"]]))
    return {"order": order, "purchase": purchase, "entries": entries}


_ORDER = {"created": 0, "event": 1, "fulfilment": 2, "notification": 3, "merchant delivery": 3,
          "panel call": 3, "outbox": 3, "audit": 4}


def _attempts_by_message(ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    grouped: dict[int, list[DeliveryAttempt]] = {}
    if ids:
        for attempt in db.session.execute(select(DeliveryAttempt).where(DeliveryAttempt.outbox_pk.in_(ids))
                                          .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)).scalars():
            grouped.setdefault(attempt.outbox_pk, []).append(attempt)
    return grouped


def _created(order: Order) -> dict[str, Any]:
    details = {"amount": f"{normalized(order.amount)} {order.currency}", "provider": order.provider,
               "telegramId": order.telegram_id, "email": order.buyer_email, "credit": order.credit,
               "subscription": (f"{order.subscription_plan} for {order.subscription_days} days"
                                if order.subscription_plan else None),
               "expiresAt": order.expires_at, "paidAt": order.paid_at}
    return {"at": order.created_at, "kind": "created", "title": "Order created", "status": "pending",
            "details": _present(details)}


def _event(event: ProviderEvent) -> dict[str, Any]:
    # What the provider said beyond money (a cancellation reason, a payer's note) first, the inbox's own after.
    details = {**(event.details or {}), "verification": event.verification,
               "amount": f"{normalized(event.amount)} {event.currency}" if event.amount is not None else None,
               "paymentId": event.provider_payment_id, "eventKey": event.event_key,
               "processingAttempts": event.processing_attempts, "processedAt": event.processed_at,
               "error": event.error, "automaticRetry": _automatic_retry(event)}
    return {"at": event.received_at, "kind": "event", "id": event.id,
            "title": f"{event.provider} {event.event_type}", "status": event.status,
            "needsReview": event.status in NEEDS_REVIEW, "details": _present(details)}


def _automatic_retry(event: ProviderEvent) -> str | datetime | None:
    """When a failed event is processed again by its worker, or that a person must now look at it."""
    if event.status != ERROR:
        return None
    return event.next_attempt_at or "none left: replay the order once the cause is fixed"


def _fulfilment(item: Fulfilment) -> dict[str, Any]:
    return {"at": item.created_at, "kind": "fulfilment", "id": item.id, "title": f"Fulfilment: {item.kind}",
            "status": "done", "details": _present(dict(item.details or {}))}


def _message(message: OutboxMessage, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    details = {"attempts": message.attempts, "nextAttemptAt": message.next_attempt_at if message.status == "pending"
               else None, "deliveredAt": message.delivered_at, "lastError": message.last_error,
               "text": message.payload.get("text") if message.channel == outbox.buyer_channel() else None}
    labels = channel_labels()
    return {"at": message.created_at, "kind": labels.get(message.channel, "outbox"), "id": message.id,
            "channel": message.channel, "messageKind": message.kind,
            "title": f"{labels.get(message.channel, message.channel).capitalize()}: {message.kind}",
            "status": message.status, "details": _present(details),
            "attempts": [{"number": a.number, "outcome": a.outcome, "statusCode": a.status_code, "error": a.error,
                          "at": a.started_at, "worker": a.worker} for a in attempts]}


def _action(entry: audit.AuditLog) -> dict[str, Any]:
    return {"at": entry.at, "kind": "audit", "id": entry.id, "title": f"{entry.action} by {entry.actor}",
            "status": entry.details.get("outcome", "recorded") if entry.details else "recorded",
            "details": _present({"target": entry.target, **(entry.details or {})})}


def _present(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if value not in (None, "", [], {})}


def as_plain(value: Any) -> Any:
    """A timeline (or part of one) with datetimes as ISO text, for JSON output."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: as_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_plain(item) for item in value]
    return value
