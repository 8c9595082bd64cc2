"""SBP payments settled by a T-Bank notification or, in the sandbox, by a simulated one."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from services import inbox
from services.db import db
from services.errors import MalformedPayload, NotConfigured, NotFound
from services.models import Order
from services.providers import tbank
from webhook_config import Settings


def receive_tbank_notification(payload: object, delivery: inbox.Delivery, settings: Settings,
                               now: datetime) -> inbox.IngestResult:
    """Verify a T-Bank notification's Token, then store and apply it."""
    if not (settings.tbank_terminal_key and settings.tbank_password):
        raise NotConfigured("T-Bank notifications are not configured (TBANK_TERMINAL_KEY, TBANK_PASSWORD).")
    tbank.verify_notification(payload, settings.tbank_terminal_key, settings.tbank_password)
    if not isinstance(payload, dict):
        raise MalformedPayload("The notification must be a JSON object.")
    return inbox.ingest(delivery, tbank.notice_from_notification(payload), settings, now)


def sandbox_pay(qrc_id: str, remote_addr: str | None, settings: Settings, now: datetime) -> inbox.IngestResult:
    """Simulate the gateway's "paid" notification for a sandbox QR, through the same ingest path."""
    order = db.session.execute(
        select(Order).where(Order.provider == "sbp", Order.provider_ref == qrc_id)
    ).scalar_one_or_none()
    if order is None:
        raise NotFound(f"No sandbox SBP payment with qrcId {qrc_id!r}.")
    notification = {"qrcId": qrc_id, "orderId": order.order_id, "status": "CONFIRMED",
                    "amount": format(order.amount, "f"), "currency": order.currency}
    delivery = inbox.Delivery(provider="sbp", body=json.dumps(notification).encode(), headers={},
                              remote_addr=remote_addr, verification="sandbox")
    notice = inbox.Notice(event_key=f"sandbox:{qrc_id}:CONFIRMED", event_type="CONFIRMED", action=inbox.PAID,
                          order_id=order.order_id, provider_ref=qrc_id, amount=order.amount,
                          currency=order.currency, provider_payment_id=qrc_id)
    return inbox.ingest(delivery, notice, settings, now)
