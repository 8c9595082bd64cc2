"""Support and operator actions: replay an order, assign a payment, resend a message, replay a dead delivery.

Each action is audited in the same transaction as the change it makes, and is safe to repeat.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import func, or_, select, update

from services import audit, cryptobot, fulfilment, inbox, orders, outbox, telegram
from services.db import db, transaction
from services.errors import GatewayError, NotFound
from services.models import Order, OutboxMessage, ProviderEvent
from services.providers import bmc, tbank
from services.worker.runtime import DEAD, PENDING
from webhook_config import Settings

logger = logging.getLogger(__name__)

ASSIGNABLE = frozenset({inbox.UNMATCHED, inbox.MISMATCH, inbox.CONFLICT})


class ActionConflict(GatewayError):
    """The action does not fit the current state (already done elsewhere, wrong kind, mismatching money)."""

    status = 409
    code = "conflict"


def _stored_json(event: ProviderEvent) -> Any:
    """The stored body parsed as the webhook parsed it: numbers with a fraction as exact Decimals."""
    return json.loads(event.body, parse_float=Decimal)


def _sbp_notice(event: ProviderEvent, settings: Settings) -> inbox.Notice:
    payload = _stored_json(event)
    if event.verification != "sandbox":
        return tbank.notice_from_notification(payload)
    return inbox.Notice(event_key=event.event_key, event_type=event.event_type,
                        action=tbank.STATUS_ACTIONS.get(event.event_type, inbox.IGNORE),
                        provider_ref=payload.get("qrcId"), amount=event.amount, currency=event.currency,
                        provider_payment_id=event.provider_payment_id)


def _bmc_notice(event: ProviderEvent, settings: Settings) -> inbox.Notice:
    return bmc.notice_from_event(_stored_json(event), event.body, settings.bmc_currency)


# The readers below parse a body that was authenticated when it was received and check no signature
# again: the token or secret may have been rotated since, and the stored headers keep no Telegram secret.

def _cryptobot_notice(event: ProviderEvent, settings: Settings) -> inbox.Notice:
    return cryptobot.notice_from_body(_stored_json(event), event.verification)


def _telegram_notice(event: ProviderEvent, settings: Settings) -> inbox.Notice | None:
    # Only payments and refunds: a pre-checkout query was answered in its webhook response, and its
    # stored event (ignored) is a note for support, not something to re-process.
    return telegram.payment_event(_stored_json(event))


# How to read a stored event's raw body back into a Notice, per provider: replay needs the event's
# meaning, which only the provider's parser knows. A provider missing here cannot be replayed, and its
# events are assignable only when they carry an amount and currency. A reader answers None for an event
# it does not replay.
NOTICE_READERS: dict[str, Callable[[ProviderEvent, Settings], inbox.Notice | None]] = {
    "sbp": _sbp_notice,
    "bmc": _bmc_notice,
    "cryptobot": _cryptobot_notice,
    "telegram": _telegram_notice,
}


def read_notice(event: ProviderEvent, settings: Settings) -> inbox.Notice | None:
    """The stored event as a Notice with its stored identity and order, or None when it cannot be read back."""
    reader = NOTICE_READERS.get(event.provider)
    if reader is None:
        return None
    try:
        notice = reader(event, settings)
    except (GatewayError, ValueError, KeyError, TypeError) as exc:
        logger.warning("a stored event could not be read back: %s", type(exc).__name__, extra={"event_id": event.id})
        return None
    if notice is None:
        return None
    # What was decided at receipt (identity, the order matched) stays as stored.
    return dataclasses.replace(notice, event_key=event.event_key, order_id=event.claimed_order_id)


@dataclass
class ReplayResult:
    order_id: str
    status: str
    events: list[dict[str, Any]] = field(default_factory=list)
    queued: int = 0


def replay_order(order_id: str, actor: str, settings: Settings, now: datetime) -> ReplayResult:
    """Re-run processing of the order's failed events, then re-run its fulfilment and announcements.

    Everything below is idempotent: processed events, granted fulfilments and queued messages are unique,
    so a replay only adds what is missing (e.g. after a bug fix, or once PANEL_TYPE or the merchant URL is set).
    """
    with transaction():
        order = orders.get_order(order_id)
        failed = list(db.session.execute(
            select(ProviderEvent).where(_of_order(order), ProviderEvent.status == inbox.ERROR)
            .order_by(ProviderEvent.id)
        ).scalars())
    result = ReplayResult(order_id=order.order_id, status=order.status)
    for event in failed:
        result.events.append({"eventId": event.id, "outcome": _reprocess(event, settings, now)})
    with transaction():
        order = orders.find_order(order_id, lock=True)
        before = _outbox_count(order)
        _refulfil(order, settings, now)
        result.queued = _outbox_count(order) - before
        result.status = order.status
        audit.record(actor, "order.replay", f"order:{order_id}", now, events=result.events, queued=result.queued)
    return result


def _of_order(order: Order):
    return or_(ProviderEvent.order_pk == order.id, ProviderEvent.claimed_order_id == order.order_id)


def _reprocess(event: ProviderEvent, settings: Settings, now: datetime) -> str:
    """The same path a provider's retry takes: ingest finds the failed event and processes it again."""
    notice = read_notice(event, settings)
    if notice is None:
        return f"skipped: no way to read back a {event.provider} {event.event_type} event"
    delivery = inbox.Delivery(provider=event.provider, body=event.body, headers=event.headers,
                              remote_addr=event.remote_addr, verification=event.verification)
    return inbox.ingest(delivery, notice, settings, now).outcome


def _refulfil(order: Order, settings: Settings, now: datetime) -> None:
    orders.announce(order, settings, now)
    if order.status == orders.PAID:
        fulfilment.grant(order, None, settings, now)
        if order.purchase_id and settings.panel_type:
            outbox.enqueue(outbox.PANEL, "panel.sync", f"panel:{order.order_id}:sync",
                           {"purchase_id": order.purchase_id, "notify": True}, now, order)
    elif order.status == orders.REFUNDED:
        fulfilment.reverse(order, None, settings, now)


def _outbox_count(order: Order) -> int:
    return db.session.execute(select(func.count()).where(OutboxMessage.order_pk == order.id)).scalar_one()


@dataclass(frozen=True)
class AssignResult:
    event_id: int
    order_id: str
    outcome: str
    status: str
    forced: str | None = None


def assign_event(event_id: int, order_id: str, force: bool, actor: str, settings: Settings,
                 now: datetime) -> AssignResult:
    """Settle an order with a stored payment that matched none (or not this one), through the usual fulfilment.

    The payment's provider, amount and currency must match the order; a mismatch is refused (409) unless
    `force`, which is recorded. Assigning again to the same order is a no-op; to another order, a conflict.
    """
    with transaction():
        event = db.session.get(ProviderEvent, event_id, with_for_update=True, populate_existing=True)
        if event is None:
            raise NotFound(f"No provider event with id {event_id}.")
        order = orders.find_order(order_id, lock=True)
        if order is None:
            raise NotFound(f"No order with orderId {order_id!r}.")
        if event.status == inbox.ASSIGNED:
            if event.order_pk == order.id:
                return AssignResult(event.id, order.order_id, "already_assigned", order.status)
            raise ActionConflict(f"Event {event_id} is already assigned to another order.")
        problem = _assignment_problem(event, order, settings)
        if problem and not force:
            raise ActionConflict(f"The payment does not match order {order_id}: {problem}. "
                                 "Assign with force to accept it anyway.")
        if not orders.change_status(order, orders.PAID, settings, now):
            raise ActionConflict(f"Order {order_id} is {order.status}; only a pending or expired order "
                                 "can be settled by a payment.")
        fulfilment.grant(order, event.id, settings, now)
        event.status, event.order_pk, event.processed_at = inbox.ASSIGNED, order.id, now
        audit.record(actor, "event.assign", f"event:{event.id}", now, orderId=order.order_id, forced=problem)
        logger.info("payment assigned to an order", extra={"event_id": event.id, "order_id": order.order_id})
        return AssignResult(event.id, order.order_id, "assigned", order.status, problem)


def _assignment_problem(event: ProviderEvent, order: Order, settings: Settings) -> str | None:
    if event.status not in ASSIGNABLE:
        raise ActionConflict(f"Event {event.id} is {event.status}; only unmatched, mismatched or conflicting "
                             "payments can be assigned.")
    notice = read_notice(event, settings)
    is_payment = notice.action == inbox.PAID if notice is not None else (
        event.amount is not None and bool(event.currency))
    if not is_payment:
        raise ActionConflict(f"Event {event.id} ({event.event_type}) is not a payment.")
    # The payment was made for something else, so its provider reference is not the order's: only money counts.
    claim = inbox.Notice(event_key=event.event_key, event_type=event.event_type, action=inbox.PAID,
                         amount=event.amount, currency=event.currency)
    return inbox.payment_mismatch(claim, order, event.provider)


def resend_notification(outbox_id: int, actor: str, now: datetime) -> int:
    """Queue a copy of a buyer notification as a new message (new dedupe key); returns the new outbox id."""
    with transaction():
        row = db.session.get(OutboxMessage, outbox_id)
        if row is None:
            raise NotFound(f"No outbox message with id {outbox_id}.")
        if row.channel != outbox.TELEGRAM or not row.kind.startswith("notify."):
            raise ActionConflict("Only buyer notifications can be resent; replay a dead delivery instead.")
        order = db.session.get(Order, row.order_pk) if row.order_pk is not None else None
        new_id = outbox.enqueue(outbox.TELEGRAM, row.kind, f"resend:{row.id}:{uuid.uuid4().hex}",
                                dict(row.payload), now, order)
        audit.record(actor, "outbox.resend", f"outbox:{row.id}", now, newOutboxId=new_id)
    return new_id


def replay_delivery(outbox_id: int, actor: str, now: datetime) -> OutboxMessage:
    """Put a dead-lettered message back in the queue, due now, with a fresh retry schedule.

    The attempt counter restarts because the worker dead-letters a row whose count is past the schedule
    without trying it; the earlier attempts stay in delivery_attempts and their count goes to the audit log.
    """
    with transaction():
        row = db.session.get(OutboxMessage, outbox_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFound(f"No outbox message with id {outbox_id}.")
        if row.status != DEAD:
            raise ActionConflict(f"Delivery {outbox_id} is {row.status}; only dead-lettered deliveries "
                                 "can be replayed.")
        audit.record(actor, "outbox.replay", f"outbox:{row.id}", now, channel=row.channel, kind=row.kind,
                     previousAttempts=row.attempts, lastError=row.last_error)
        row.status, row.next_attempt_at, row.attempts = PENDING, now, 0
        row.lease_until = row.lease_owner = None
    return row


def retry_dead(channel: str | None, actor: str, now: datetime) -> int:
    """Replay every dead-lettered message (of one channel); returns how many were queued again."""
    with transaction():
        query = select(OutboxMessage.id).where(OutboxMessage.status == DEAD)
        if channel:
            query = query.where(OutboxMessage.channel == channel)
        ids = list(db.session.execute(query.with_for_update()).scalars())
        if ids:
            db.session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.status == DEAD)
                .values(status=PENDING, next_attempt_at=now, attempts=0, lease_until=None, lease_owner=None)
                .execution_options(synchronize_session=False))
        audit.record(actor, "outbox.retry_dead", f"outbox:{channel or '*'}", now, ids=ids)
    return len(ids)
