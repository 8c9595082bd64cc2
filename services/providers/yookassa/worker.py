"""The yookassa worker's task: settle what a lost notification would have said, by asking the API.

Pending orders past RECONCILE_AFTER_SECONDS have their payment fetched, and so have expired orders a few times
after their deadline (LATE_PAYMENT_CHECKS); refunds that were pending when requested have their refund fetched.
Final answers are ingested under the notification's own event keys, so whichever of the two arrives second is
a duplicate.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from services import events, orders
from services.db import db, transaction
from services.errors import GatewayError, NotConfigured, ProviderUnavailable
from services.models import Order, ProviderEvent
from services.providers.yookassa import inbound
from services.providers.yookassa.client import YooKassaClient
from services.providers.yookassa.protocol import (FINAL_PAYMENT_STATUSES, FINAL_REFUND_STATUSES, PAYMENT, PROVIDER,
                                                  REFUND)
from webhook_config import Settings

logger = logging.getLogger(__name__)

MAX_REFUNDS_PER_TURN = 200
# A buyer has an hour to pay once YooKassa's page is open, so a payment may succeed after the order's deadline
# (the order, expired, still becomes paid); YooKassa redelivers a notification for a day. An expired order whose
# payment has no final answer yet is asked about this long after its deadline, at widening intervals.
LATE_PAYMENT_CHECKS = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2),
                       timedelta(hours=6), timedelta(hours=24))


class _Paused(Exception):
    """The API is down or refuses our credentials: nothing more to ask this turn."""


def reconcile(settings: Settings, now: datetime, client: YooKassaClient | None = None) -> int:
    """Fetch overdue pending payments and pending refunds; ingest the final ones. Returns how many were news."""
    client = client or YooKassaClient(settings)
    late = orders.expired_recently(PROVIDER, settings, now, LATE_PAYMENT_CHECKS)
    overdue = orders.overdue_pending(PROVIDER, settings, now) + _unanswered(PAYMENT, late, FINAL_PAYMENT_STATUSES)
    refunds = pending_refunds(now - timedelta(seconds=settings.reconcile_after_seconds))
    settled = 0
    try:
        for order_id, payment_id in overdue:
            settled += _settle(client, PAYMENT, payment_id, FINAL_PAYMENT_STATUSES, order_id, settings, now)
        for order_id, refund_id in refunds:
            settled += _settle(client, REFUND, refund_id, FINAL_REFUND_STATUSES, order_id, settings, now)
    except _Paused:
        pass
    logger.info("YooKassa reconciliation: %d payments and %d refunds checked, %d settled", len(overdue),
                len(refunds), settled, extra={"provider": PROVIDER, "checked": len(overdue) + len(refunds),
                                              "settled": settled})
    return settled


def _settle(client: YooKassaClient, kind: str, object_id: str, final: frozenset[str], order_id: str,
            settings: Settings, now: datetime) -> int:
    try:
        fetched = client.get(kind, object_id)
        if fetched.get("status") not in final:
            return 0
        result = inbound.record(kind, fetched, settings, now, inbound.RECONCILED.format(kind=kind))
    except (ProviderUnavailable, NotConfigured) as exc:
        logger.warning("YooKassa reconciliation paused: %s", exc.message, extra={"provider": PROVIDER})
        raise _Paused from None
    except GatewayError as exc:
        logger.warning("YooKassa %s lookup failed: %s", kind, exc.message,
                       extra={"provider": PROVIDER, "order_id": order_id})
        return 0
    return events.note_reconciled(result, PROVIDER, order_id)


def pending_refunds(cutoff: datetime) -> list[tuple[str, str]]:
    """(orderId, refund id) of refunds stored as pending before `cutoff` whose order is still paid and
    which no final answer (succeeded or canceled) has been stored for."""
    with transaction():
        rows = db.session.execute(
            select(Order.order_id, ProviderEvent.event_key)
            .join(Order, ProviderEvent.order_pk == Order.id)
            .where(ProviderEvent.provider == PROVIDER, ProviderEvent.event_type == f"{REFUND}.pending",
                   ProviderEvent.received_at <= cutoff, Order.status == orders.PAID)
            .order_by(ProviderEvent.id).limit(MAX_REFUNDS_PER_TURN)
        ).all()
    return _unanswered(REFUND, [(order_id, key.split(":")[1]) for order_id, key in rows], FINAL_REFUND_STATUSES)


def _unanswered(kind: str, asked: list[tuple[str, str]], final: frozenset[str]) -> list[tuple[str, str]]:
    """The (orderId, object id) pairs for which no final answer (from a notification or an earlier look) is stored."""
    final_keys = [f"{kind}:{object_id}:{status}" for _, object_id in asked for status in final]
    if not final_keys:
        return []
    with transaction():
        answered = set(db.session.execute(
            select(ProviderEvent.event_key).where(ProviderEvent.provider == PROVIDER,
                                                  ProviderEvent.event_key.in_(final_keys))
        ).scalars())
    return [(order_id, object_id) for order_id, object_id in asked
            if not any(f"{kind}:{object_id}:{status}" in answered for status in final)]
