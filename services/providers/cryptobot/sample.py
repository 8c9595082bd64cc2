"""A correctly signed sample invoice_paid update, for trying an installation without Crypto Pay."""

from __future__ import annotations

import secrets
from datetime import datetime

from services.money import normalized
from services.providers.cryptobot.protocol import SIGNATURE_HEADER, invoice_terms, signature
from services.samples import SampleOrder, SampleRequest, compact, require
from webhook_config import Settings

PATH = "/webhook/cryptobot"


def paid_update(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    token = require(settings.cryptobot_token, "CRYPTOBOT_TOKEN")
    amount = format(normalized(order.amount), "f")
    terms = invoice_terms(order.currency)
    invoice = {"invoice_id": int(order.provider_ref) if (order.provider_ref or "").isdigit() else secrets.randbelow(10**6),
               "hash": secrets.token_hex(6), **terms, "amount": amount, "status": "paid",
               "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "paid_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
               "payload": order.order_id}
    if terms.get("currency_type") != "fiat":
        invoice.update(paid_asset=order.currency, paid_amount=amount)
    update = {"update_id": secrets.randbelow(10**6), "update_type": "invoice_paid",
              "request_date": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "payload": invoice}
    body = compact(update)
    return SampleRequest(PATH, {"Content-Type": "application/json",
                                SIGNATURE_HEADER.lower(): signature(body, token)}, body)
