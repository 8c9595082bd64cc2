"""Telegram Bot API wire format: the webhook's secret-token check, and payment updates in the gateway's terms.

Pure functions: no I/O, no database (PROTOCOLS.md §2)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from services.errors import MalformedPayload, NotConfigured, SignatureInvalid
from services.notices import PAID, REFUNDED, RENEWED, Notice

PROVIDER = "telegram"
STARS = "XTR"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TITLE_LIMIT, DESCRIPTION_LIMIT = 32, 255
# Ids and payloads we store go into columns of 128 characters; Telegram's own are far shorter.
MAX_FIELD_LENGTH = 128
MAX_STARS = 10**12
MAX_UNIX_TIME = 2**35
# A Stars subscription's charge after the first: its own event type, so support tells the two apart.
SUBSCRIPTION_RENEWAL = "subscription_renewal"
# createInvoiceLink's subscription_period: Telegram renews Stars subscriptions every 30 days, no other period.
SUBSCRIPTION_PERIOD_SECONDS = 2_592_000


# Event identities: a pre-checkout query by its id, a payment and its refund by the charge id.
def precheckout_key(query_id: str) -> str:
    return f"precheckout:{query_id}"


def charge_key(charge_id: str) -> str:
    return f"charge:{charge_id}"


def refund_key(charge_id: str) -> str:
    return f"refund:{charge_id}"


def verify_secret_token(header_value: str | None, configured_secret: str) -> None:
    """Raise NotConfigured without a configured secret, SignatureInvalid unless the header equals it."""
    if not configured_secret:
        raise NotConfigured("Telegram updates are not accepted: TELEGRAM_WEBHOOK_SECRET is not configured.")
    if not header_value or not hmac.compare_digest(header_value.encode(), configured_secret.encode()):
        raise SignatureInvalid(f"The {SECRET_HEADER} header is missing or wrong.")


@dataclass(frozen=True)
class PreCheckoutQuery:
    """A buyer is about to pay a Stars invoice; it must be answered ok or not within 10 seconds."""

    query_id: str
    order_id: str
    currency: str
    amount: Decimal
    payer_id: int | None


def update_id(update: Any) -> int:
    """The update's id; MalformedPayload unless the body is an object with an integer update_id."""
    if not isinstance(update, dict) or not _is_int(update.get("update_id")):
        raise MalformedPayload("A Telegram update is a JSON object with an integer update_id.")
    return update["update_id"]


def pre_checkout_query(update: dict[str, Any]) -> PreCheckoutQuery | None:
    """The update's pre_checkout_query, or None when it carries none."""
    query = update.get("pre_checkout_query")
    if query is None:
        return None
    query = _object(query, "pre_checkout_query")
    return PreCheckoutQuery(
        query_id=_text(query, "id"), order_id=_text(query, "invoice_payload"),
        currency=_text(query, "currency", 10), amount=_stars(query),
        payer_id=_user_id(query.get("from")),
    )


def payment_notice(update: dict[str, Any]) -> Notice | None:
    """A message's successful_payment (PAID, or RENEWED for a subscription's later charge) or
    refunded_payment (REFUNDED) as a Notice, else None.

    provider_ref stays unset: our orders' provider_ref is the invoice link's, not a charge id, so
    the inbox matches these by the orderId in invoice_payload.
    """
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    kinds = (("successful_payment", PAID, charge_key), ("refunded_payment", REFUNDED, refund_key))
    for field_name, action, key in kinds:
        if message.get(field_name) is not None:
            payment = _object(message[field_name], field_name)
            charge_id = _text(payment, "telegram_payment_charge_id")
            renewal = action == PAID and payment.get("is_recurring") is True and not payment.get("is_first_recurring")
            details = {"updateId": update["update_id"], "fromId": _user_id(message.get("from")),
                       "chatId": _user_id(message.get("chat"))}
            expires = _unix_time(payment.get("subscription_expiration_date"))
            recurring = payment.get("is_recurring") is True
            if recurring:
                details.update(isRecurring=True, isFirstRecurring=payment.get("is_first_recurring") is True,
                               subscriptionExpirationDate=expires.isoformat() if expires else None)
            return Notice(
                event_key=key(charge_id), event_type=SUBSCRIPTION_RENEWAL if renewal else field_name,
                action=RENEWED if renewal else action,
                order_id=_text(payment, "invoice_payload"), amount=_stars(payment),
                currency=_text(payment, "currency", 10), provider_payment_id=charge_id, details=details,
                payer_id=_user_id(message.get("from")) if recurring else None, renews_until=expires,
            )
    return None


def _unix_time(value: Any) -> datetime | None:
    if not _is_int(value) or not 0 < value < MAX_UNIX_TIME:
        return None
    return datetime.fromtimestamp(value, timezone.utc)


def refund_call(user_id: int, charge_id: str, stars: int, order_id: str) -> dict[str, Any]:
    """What a confirmed refundStarPayment call is stored as: its parameters and the payment it refunded."""
    return {"method": "refundStarPayment", "user_id": user_id, "telegram_payment_charge_id": charge_id,
            "total_amount": stars, "currency": STARS, "invoice_payload": order_id}


def refund_call_notice(call: Any) -> Notice:
    """A confirmed refundStarPayment as the Notice its refunded_payment update would give (the same event key,
    so whichever comes second is a duplicate)."""
    call = _object(call, "refundStarPayment")
    charge_id = _text(call, "telegram_payment_charge_id")
    return Notice(event_key=refund_key(charge_id), event_type="refundStarPayment", action=REFUNDED,
                  order_id=_text(call, "invoice_payload"), amount=_stars(call),
                  currency=_text(call, "currency", 10), provider_payment_id=charge_id,
                  details={"fromId": call["user_id"] if _is_int(call.get("user_id")) else None})


def webhook_answer(query_id: str, error_message: str | None = None) -> dict[str, Any]:
    """The answerPreCheckoutQuery call carried in the webhook response itself (no extra round trip)."""
    answer: dict[str, Any] = {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": query_id,
                              "ok": error_message is None}
    if error_message is not None:
        answer["error_message"] = error_message
    return answer


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{name} must be an object.")
    return value


def _text(obj: dict[str, Any], key: str, limit: int = MAX_FIELD_LENGTH) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise MalformedPayload(f"{key} must be a string of 1-{limit} characters.")
    return value


def _stars(obj: dict[str, Any]) -> Decimal:
    value = obj.get("total_amount")
    if not _is_int(value) or not 0 <= value < MAX_STARS:
        raise MalformedPayload("total_amount must be a whole number of Stars.")
    return Decimal(value)


def _user_id(user: Any) -> int | None:
    value = user.get("id") if isinstance(user, dict) else None
    return value if _is_int(value) else None


def clip(text: str, limit: int) -> str:
    """Text shortened to `limit` UTF-16 code units (how Telegram counts), ending in … when cut."""
    def units(value: str) -> int:
        return len(value.encode("utf-16-le")) // 2

    if units(text) <= limit:
        return text
    kept = []
    used = 0
    for char in text:
        used += units(char)
        if used > limit - 1:
            break
        kept.append(char)
    return "".join(kept).rstrip() + "…"
