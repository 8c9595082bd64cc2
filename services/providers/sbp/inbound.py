"""SBP deliveries into core events: T-Bank notifications (Token check) and, in the sandbox, simulated ones."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from services import events
from services.db import db
from services.errors import MalformedPayload, NotConfigured, NotFound
from services.models import Order, ProviderEvent
from services.notices import IGNORE, PAID, Delivery, IngestResult, Notice
from services.providers.sbp import protocol
from webhook_config import Settings

SANDBOX = "sandbox"


def receive_tbank_notification(payload: object, delivery: Delivery, settings: Settings,
                               now: datetime) -> IngestResult:
    """Verify a T-Bank notification's Token, then store and apply it."""
    return events.ingest(delivery, authenticated_notice(payload, settings), settings, now)


def authenticated_notice(payload: object, settings: Settings) -> Notice:
    """What a T-Bank notification says, once its Token is verified (receive_tbank_notification ingests it as is)."""
    _authenticate(payload, settings)
    return protocol.notice_from_notification(payload)


def _authenticate(payload: object, settings: Settings) -> None:
    if not (settings.tbank_terminal_key and settings.tbank_password):
        raise NotConfigured("T-Bank notifications are not configured (TBANK_TERMINAL_KEY, TBANK_PASSWORD).")
    protocol.verify_notification(payload, settings.tbank_terminal_key, settings.tbank_password)
    if not isinstance(payload, dict):
        raise MalformedPayload("The notification must be a JSON object.")


def sandbox_pay(qrc_id: str, remote_addr: str | None, settings: Settings, now: datetime) -> IngestResult:
    """Simulate the gateway's "paid" notification for a sandbox QR, through the same ingest path."""
    order = db.session.execute(
        select(Order).where(Order.provider == protocol.PROVIDER, Order.provider_ref == qrc_id)
    ).scalar_one_or_none()
    if order is None:
        raise NotFound(f"No sandbox SBP payment with qrcId {qrc_id!r}.")
    notification = {"qrcId": qrc_id, "orderId": order.order_id, "status": "CONFIRMED",
                    "amount": format(order.amount, "f"), "currency": order.currency}
    delivery = Delivery(provider=protocol.PROVIDER, body=json.dumps(notification).encode(), headers={},
                        remote_addr=remote_addr, verification=SANDBOX)
    notice = Notice(event_key=f"sandbox:{qrc_id}:CONFIRMED", event_type="CONFIRMED", action=PAID,
                    order_id=order.order_id, provider_ref=qrc_id, amount=order.amount,
                    currency=order.currency, provider_payment_id=qrc_id)
    return events.ingest(delivery, notice, settings, now)


def read_stored(event: ProviderEvent, settings: Settings) -> Notice:
    """A stored notification read back for replay (its Token was checked at receipt)."""
    payload = json.loads(event.body, parse_float=Decimal)
    if event.verification != SANDBOX:
        return protocol.notice_from_notification(payload)
    return Notice(event_key=event.event_key, event_type=event.event_type,
                  action=protocol.STATUS_ACTIONS.get(event.event_type, IGNORE),
                  provider_ref=payload.get("qrcId"), amount=event.amount, currency=event.currency,
                  provider_payment_id=event.provider_payment_id)
