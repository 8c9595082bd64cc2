"""YooKassa API v3 wire format: notifications, payment and refund objects as Notices, request bodies,
idempotence keys, the source-address check and the API's error bodies (PROTOCOLS.md §7).

Pure functions: no I/O, no database. YooKassa signs nothing, so a notification only names an object;
what the gateway acts on is always the object fetched back from the API.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.errors import GatewayError, MalformedPayload, NotConfigured, ProviderRejected, ProviderUnavailable
from services.money import parse_decimal
from services.notices import CANCELLED, IGNORE, PAID, REFUNDED, Notice
from services.providers.base import PaymentDraft
from services.schemas import ORDER_ID_PATTERN
from webhook_config import IPNetwork

PROVIDER = "yookassa"
CURRENCY = "RUB"
PAYMENT, REFUND = "payment", "refund"
PAYMENT_METHODS = ("bank_card", "sbp")
# The key our orderId travels under in a payment's metadata (echoed in the payment and its notifications).
ORDER_KEY = "orderId"
MAX_DESCRIPTION = 128
PAYMENT_ACTIONS = {"succeeded": PAID, "canceled": CANCELLED}
REFUND_ACTIONS = {"succeeded": REFUNDED}
FINAL_PAYMENT_STATUSES = frozenset(PAYMENT_ACTIONS)
FINAL_REFUND_STATUSES = frozenset({"succeeded", "canceled"})
# Object ids go into API paths: only what YooKassa issues (36-character UUID-like ids) may pass.
OBJECT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$(?!\n)")
_STATUS = re.compile(r"^[a-z_]{1,32}$(?!\n)")
_EVENT = re.compile(r"^[a-z_]{1,32}\.[a-z_]{1,32}$(?!\n)")
_ORDER_ID = re.compile(ORDER_ID_PATTERN)
# Idempotence keys are UUIDs derived from the orderId: the same order always sends the same key, so a retry
# (timeout, 5xx, our restart) replays the first payment instead of creating a second one. A fixed namespace
# keeps the keys stable across releases.
_KEY_NAMESPACE = uuid.UUID("5b0f3c0e-6d1a-4f4e-9a53-7d2f0c9b8e11")


class AddressNotAllowed(GatewayError):
    """A notification came from outside YOOKASSA_ALLOWED_IPS: nothing unsigned from there is read."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Notification:
    """What a notification claims: the event and the object it names. Nothing here is trusted."""

    event: str
    kind: str | None
    object_id: str | None
    claimed_status: str | None


def address_allowed(address: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    """True when the client address lies in one of the allowed networks (IPv4-mapped IPv6 counts as IPv4)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def parse_notification(payload: Any) -> Notification:
    """The event and the object a notification names; MalformedPayload when it is not a notification."""
    if not isinstance(payload, dict) or payload.get("type") != "notification":
        raise MalformedPayload("A YooKassa notification is a JSON object with type \"notification\".")
    event, obj = payload.get("event"), payload.get("object")
    if not isinstance(event, str) or not _EVENT.match(event) or not isinstance(obj, dict):
        raise MalformedPayload("A YooKassa notification needs an event and an object.")
    kind = event.split(".")[0]
    object_id = obj.get("id")
    if kind not in (PAYMENT, REFUND):
        # payout.*, deal.*, payment_method.*: nothing the gateway sells through; kept, never fetched.
        return Notification(event, None, object_id if _valid_id(object_id) else None, None)
    if not _valid_id(object_id):
        raise MalformedPayload("The notification's object has no valid id.")
    status = obj.get("status")
    return Notification(event, kind, object_id, status if isinstance(status, str) else None)


def object_id(obj: Any) -> str:
    """The id of a payment or refund object; MalformedPayload when absent or not an id."""
    value = obj.get("id") if isinstance(obj, dict) else None
    if not _valid_id(value):
        raise MalformedPayload("A YooKassa object without a valid id.")
    return value


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(OBJECT_ID.match(value))


def _status(obj: dict[str, Any]) -> str:
    status = obj.get("status")
    if not isinstance(status, str) or not _STATUS.match(status):
        raise MalformedPayload("A YooKassa object without a valid status.")
    return status


def _money(obj: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    amount = obj.get("amount") if isinstance(obj.get("amount"), dict) else {}
    currency = amount.get("currency")
    return parse_decimal(amount.get("value")), currency.upper()[:10] if isinstance(currency, str) else None


def _cancellation(obj: dict[str, Any]) -> dict[str, Any]:
    details = obj.get("cancellation_details")
    if not isinstance(details, dict):
        return {}
    return {"cancellationParty": details.get("party"), "cancellationReason": details.get("reason")}


def _present(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if value is not None}


def notice_from_payment(payment: Any, notified: str | None = None) -> Notice:
    """A fetched payment as a Notice; the same payment in the same status always has the same event_key.

    Keyed by (payment id, fetched status): a notification whose payment is still pending is stored under
    its own key and never blocks the succeeded one that follows. `notified` is the event that made us look.
    """
    payment_id = object_id(payment)
    status = _status(payment)
    amount, currency = _money(payment)
    metadata = payment.get("metadata") if isinstance(payment.get("metadata"), dict) else {}
    claimed = metadata.get(ORDER_KEY)
    method = payment.get("payment_method") if isinstance(payment.get("payment_method"), dict) else {}
    details = _present({"status": status, "paid": payment.get("paid"), "test": payment.get("test"),
                        "paymentMethod": method.get("type"), "capturedAt": payment.get("captured_at"),
                        "notified": notified, **_cancellation(payment)})
    return Notice(
        event_key=f"{PAYMENT}:{payment_id}:{status}",
        event_type=f"{PAYMENT}.{status}",
        action=PAYMENT_ACTIONS.get(status, IGNORE),
        order_id=claimed if isinstance(claimed, str) and _ORDER_ID.match(claimed) else None,
        provider_ref=payment_id,
        amount=amount,
        currency=currency,
        provider_payment_id=payment_id,
        details=details,
    )


def notice_from_refund(refund: Any, notified: str | None = None) -> Notice:
    """A fetched refund as a Notice for the payment it belongs to, with the refund's own amount.

    provider_ref and provider_payment_id are the refunded payment's id, the same id its paid event carried:
    the inbox finds the order by it, and settle checks the refund against the payment that paid.
    """
    refund_id = object_id(refund)
    status = _status(refund)
    payment_id = refund.get("payment_id")
    if not _valid_id(payment_id):
        raise MalformedPayload("A YooKassa refund without a valid payment_id.")
    amount, currency = _money(refund)
    details = _present({"status": status, "refundId": refund_id, "paymentId": payment_id,
                        "notified": notified, **_cancellation(refund)})
    return Notice(
        event_key=f"{REFUND}:{refund_id}:{status}",
        event_type=f"{REFUND}.{status}",
        action=REFUND_ACTIONS.get(status, IGNORE),
        provider_ref=payment_id,
        amount=amount,
        currency=currency,
        provider_payment_id=payment_id,
        details=details,
    )


def notice_from_object(kind: str, obj: Any, notified: str | None = None) -> Notice:
    return notice_from_payment(obj, notified) if kind == PAYMENT else notice_from_refund(obj, notified)


def unhandled_notice(notification: Notification) -> Notice:
    """An event about something other than a payment or refund: stored and ignored, never fetched."""
    return Notice(event_key=f"{notification.event}:{notification.object_id or 'unknown'}"[:200],
                  event_type=notification.event, action=IGNORE, details={"note": "event not handled"})


def idempotence_key(operation: str, order_id: str) -> str:
    """The Idempotence-Key of one operation on one order (≤ 64 characters, as YooKassa requires)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{operation}:{order_id}"))


def amount_value(amount: Decimal) -> str:
    """YooKassa's amount.value: a string with exactly two decimals."""
    return format(amount.quantize(Decimal("0.01")), "f")


def payment_request(draft: PaymentDraft, return_url: str) -> dict[str, Any]:
    """POST /v3/payments: one-stage (capture), a redirect to YooKassa's page, our orderId in metadata."""
    body: dict[str, Any] = {
        "amount": {"value": amount_value(draft.amount), "currency": draft.currency},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": return_url},
        "description": draft.description[:MAX_DESCRIPTION],
        "metadata": {ORDER_KEY: draft.order_id},
    }
    if draft.payment_method:
        body["payment_method_data"] = {"type": draft.payment_method}
    return body


def refund_request(payment_id: str, amount: Decimal, currency: str) -> dict[str, Any]:
    return {"payment_id": payment_id, "amount": {"value": amount_value(amount), "currency": currency}}


def api_error(status: int, body: Any) -> GatewayError:
    """The gateway's error for a YooKassa error body (type "error", code, description)."""
    error = body if isinstance(body, dict) and body.get("type") == "error" else {}
    code = str(error.get("code") or f"HTTP {status}")[:64]
    description = str(error.get("description") or "no description")[:300]
    if code == "invalid_credentials" or status == 401:
        return NotConfigured("YooKassa refused the shop's credentials; YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY "
                             "are not configured properly.")
    if code in ("too_many_requests", "internal_server_error"):
        return ProviderUnavailable(f"YooKassa answered {code}: {description}")
    return ProviderRejected(f"YooKassa refused the request: {code}: {description}")
