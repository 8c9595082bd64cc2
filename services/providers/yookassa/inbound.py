"""YooKassa deliveries into core events. Notifications are unsigned, so each one is only a hint: it must come
from an allowed address, and the payment or refund it names is fetched back from the API; that object is
what is stored and applied. Reconciliation and refund replies store fetched objects under the same event
keys, so any path dedupes the others."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

import simplejson
from sqlalchemy import func, select

from services import events, metrics
from services.db import db, transaction
from services.errors import MalformedPayload, NotConfigured, ProviderRejected
from services.models import ProviderEvent
from services.notices import Delivery, IngestResult, Notice
from services.providers.base import RefundDraft, RefundOutcome
from services.providers.yookassa import protocol
from services.providers.yookassa.client import YooKassaClient
from services.providers.yookassa.protocol import PAYMENT, PROVIDER, REFUND
from webhook_config import Settings

logger = logging.getLogger(__name__)

# How a stored object came to be fetched (the event's verification, shown to support).
NOTIFIED = "address allowed; {kind} fetched from the API"
RECONCILED = "reconciled: {kind} fetched from the API"
REFUND_REPLY = "refund requested: the API's reply"
FORBIDDEN = "forbidden"


def authenticate(remote_addr: str | None, settings: Settings) -> None:
    """503 unless the shop is configured; 403 (logged) unless the client address is in YOOKASSA_ALLOWED_IPS."""
    if not (settings.yookassa_shop_id and settings.yookassa_secret_key):
        raise NotConfigured("YooKassa notifications are not accepted: YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY "
                            "are not configured.")
    if not protocol.address_allowed(remote_addr, settings.yookassa_allowed_ips):
        logger.warning("rejected a YooKassa notification from an address outside YOOKASSA_ALLOWED_IPS",
                       extra={"provider": PROVIDER, "remote_addr": remote_addr})
        metrics.record_webhook(PROVIDER, FORBIDDEN)
        raise protocol.AddressNotAllowed("Notifications are accepted only from YooKassa's addresses.")


def receive_notification(payload: Any, delivery: Delivery, settings: Settings, now: datetime,
                         client: YooKassaClient | None = None) -> IngestResult:
    """Fetch what the notification names and ingest that; the API down raises ProviderUnavailable (503)."""
    notification = protocol.parse_notification(payload)
    if notification.kind is None:
        return events.ingest(delivery, protocol.unhandled_notice(notification), settings, now)
    fetched = (client or YooKassaClient(settings)).get(notification.kind, notification.object_id)
    if notification.claimed_status != fetched.get("status"):
        logger.info("a YooKassa notification claims another status than the API's", extra={
            "provider": PROVIDER, "event": notification.event, "claimed": notification.claimed_status,
            "fetched": fetched.get("status")})
    verification = NOTIFIED.format(kind=notification.kind)
    return record(notification.kind, fetched, settings, now, verification, delivery, notification.event)


def record(kind: str, obj: dict[str, Any], settings: Settings, now: datetime, verification: str,
           source: Delivery | None = None, notified: str | None = None) -> IngestResult:
    """Ingest a payment or refund object fetched from the API; the stored body is that object."""
    try:
        notice = protocol.notice_from_object(kind, obj, notified)
    except MalformedPayload as exc:
        # The API's own answer, not the caller's body: a 502 (YooKassa redelivers), never a 400.
        raise ProviderRejected(f"YooKassa answered with an unreadable {kind}: {exc.message}") from None
    body = simplejson.dumps(obj, sort_keys=True, use_decimal=True).encode()
    delivery = Delivery(provider=PROVIDER, body=body, headers=source.headers if source else {},
                        remote_addr=source.remote_addr if source else None, verification=verification)
    return events.ingest(delivery, notice, settings, now)


def read_stored(event: ProviderEvent, settings: Settings) -> Notice | None:
    """A stored object read back for replay (it was fetched from the API when stored); None for an event
    about anything but a payment or refund."""
    kind = event.event_key.partition(":")[0]
    if kind not in (PAYMENT, REFUND):
        return None
    notified = (event.details or {}).get("notified")
    return protocol.notice_from_object(kind, json.loads(event.body, parse_float=Decimal), notified)


def refund(draft: RefundDraft, settings: Settings, now: datetime,
           client: YooKassaClient | None = None) -> RefundOutcome:
    """Refund the order's payment in full (POST /v3/refunds) and ingest the reply: a succeeded refund reverses
    the order now; a pending one is stored, and its notification or reconciliation settles it later."""
    client = client or YooKassaClient(settings)
    # A new key only once an earlier refund of this payment was canceled: until then a repeat (a retry
    # after a timeout, a second click) replays the same refund instead of asking for the money twice.
    attempt = canceled_refunds(draft.payment_id)
    key = protocol.idempotence_key(f"{REFUND}.{attempt}", draft.order_id)
    answer = client.create_refund(protocol.refund_request(draft.payment_id, draft.amount, draft.currency), key)
    result = record(REFUND, answer, settings, now, REFUND_REPLY)
    return RefundOutcome(refund_id=protocol.object_id(answer), status=str(answer.get("status")), result=result)


def canceled_refunds(payment_id: str) -> int:
    with transaction():
        return db.session.execute(
            select(func.count()).select_from(ProviderEvent)
            .where(ProviderEvent.provider == PROVIDER, ProviderEvent.provider_payment_id == payment_id,
                   ProviderEvent.event_type == f"{REFUND}.canceled")
        ).scalar_one()
