"""Buy Me a Coffee deliveries into core events: verify, find the order the buyer named in their message,
store and apply."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services import events, orders, settle
from services.db import db, transaction
from services.models import Order, ProviderEvent
from services.notices import REFUNDED, Delivery, IngestResult, Notice
from services.providers.bmc import protocol
from webhook_config import Settings


def authenticate(raw_body: bytes, header_value: str | None, settings: Settings) -> None:
    """Check x-signature-sha256 over the raw bytes; NotConfigured without a secret, SignatureInvalid if wrong."""
    with events.rejection_logged("Buy Me a Coffee webhook", protocol.PROVIDER, bool(header_value)):
        protocol.verify_signature(raw_body, header_value, settings.bmc_webhook_secret)


def receive_event(event: Any, delivery: Delivery, settings: Settings, now: datetime) -> IngestResult:
    """Store and apply an authenticated event; without a matching order it is kept as unmatched for support."""
    return receive_notice(delivery, notice_of(event, delivery.body, settings), settings, now)


def notice_of(event: Any, raw_body: bytes, settings: Settings) -> Notice:
    """What an authenticated event says, before its order is matched (which does not change its event key)."""
    return protocol.notice_from_event(event, raw_body, settings.bmc_currency)


def receive_notice(delivery: Delivery, notice: Notice, settings: Settings, now: datetime) -> IngestResult:
    """receive_event once the event is read: match the order the buyer named, then store and apply."""
    with transaction():
        order_id, how = match_order(notice)
    notice = dataclasses.replace(notice, order_id=order_id, details={**notice.details, "orderMatch": how})
    return events.ingest(delivery, notice, settings, now)


def match_order(notice: Notice) -> tuple[str | None, str]:
    """The orderId this payment is for, and how it was chosen; None when no candidate names one order for sure."""
    if notice.action == REFUNDED and notice.provider_payment_id:
        # A refund names the payment; whatever order that payment settled (matched or assigned) is reversed.
        paid = settle.orders_paid_by(protocol.PROVIDER, notice.provider_payment_id)
        if paid:
            return paid[0], "the order this payment paid"
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
    awaiting = orders.PAID if notice.action == REFUNDED else orders.PENDING
    waiting = [row for row in ranked if row.provider == protocol.PROVIDER and row.status == awaiting]
    exact = [row for row in waiting if _same_terms(row, notice)]
    for group, how in ((exact, f"{awaiting} bmc order with this amount"), (waiting, f"{awaiting} bmc order"),
                       (ranked, "existing order")):
        if len(group) == 1:
            return group[0].order_id, f"the only {how} named in the message"
        if len(group) > 1:
            return None, f"ambiguous: several orders named ({', '.join(row.order_id for row in group)})"
    return None, "no existing order named in the message"


def _same_terms(row: Any, notice: Notice) -> bool:
    return notice.amount == row.amount and (notice.currency or "").upper() == row.currency


def read_stored(event: ProviderEvent, settings: Settings) -> Notice:
    """A stored body read back for replay (authenticated at receipt; the secret may have rolled since)."""
    return protocol.notice_from_event(json.loads(event.body, parse_float=Decimal), event.body, settings.bmc_currency)
