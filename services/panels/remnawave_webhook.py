"""The Remnawave panel's own webhooks (PROTOCOLS.md §8): verified, stored like any event, and turned into the
buyer's reminder when the panel says a subscription we created expires soon or has expired.

The panel sends no event id, so a delivery is identified by the hash of its body; its retries
resend the same bytes. The reminder is queued after the event is stored, under a key of the same
hash: a duplicate (or a redelivery after a crash between the two commits) queues nothing more.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from services import events
from services.errors import MalformedPayload, NotConfigured
from services.notices import IGNORE, Delivery, IngestResult, Notice
from services.openapi import webhook
from services.panels import sync
from services.panels.remnawave import PANEL
from services.providers.signing import verify_hex_hmac
from webhook_config import Settings

PROVIDER = PANEL  # the name its events are stored under
SIGNATURE_HEADER = "X-Remnawave-Signature"
TIMESTAMP_HEADER = "X-Remnawave-Timestamp"
EVENT_TYPE_LIMIT = 64
_EXPIRES_IN = re.compile(r"user\.expires_in_(\d{1,4})_hours")

OPERATIONS = {("POST", "/webhook/remnawave"): webhook(
    "Remnawave panel event", SIGNATURE_HEADER,
    "Hex HMAC-SHA256 of the raw body, keyed with REMNAWAVE_WEBHOOK_SECRET (the panel's WEBHOOK_SECRET_HEADER).")}


def verify_signature(raw_body: bytes, header_value: str | None, secret: str) -> None:
    """Raise SignatureInvalid unless `header_value` is the body's HMAC under `secret`; NotConfigured without one."""
    if not secret:
        raise NotConfigured("Remnawave webhooks are not configured (REMNAWAVE_WEBHOOK_SECRET).")
    verify_hex_hmac(raw_body, header_value, secret.encode("utf-8"), SIGNATURE_HEADER)


def authenticate(raw_body: bytes, header_value: str | None, settings: Settings) -> None:
    """Check the signature over the raw bytes; a refusal is logged (never the secret) and answered 401."""
    with events.rejection_logged("Remnawave webhook", PROVIDER, bool(header_value)):
        verify_signature(raw_body, header_value, settings.remnawave_webhook_secret)


def hours_left(event: dict[str, Any]) -> int | None:
    """For an "expires soon" or "expired" event, the hours until expiry (0 or less: expired); else None.

    Before 2.8.0 the hours are in the event's name; since, `user.expiration` carries them signed in
    `meta.expiration`.
    """
    name = event.get("event")
    if name in ("user.expired", "user.expired_24_hours_ago"):
        return 0 if name == "user.expired" else -24
    match = _EXPIRES_IN.fullmatch(name) if isinstance(name, str) else None
    if match:
        return int(match.group(1))
    meta = event.get("meta")
    value = meta.get("expiration") if name == "user.expiration" and isinstance(meta, dict) else None
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and value == int(value):
        return int(value)
    return None


def notice_from_event(event: Any, raw_body: bytes) -> Notice:
    """The event for the inbox: identified by its body's hash, applied to no order (action IGNORE)."""
    if not isinstance(event, dict):
        raise MalformedPayload("The body must be a JSON object.")
    data = event.get("data")
    username = data.get("username") if isinstance(data, dict) else None
    scope = event.get("scope")
    details: dict[str, Any] = {"scope": scope[:32] if isinstance(scope, str) else None,
                               "username": username[:64] if isinstance(username, str) else None}
    hours = hours_left(event)
    if hours is not None:
        details["hoursLeft"] = hours
    return Notice(event_key=f"sha256:{hashlib.sha256(raw_body).hexdigest()}",
                  event_type=str(event.get("event") or "unknown")[:EVENT_TYPE_LIMIT], action=IGNORE, details=details)


def receive_event(event: Any, delivery: Delivery, settings: Settings, now: datetime) -> IngestResult:
    """Store an authenticated event (filed under the buyer's order when the user is ours), then remind the buyer."""
    notice = notice_from_event(event, delivery.body)
    username = notice.details["username"]
    owner = sync.owner_of(username) if username else None
    if owner is not None:
        notice = dataclasses.replace(notice, order_id=owner.order_id)
    result = events.ingest(delivery, notice, settings, now)
    hours = notice.details.get("hoursLeft")
    if owner is not None and hours is not None:
        sync.remind_expiry(owner, hours, f"panel:{PROVIDER}:{notice.event_key}:reminder", settings, now)
    return result
