"""Correctly signed sample webhook requests, for trying an installation without the real provider."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.errors import NotConfigured
from services.money import normalized, to_minor_units
from services.providers import bmc, cryptobot, tbank, telegram
from webhook_config import Settings

PROVIDERS = ("tbank", "cryptobot", "telegram", "bmc")
PATHS = {"tbank": "/webhook/sbp/tbank", "cryptobot": "/webhook/cryptobot",
         "telegram": "/webhook/telegram", "bmc": "/bmc-webhook"}


@dataclass(frozen=True)
class SampleRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class SampleOrder:
    """What a sample payment settles: the order's id, terms and the provider's id of its payment."""

    order_id: str
    amount: Decimal
    currency: str
    provider_ref: str | None = None


def _compact(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _require(value: str, name: str) -> str:
    if not value:
        raise NotConfigured(f"{name} is not set: a sample could not be signed.")
    return value


def _tbank(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    password = _require(settings.tbank_password, "TBANK_PASSWORD")
    body = {"TerminalKey": _require(settings.tbank_terminal_key, "TBANK_TERMINAL_KEY"),
            "OrderId": tbank.tbank_order_id(order.order_id), "Success": True, "Status": "CONFIRMED",
            "PaymentId": int(order.provider_ref) if (order.provider_ref or "").isdigit() else secrets.randbelow(10**9),
            "ErrorCode": "0", "Amount": to_minor_units(order.amount)}
    body["Token"] = tbank.token(body, password)
    return SampleRequest(PATHS["tbank"], {"Content-Type": "application/json"}, _compact(body))


def _cryptobot(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    token = _require(settings.cryptobot_token, "CRYPTOBOT_TOKEN")
    amount = format(normalized(order.amount), "f")
    terms = cryptobot.invoice_terms(order.currency)
    invoice = {"invoice_id": int(order.provider_ref) if (order.provider_ref or "").isdigit() else secrets.randbelow(10**6),
               "hash": secrets.token_hex(6), **terms, "amount": amount, "status": "paid",
               "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "paid_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
               "payload": order.order_id}
    if terms.get("currency_type") != "fiat":
        invoice.update(paid_asset=order.currency, paid_amount=amount)
    update = {"update_id": secrets.randbelow(10**6), "update_type": "invoice_paid",
              "request_date": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "payload": invoice}
    body = _compact(update)
    return SampleRequest(PATHS["cryptobot"], {"Content-Type": "application/json",
                                              "crypto-pay-api-signature": cryptobot.signature(body, token)}, body)


def _telegram(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    secret = _require(settings.telegram_webhook_secret, "TELEGRAM_WEBHOOK_SECRET")
    buyer = {"id": 5551234, "is_bot": False, "first_name": "Sample"}
    update = {"update_id": secrets.randbelow(10**9), "message": {
        "message_id": 1, "date": int(now.timestamp()), "chat": {"id": buyer["id"], "type": "private"}, "from": buyer,
        "successful_payment": {"currency": order.currency, "total_amount": int(order.amount),
                               "invoice_payload": order.order_id,
                               "telegram_payment_charge_id": f"sample{secrets.token_hex(8)}",
                               "provider_payment_charge_id": ""}}}
    return SampleRequest(PATHS["telegram"], {"Content-Type": "application/json",
                                             telegram.SECRET_HEADER: secret}, _compact(update))


def _bmc(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    secret = _require(settings.bmc_webhook_secret, "BMC_WEBHOOK_SECRET")
    message = f"{order.order_id} thanks!"
    event = {"type": "donation.created", "live_mode": True, "attempt": 1, "created": int(now.timestamp()),
             "event_id": secrets.randbelow(10**9), "data": {
                 "id": secrets.randbelow(10**6), "amount": format(normalized(order.amount), "f"),
                 "currency": order.currency, "status": "succeeded", "message": message, "support_note": message,
                 "supporter_name": "Sample Supporter", "supporter_email": "sample@example.com",
                 "transaction_id": f"pi_sample{secrets.token_hex(8)}", "refunded": "false",
                 "created_at": int(now.timestamp())}}
    body = _compact(event)
    return SampleRequest(PATHS["bmc"], {"Content-Type": "application/json",
                                        "X-Signature-Sha256": bmc.signature(body, secret)}, body)


_BUILDERS = {"tbank": _tbank, "cryptobot": _cryptobot, "telegram": _telegram, "bmc": _bmc}


def sample_request(provider: str, order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    """A "paid" delivery for `order`, signed with this installation's secrets exactly as the provider signs."""
    return _BUILDERS[provider](order, settings, now)
