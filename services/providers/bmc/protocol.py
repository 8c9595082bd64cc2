"""Buy Me a Coffee: webhook signatures, the current and the legacy event format, orderIds in buyers' messages.

Payments are made on the creator's BMC page; the only link to our order is the orderId the buyer
writes in their message, so the parser collects candidates and inbound.py matches them. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from services.errors import MalformedPayload, NotConfigured
from services.money import normalized, parse_decimal
from services.notices import IGNORE, PAID, REFUNDED, Notice
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.signing import hmac_sha256_hex, verify_hex_hmac
from services.schemas import ORDER_ID_PATTERN
from webhook_config import Settings

PROVIDER = "bmc"
SIGNATURE_HEADER = "X-Signature-Sha256"
EVENT_HEADER = "X-Buymeacoffee-Event"
LEGACY_EVENT = "legacy.support"
PAYMENT_TYPES = frozenset({"donation.created", "extra_purchase.created", "commission_order.created",
                           "wishlist_payment.created"})
MEMBERSHIP_STARTED = "membership.started"
MAX_CANDIDATES = 200

_ORDER_ID = re.compile(ORDER_ID_PATTERN)
# Maximal runs of orderId characters (the pattern's own class); "order-43," or "(order-43)" yield "order-43".
_RUN = re.compile(ORDER_ID_PATTERN[1:ORDER_ID_PATTERN.index("]") + 1] + "+")
# Sentence punctuation that is also allowed inside an orderId ("order-43." ends a sentence).
_EDGE = "._:-"


def signature(raw_body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the raw body with the webhook's signing secret as given."""
    return hmac_sha256_hex(secret.encode("utf-8"), raw_body)


def verify_signature(raw_body: bytes, header_value: str | None, secret: str) -> None:
    """Raise SignatureInvalid unless `header_value` is the body's signature under `secret` (constant time)."""
    if not secret:
        raise NotConfigured("Buy Me a Coffee webhooks are not configured (BMC_WEBHOOK_SECRET).")
    verify_hex_hmac(raw_body, header_value, secret.encode("utf-8"), "x-signature-sha256")


def order_id_candidates(*texts: Any) -> tuple[str, ...]:
    """Every token in the texts that could be an orderId, in order of appearance, trailing punctuation trimmed."""
    found: dict[str, None] = {}
    for text in texts:
        if not isinstance(text, str):
            continue
        for run in _RUN.findall(text):
            for candidate in (run, run.rstrip(_EDGE), run.strip(_EDGE)):
                if _ORDER_ID.match(candidate):
                    found.setdefault(candidate, None)
            if len(found) >= MAX_CANDIDATES:
                return tuple(found)[:MAX_CANDIDATES]
    return tuple(found)


def flag(value: Any) -> bool:
    """BMC sends flags as booleans or as "true"/"false" strings."""
    return str(value).lower() == "true"


def _text(value: Any, limit: int = 2000) -> str | None:
    return None if value is None else str(value)[:limit]


def _action(event_type: str) -> str:
    if event_type in PAYMENT_TYPES or event_type == MEMBERSHIP_STARTED:
        return PAID
    if event_type.endswith(".refunded"):
        return REFUNDED
    return IGNORE


# data fields support staff need, as they are named in the details shown in the console.
_DETAIL_FIELDS = {
    "supporter_name": "supporterName", "supporter_email": "supporterEmail", "supporter_id": "supporterId",
    "message": "message", "support_note": "supportNote", "transaction_id": "transactionId", "id": "paymentId",
    "status": "status", "coffee_count": "coffeeCount", "coffee_price": "coffeePrice", "refunded": "refunded",
    "created_at": "createdAt", "refunded_at": "refundedAt", "object": "object", "support_type": "supportType",
    "extras": "extras", "extra": "extra", "membership_level_id": "membershipLevelId",
    "membership_level_name": "membershipLevelName", "psp_id": "pspId", "duration_type": "durationType",
    "started_at": "startedAt", "canceled_at": "canceledAt", "current_period_start": "currentPeriodStart",
    "current_period_end": "currentPeriodEnd", "paused": "paused", "canceled": "canceled",
}


def _details(data: dict[str, Any]) -> dict[str, Any]:
    details = {}
    for key, name in _DETAIL_FIELDS.items():
        value = data.get(key)
        if value is not None:
            details[name] = value if isinstance(value, (bool, int, list, dict)) else _text(value)
    return details


def _notice_from_current(event: dict[str, Any], raw_body: bytes) -> Notice:
    event_type = str(event["type"])[:64]
    data = event.get("data")
    if not isinstance(data, dict):
        # Only events that move money need data; any other type is still stored and acknowledged.
        if _action(event_type) != IGNORE:
            raise MalformedPayload("The event has no data object.")
        data = {}
    event_id = event.get("event_id")
    has_id = event_id is not None and str(event_id).strip() != ""
    # Every retry repeats event_id, while `attempt` changes the bytes: event_id is the identity.
    event_key = f"event:{str(event_id).strip()}" if has_id else f"body:{hashlib.sha256(raw_body).hexdigest()}"
    live = event.get("live_mode") is None or flag(event.get("live_mode"))
    action = _action(event_type)
    details = {"format": "current", "eventId": event_id, "attempt": event.get("attempt"),
               "liveMode": live, **_details(data)}
    if not live:
        action = IGNORE
        details["note"] = "test event (live_mode false): stored, not applied"
    elif action == IGNORE:
        details["note"] = f"{event_type} is stored for the record; it changes no order"
    amount = data.get("amount") if data.get("amount") is not None else data.get("total_amount")
    currency = data.get("currency")
    details["orderIdCandidates"] = list(order_id_candidates(data.get("message"), data.get("support_note")))
    return Notice(
        event_key=event_key[:200], event_type=event_type, action=action,
        amount=parse_decimal(amount), currency=str(currency).upper()[:10] if currency else None,
        provider_payment_id=_text(data.get("transaction_id") or data.get("psp_id") or data.get("id"), 128),
        details=details,
    )


def _notice_from_legacy(response: dict[str, Any], raw_body: bytes, currency: str) -> Notice:
    details = {"format": "legacy", "currencyAssumed": currency,
               "supporterName": _text(response.get("supporter_name")),
               "supporterEmail": _text(response.get("supporter_email")),
               "supportNote": _text(response.get("support_note")),
               "createdAt": _text(response.get("support_created_on")),
               "coffeeCount": _text(response.get("number_of_coffees")),
               "orderIdCandidates": list(order_id_candidates(response.get("support_note")))}
    # The legacy format has no event id: the exact signed bytes identify a delivery.
    return Notice(
        event_key=f"legacy:{hashlib.sha256(raw_body).hexdigest()}", event_type=LEGACY_EVENT, action=PAID,
        amount=parse_decimal(response.get("total_amount")), currency=currency,
        details={key: value for key, value in details.items() if value is not None},
    )


def notice_from_event(event: Any, raw_body: bytes, currency: str) -> Notice:
    """Translate a verified delivery of either format; order_id is left to the matcher (inbound.py).

    `currency` is the page's currency (BMC_CURRENCY), assumed for the legacy format, which names none.
    """
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return _notice_from_current(event, raw_body)
    if isinstance(event, dict) and isinstance(event.get("response"), dict):
        return _notice_from_legacy(event["response"], raw_body, currency)
    raise MalformedPayload("The body is neither a Buy Me a Coffee event nor a legacy response object.")


def instructions(draft: PaymentDraft, page_url: str) -> str:
    return (f"Pay {normalized(draft.amount)} {draft.currency} at {page_url} and write your order id "
            f"{draft.order_id} in the message to the creator, exactly as shown, so that the payment "
            f"is matched to your order.")


class BmcProvider:
    """Buy Me a Coffee: nothing to create remotely; the buyer pays on the page with the orderId in the message."""

    name = PROVIDER
    local = True

    def __init__(self, settings: Settings):
        if not settings.bmc_page_url or not settings.bmc_webhook_secret:
            raise NotConfigured("Buy Me a Coffee payments are not configured (BMC_PAGE_URL, BMC_WEBHOOK_SECRET).")
        self.page_url = settings.bmc_page_url
        self.currency = settings.bmc_currency

    def default_currency(self) -> str:
        return self.currency

    def currency_problem(self, currency: str) -> str | None:
        return None if currency == self.currency else f"Buy Me a Coffee payments are in {self.currency} (BMC_CURRENCY)"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        # BMC issues no payment id; the orderId itself is the order's reference.
        return CreatedPayment(provider_ref=draft.order_id, data={
            "payUrl": self.page_url, "instructions": instructions(draft, self.page_url)})
