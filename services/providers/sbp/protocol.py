"""SBP through T-Bank acquiring API v2 (PROTOCOLS.md §4): the Token signature and notifications as Notices.

Pure functions: no I/O, no database."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

from services.errors import MalformedPayload, SignatureInvalid
from services.notices import CANCELLED, EXPIRED, FAILED, IGNORE, PAID, REFUNDED, Notice

PROVIDER = "sbp"

# Only CONFIRMED grants access; the rest settle or close the order, or are noted only.
STATUS_ACTIONS = {
    "CONFIRMED": PAID,
    "REFUNDED": REFUNDED,
    "REJECTED": FAILED,
    "CANCELED": CANCELLED,
    "REVERSED": CANCELLED,
    "DEADLINE_EXPIRED": EXPIRED,
}


def _token_value(value: Any) -> str:
    # T-Bank concatenates booleans as lower-case JSON literals; str(True) would break the check.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def token(params: dict[str, Any], password: str) -> str:
    """The request/notification Token: root-level scalars (not Token) plus Password, sorted by key, SHA-256."""
    fields = {k: v for k, v in params.items() if k != "Token" and not isinstance(v, (dict, list)) and v is not None}
    fields["Password"] = password
    joined = "".join(_token_value(fields[key]) for key in sorted(fields))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def verify_notification(payload: Any, terminal_key: str, password: str) -> None:
    """Raise SignatureInvalid unless the notification carries our TerminalKey and a correct Token."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Token"), str):
        raise SignatureInvalid("The notification carries no Token.")
    expected = token(payload, password)
    if not hmac.compare_digest(expected.encode(), payload["Token"].lower().encode("utf-8", "replace")):
        raise SignatureInvalid("The notification Token does not match.")
    if not hmac.compare_digest(str(payload.get("TerminalKey", "")).encode(), terminal_key.encode()):
        raise SignatureInvalid("The notification is for another terminal.")


def _kopecks(value: Any) -> int:
    """Amount in whole kopecks: a JSON integer (or a string of digits); int() would truncate 100.5 to 100."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"Amount {value!r} is not a whole number of kopecks")


def notice_from_notification(payload: dict[str, Any]) -> Notice:
    """Translate a verified notification; dedupe identity is (PaymentId, Status)."""
    try:
        payment_id = str(payload["PaymentId"])
        status = str(payload["Status"])
        amount = Decimal(_kopecks(payload["Amount"])) / 100
    except (KeyError, TypeError, ValueError):
        raise MalformedPayload("The notification lacks PaymentId, Status or an integer Amount.") from None
    action = STATUS_ACTIONS.get(status, IGNORE)
    event_key = f"{payment_id}:{status}"
    if action == PAID and payload.get("Success") is not True:
        # Stored apart from the real CONFIRMED, which must not be taken for its repeat.
        action = IGNORE
        event_key = f"{event_key}:unsuccessful:{payload.get('ErrorCode')}"[:200]
    return Notice(
        event_key=event_key,
        event_type=status,
        action=action,
        order_id=str(payload["OrderId"]) if payload.get("OrderId") is not None else None,
        provider_ref=payment_id,
        amount=amount,
        currency="RUB",
        provider_payment_id=payment_id,
        details={"errorCode": payload.get("ErrorCode"), "success": payload.get("Success")},
    )


# T-Bank's OrderId holds at most 36 characters; ours may have 64. Notifications
# are matched by PaymentId first, so a shortened OrderId still finds its order.
TBANK_ORDER_ID_LENGTH = 36


def tbank_order_id(order_id: str) -> str:
    if len(order_id) <= TBANK_ORDER_ID_LENGTH:
        return order_id
    return f"{order_id[:27]}-{hashlib.sha256(order_id.encode()).hexdigest()[:8]}"
