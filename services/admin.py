"""Support and operator actions: replay an order, assign a payment, resend a message, replay a dead delivery.

Each action is audited in the same transaction as the change it makes, and is safe to repeat.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from services import audit, events, orders, outbox, settle
from services.db import db, transaction
from services.errors import ActionConflict, GatewayError, NotFound
from services.models import Order, OutboxMessage, ProviderEvent
from services.notices import ASSIGNED, CONFLICT, ERROR, MISMATCH, PAID, SETTLED, UNMATCHED, Notice
from services.outbox import DEAD, PENDING
from services.providers import registry
from services.providers.base import RefundDraft
from webhook_config import Settings

logger = logging.getLogger(__name__)

ASSIGNABLE = frozenset({UNMATCHED, MISMATCH, CONFLICT})


class RefundNotSupported(GatewayError):
    """The order's provider has no refund API: the money goes back some other way."""

    status = 422
    code = "refund_not_supported"


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
            select(ProviderEvent).where(_of_order(order), ProviderEvent.status == ERROR)
            .order_by(ProviderEvent.id)
        ).scalars())
    result = ReplayResult(order_id=order.order_id, status=order.status)
    for event in failed:
        result.events.append({"eventId": event.id, "outcome": events.reprocess(event, settings, now)})
    with transaction():
        order = orders.lock_order(order_id)
        before = _outbox_count(order)
        _refulfil(order, settings, now)
        result.queued = _outbox_count(order) - before
        result.status = order.status
        audit.record(actor, "order.replay", f"order:{order_id}", now, events=result.events, queued=result.queued)
    return result


def _of_order(order: Order | orders.OrderRow):
    return or_(ProviderEvent.order_pk == order.id, ProviderEvent.claimed_order_id == order.order_id)


def _refulfil(order: orders.OrderRow, settings: Settings, now: datetime) -> None:
    orders.announce(order, settings, now)
    if order.status == orders.PAID:
        settle.grant(order, None, settings, now)
        if order.purchase_id:
            outbox.enqueue_panel_sync(order, order.purchase_id, "sync", settings, now, notify=True)
    elif order.status == orders.REFUNDED:
        settle.reverse(order, None, settings, now)


def _outbox_count(order: orders.OrderRow) -> int:
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
        order = orders.lock_order(order_id)
        if order is None:
            raise NotFound(f"No order with orderId {order_id!r}.")
        if event.status == ASSIGNED:
            if event.order_pk == order.id:
                return AssignResult(event.id, order.order_id, "already_assigned", order.status)
            raise ActionConflict(f"Event {event_id} is already assigned to another order.")
        problem = _assignment_problem(event, order, settings)
        if problem and not force:
            raise ActionConflict(f"The payment does not match order {order_id}: {problem}. "
                                 "Assign with force to accept it anyway.")
        if not settle.pay(order, event.id, settings, now):
            raise ActionConflict(f"Order {order_id} is {order.status}; only a pending or expired order "
                                 "can be settled by a payment.")
        event.status, event.order_pk, event.processed_at = ASSIGNED, order.id, now
        audit.record(actor, "event.assign", f"event:{event.id}", now, orderId=order.order_id, forced=problem)
        logger.info("payment assigned to an order", extra={"event_id": event.id, "order_id": order.order_id})
        return AssignResult(event.id, order.order_id, "assigned", order.status, problem)


def _assignment_problem(event: ProviderEvent, order: orders.OrderRow, settings: Settings) -> str | None:
    if event.status not in ASSIGNABLE:
        raise ActionConflict(f"Event {event.id} is {event.status}; only unmatched, mismatched or conflicting "
                             "payments can be assigned.")
    notice = events.read_notice(event, settings)
    is_payment = notice.action == PAID if notice is not None else (
        event.amount is not None and bool(event.currency))
    if not is_payment:
        raise ActionConflict(f"Event {event.id} ({event.event_type}) is not a payment.")
    # The payment was made for something else, so its provider reference is not the order's: only money counts.
    claim = Notice(event_key=event.event_key, event_type=event.event_type, action=PAID,
                         amount=event.amount, currency=event.currency)
    return settle.payment_mismatch(claim, order, event.provider)


@dataclass(frozen=True)
class RefundResult:
    order_id: str
    status: str
    refund_id: str
    refund_status: str
    outcome: str | None
    event_id: int | None


def refund_order(order_id: str, actor: str, settings: Settings, now: datetime) -> RefundResult:
    """Refund a paid order in full through its provider's API.

    The reversal (ledger, subscription, order.refunded) is not done here: the provider's confirmation goes
    through the inbox like any refund event, so it happens once however many confirmations arrive.
    """
    with transaction():
        order = orders.get_order(order_id)
        plugin = registry.plugin(order.provider) if order.provider in registry.NAMES else None
        if plugin is None or plugin.refund is None:
            raise RefundNotSupported(f"Payments through {order.provider} cannot be refunded through its API.")
        if order.status != orders.PAID:
            raise ActionConflict(f"Order {order_id} is {order.status}; only a paid order can be refunded.")
        draft = _refund_draft(order)
    outcome = plugin.refund(draft, settings, now)
    result = outcome.result
    with transaction():
        status = orders.get_order(order_id).status
        audit.record(actor, "order.refund", f"order:{order_id}", now, refundId=outcome.refund_id,
                     refundStatus=outcome.status, outcome=result.outcome if result else None)
    logger.info("refund requested: %s", outcome.status, extra={"order_id": order_id, "provider": plugin.name})
    return RefundResult(order_id, status, outcome.refund_id, outcome.status, result.outcome if result else None,
                        result.event_id if result else None)


def _refund_draft(order: Order) -> RefundDraft:
    """The order and the provider payment that settled it (the latest settled event naming a payment)."""
    payment = db.session.execute(
        select(ProviderEvent.provider_payment_id, ProviderEvent.details)
        .where(ProviderEvent.order_pk == order.id, ProviderEvent.status.in_(SETTLED),
               ProviderEvent.provider_payment_id.is_not(None))
        .order_by(ProviderEvent.id.desc()).limit(1)
    ).one_or_none()
    if payment is None:
        raise ActionConflict(f"No payment of order {order.order_id} is on record; refund it at the provider.")
    return RefundDraft(order_id=order.order_id, amount=order.amount, currency=order.currency,
                       provider_ref=order.provider_ref, payment_id=payment.provider_payment_id,
                       payment_details=dict(payment.details or {}), telegram_id=order.telegram_id)


def resend_notification(outbox_id: int, actor: str, now: datetime) -> int:
    """Queue a copy of a buyer notification as a new message (new dedupe key); returns the new outbox id."""
    with transaction():
        row = db.session.get(OutboxMessage, outbox_id)
        if row is None:
            raise NotFound(f"No outbox message with id {outbox_id}.")
        if row.channel != outbox.buyer_channel() or not row.kind.startswith("notify."):
            raise ActionConflict("Only buyer notifications can be resent; replay a dead delivery instead.")
        order = db.session.get(Order, row.order_pk) if row.order_pk is not None else None
        new_id = outbox.enqueue(row.channel, row.kind, f"resend:{row.id}:{uuid.uuid4().hex}",
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
