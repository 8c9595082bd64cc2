"""CryptoBot webhooks: verify the signature over the raw body, then store and apply the invoice update."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

import simplejson

from services import inbox
from services.providers import cryptobot
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Older updates are still accepted (retries must never fail forever), only flagged.
STALE_AFTER = timedelta(minutes=15)
STALE = "valid; stale request_date"
# How an invoice fetched by reconciliation is stored: its body is the Invoice object, not a webhook update.
FETCHED = "fetched: getInvoices"


def authenticate(raw_body: bytes, header_value: str | None, settings: Settings) -> None:
    """Check crypto-pay-api-signature over the raw bytes; NotConfigured without a token, SignatureInvalid if wrong."""
    with inbox.rejection_logged("CryptoBot webhook", cryptobot.PROVIDER, bool(header_value)):
        cryptobot.verify_signature(raw_body, header_value, settings.cryptobot_token)


def receive_update(update: Any, delivery: inbox.Delivery, settings: Settings, now: datetime) -> inbox.IngestResult:
    """Store and apply an authenticated update; a stale request_date is recorded, never refused."""
    notice = notice_from_body(update, delivery.verification)
    sent = cryptobot.request_date(update)
    if sent is not None and now - sent > STALE_AFTER:
        logger.warning("CryptoBot update with a stale request_date", extra={
            "provider": cryptobot.PROVIDER, "event_key": notice.event_key, "request_date": sent.isoformat()})
        delivery = dataclasses.replace(delivery, verification=STALE)
    return inbox.ingest(delivery, notice, settings, now)


def record_invoice(invoice: dict[str, Any], settings: Settings, now: datetime) -> inbox.IngestResult:
    """Ingest an invoice fetched with getInvoices (reconciliation); a webhook already stored makes it a duplicate."""
    body = simplejson.dumps(invoice, sort_keys=True, use_decimal=True).encode()
    delivery = inbox.Delivery(provider=cryptobot.PROVIDER, body=body, headers={}, remote_addr=None,
                              verification=FETCHED)
    return inbox.ingest(delivery, notice_from_body(invoice, FETCHED), settings, now)


def notice_from_body(payload: Any, verification: str) -> inbox.Notice:
    """What an authenticated body means: an invoice reconciliation fetched, else a webhook update.

    Receipt and admin replay both read bodies through here, so a replayed event means what it meant then.
    """
    if verification == FETCHED:
        return cryptobot.notice_from_invoice(payload, "getInvoices")
    return cryptobot.notice_from_update(payload)
