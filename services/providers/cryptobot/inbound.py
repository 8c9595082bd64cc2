"""CryptoBot deliveries into core events: webhook updates (signature over the raw body) and invoices
fetched by reconciliation, both under the same event keys, so either one dedupes the other."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import simplejson

from services import events
from services.models import ProviderEvent
from services.notices import Delivery, IngestResult, Notice
from services.providers.cryptobot import protocol
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Older updates are still accepted (retries must never fail forever), only flagged.
STALE_AFTER = timedelta(minutes=15)
STALE = "valid; stale request_date"
# How an invoice fetched by reconciliation is stored: its body is the Invoice object, not a webhook update.
FETCHED = "fetched: getInvoices"


def authenticate(raw_body: bytes, header_value: str | None, settings: Settings) -> None:
    """Check crypto-pay-api-signature over the raw bytes; NotConfigured without a token, SignatureInvalid if wrong."""
    with events.rejection_logged("CryptoBot webhook", protocol.PROVIDER, bool(header_value)):
        protocol.verify_signature(raw_body, header_value, settings.cryptobot_token)


def receive_update(update: Any, delivery: Delivery, settings: Settings, now: datetime) -> IngestResult:
    """Store and apply an authenticated update; a stale request_date is recorded, never refused."""
    notice = notice_from_body(update, delivery.verification)
    sent = _stale_request_date(update, now)
    if sent is not None:
        logger.warning("CryptoBot update with a stale request_date", extra={
            "provider": protocol.PROVIDER, "event_key": notice.event_key, "request_date": sent.isoformat()})
        delivery = dataclasses.replace(delivery, verification=STALE)
    return events.ingest(delivery, notice, settings, now)


def fresh_notice(update: Any, now: datetime) -> Notice | None:
    """What receive_update stores an authenticated update as, when the update is fresh (then receive_update
    ingests this notice as it is); None for a stale one, whose receipt is flagged and logged, so that only
    receive_update handles it."""
    return None if _stale_request_date(update, now) else protocol.notice_from_update(update)


def _stale_request_date(update: Any, now: datetime) -> datetime | None:
    sent = protocol.request_date(update)
    return sent if sent is not None and now - sent > STALE_AFTER else None


def record_invoice(invoice: dict[str, Any], settings: Settings, now: datetime) -> IngestResult:
    """Ingest an invoice fetched with getInvoices (reconciliation); a webhook already stored makes it a duplicate."""
    body = simplejson.dumps(invoice, sort_keys=True, use_decimal=True).encode()
    delivery = Delivery(provider=protocol.PROVIDER, body=body, headers={}, remote_addr=None, verification=FETCHED)
    return events.ingest(delivery, notice_from_body(invoice, FETCHED), settings, now)


def notice_from_body(payload: Any, verification: str) -> Notice:
    """What an authenticated body means: an invoice reconciliation fetched, else a webhook update.

    Receipt and admin replay both read bodies through here, so a replayed event means what it meant then.
    """
    if verification == FETCHED:
        return protocol.notice_from_invoice(payload, "getInvoices")
    return protocol.notice_from_update(payload)


def read_stored(event: ProviderEvent, settings: Settings) -> Notice:
    """A stored body read back for replay; it was authenticated at receipt, and the token may have rotated since."""
    return notice_from_body(json.loads(event.body, parse_float=Decimal), event.verification)
