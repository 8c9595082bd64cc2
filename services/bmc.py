"""Buy Me a Coffee webhooks: verify, find the order the buyer named in their message, store and apply."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select

from services import inbox, orders
from services.db import db, transaction
from services.models import Order, ProviderEvent
from services.providers import bmc
from webhook_config import Settings


def authenticate(raw_body: bytes, header_value: str | None, settings: Settings) -> None:
    """Check x-signature-sha256 over the raw bytes; NotConfigured without a secret, SignatureInvalid if wrong."""
    with inbox.rejection_logged("Buy Me a Coffee webhook", bmc.PROVIDER, bool(header_value)):
        bmc.verify_signature(raw_body, header_value, settings.bmc_webhook_secret)


def receive_event(event: Any, delivery: inbox.Delivery, settings: Settings, now: datetime) -> inbox.IngestResult:
    """Store and apply an authenticated event; without a matching order it is kept as unmatched for support."""
    notice = bmc.notice_from_event(event, delivery.body, settings.bmc_currency)
    with transaction():
        order_id, how = match_order(notice)
    notice = dataclasses.replace(notice, order_id=order_id, details={**notice.details, "orderMatch": how})
    return inbox.ingest(delivery, notice, settings, now)


def match_order(notice: inbox.Notice) -> tuple[str | None, str]:
    """The orderId this payment is for, and how it was chosen; None when no candidate names one order for sure."""
    if notice.action == inbox.REFUNDED and notice.provider_payment_id:
        refunded = _order_paid_by(notice.provider_payment_id)
        if refunded is not None:
            return refunded, "the order this payment paid"
    candidates = notice.details.get("orderIdCandidates") or []
    if not candidates:
        return None, "no orderId in the message"
    known = {row.order_id: row for row in db.session.execute(
        select(Order.order_id, Order.provider, Order.status, Order.amount, Order.currency)
        .where(Order.order_id.in_(candidates))
    )}
    if not known:
        return None, "no existing order named in the message"
    ranked = [known[c] for c in candidates if c in known]
    awaiting = orders.PAID if notice.action == inbox.REFUNDED else orders.PENDING
    waiting = [row for row in ranked if row.provider == bmc.PROVIDER and row.status == awaiting]
    exact = [row for row in waiting if _same_terms(row, notice)]
    for group, how in ((exact, f"{awaiting} bmc order with this amount"), (waiting, f"{awaiting} bmc order"),
                       (ranked, "existing order")):
        if len(group) == 1:
            return group[0].order_id, f"the only {how} named in the message"
        if len(group) > 1:
            return None, f"ambiguous: several orders named ({', '.join(row.order_id for row in group)})"
    return None, "no existing order named in the message"


def _same_terms(row: Any, notice: inbox.Notice) -> bool:
    return notice.amount == row.amount and (notice.currency or "").upper() == row.currency


def _order_paid_by(payment_id: str) -> str | None:
    """The orderId an earlier applied event of this BMC payment settled (refunds name the same payment)."""
    return db.session.execute(
        select(Order.order_id).join(ProviderEvent, ProviderEvent.order_pk == Order.id)
        .where(ProviderEvent.provider == bmc.PROVIDER, ProviderEvent.provider_payment_id == payment_id,
               ProviderEvent.status == inbox.PROCESSED)
        .order_by(ProviderEvent.id).limit(1)
    ).scalar_one_or_none()
