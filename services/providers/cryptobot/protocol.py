"""Crypto Pay (CryptoBot) wire format: the webhook signature, invoice updates as Notices, invoice terms.

Pure functions: no I/O, no database (PROTOCOLS.md §1)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from datetime import datetime
from typing import Any

from services.errors import MalformedPayload, NotConfigured
from services.money import CRYPTO_ASSETS, parse_decimal
from services.notices import EXPIRED, IGNORE, PAID, Notice
from services.providers.signing import hmac_sha256_hex, verify_hex_hmac
from services.schemas import ORDER_ID_PATTERN

PROVIDER = "cryptobot"
SIGNATURE_HEADER = "Crypto-Pay-Api-Signature"
INVOICE_PAID = "invoice_paid"
# Fiat currencies Crypto Pay prices invoices in (currency_type "fiat").
FIAT_CURRENCIES = frozenset({"USD", "EUR", "RUB", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD",
                             "THB", "INR", "BRL", "IDR", "AZN", "AED", "PLN", "ILS"})
MAX_EXPIRES_IN = 2_678_400
MAX_DESCRIPTION = 1024
INVOICE_STATUS_ACTIONS = {"paid": PAID, "expired": EXPIRED}
_ORDER_ID = re.compile(ORDER_ID_PATTERN)


def _key(token: str) -> bytes:
    # The HMAC key is the SHA-256 digest of the app token, not the token itself.
    return hashlib.sha256(token.encode("utf-8")).digest()


def signature(raw_body: bytes, token: str) -> str:
    """Lower-case hex HMAC-SHA256 of the raw body; the key is the SHA-256 digest of the app token."""
    return hmac_sha256_hex(_key(token), raw_body)


def verify_signature(raw_body: bytes, header_value: str | None, token: str) -> None:
    """Raise SignatureInvalid unless `header_value` is the body's signature under `token` (constant time)."""
    if not token:
        raise NotConfigured("CryptoBot webhooks are not configured (CRYPTOBOT_TOKEN).")
    verify_hex_hmac(raw_body, header_value, _key(token), "crypto-pay-api-signature")


def invoice_id(invoice: dict[str, Any]) -> int:
    value = invoice.get("invoice_id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload("The invoice has no integer invoice_id.")
    return value


def _claimed_order_id(payload: Any) -> str | None:
    return payload if isinstance(payload, str) and _ORDER_ID.match(payload) else None


def _paid_terms(invoice: dict[str, Any]) -> tuple[Any, Any]:
    """(amount, currency) the buyer settled, in the terms the order was created in."""
    if invoice.get("currency_type") == "fiat":
        # A fiat invoice is paid in some crypto asset; the order is priced in the fiat amount.
        return invoice.get("amount"), invoice.get("fiat")
    # A crypto invoice: what arrived, falling back to what was asked while unpaid.
    return (invoice.get("paid_amount") or invoice.get("amount"),
            invoice.get("paid_asset") or invoice.get("asset"))


_DETAIL_FIELDS = ("hash", "status", "currency_type", "asset", "fiat", "amount", "paid_asset", "paid_amount",
                  "paid_fiat_rate", "paid_usd_rate", "fee_asset", "fee_amount", "accepted_assets", "created_at",
                  "paid_at", "expiration_date", "paid_anonymously", "comment", "payload", "description")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_DETAIL_NAMES = tuple((key, _camel(key)) for key in _DETAIL_FIELDS)


def notice_from_invoice(invoice: dict[str, Any], event_type: str = "invoice") -> Notice:
    """A Notice for one Invoice object; the same invoice in the same status always has the same event_key.

    Used for webhooks and by reconciliation through getInvoices alike, so either path dedupes the other.
    """
    if not isinstance(invoice, dict):
        raise MalformedPayload("The invoice must be a JSON object.")
    number = invoice_id(invoice)
    status = str(invoice.get("status") or "unknown")
    amount, currency = _paid_terms(invoice)
    details = {name: invoice[key] for key, name in _DETAIL_NAMES if invoice.get(key) is not None}
    return Notice(
        event_key=f"invoice:{number}:{status}"[:200],
        event_type=event_type,
        action=INVOICE_STATUS_ACTIONS.get(status, IGNORE),
        order_id=_claimed_order_id(invoice.get("payload")),
        provider_ref=str(number),
        amount=parse_decimal(amount),
        currency=str(currency).upper()[:10] if currency else None,
        provider_payment_id=str(number),
        details=details,
    )


def notice_from_update(update: Any) -> Notice:
    """Translate a verified webhook update; unknown update types are kept and ignored, never refused."""
    if not isinstance(update, dict) or not isinstance(update.get("update_type"), str):
        raise MalformedPayload("The update must be a JSON object with an update_type.")
    update_type = update["update_type"][:64]
    payload = update.get("payload")
    if update_type == INVOICE_PAID:
        notice = notice_from_invoice(payload, INVOICE_PAID)
        if notice.action != PAID:
            # An invoice_paid update whose invoice is not paid settles nothing; support can look at it.
            return _replace_action(notice, IGNORE, note=f"invoice status is {notice.details.get('status')!r}")
        return notice
    # update_id is not unique, so an unknown update is identified by its type and payload.
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:40]
    return Notice(event_key=f"update:{update_type}:{digest}"[:200], event_type=update_type, action=IGNORE,
                  details={"note": "update type not handled", "updateId": update.get("update_id")})


def _replace_action(notice: Notice, action: str, note: str) -> Notice:
    return dataclasses.replace(notice, action=action, details={**notice.details, "note": note})


def request_date(update: Any) -> datetime | None:
    """The update's request_date as an aware datetime, or None when absent or unreadable."""
    raw = update.get("request_date") if isinstance(update, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def invoice_terms(currency: str) -> dict[str, str]:
    """createInvoice's currency fields: an asset for crypto, a fiat code otherwise."""
    if currency in CRYPTO_ASSETS:
        return {"currency_type": "crypto", "asset": currency}
    return {"currency_type": "fiat", "fiat": currency}


def expires_in(expires_at: datetime, now: datetime) -> int:
    """Seconds until the order expires, within what createInvoice accepts."""
    return min(MAX_EXPIRES_IN, max(1, math.ceil((expires_at - now).total_seconds())))


