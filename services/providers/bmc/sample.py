"""A correctly signed sample donation, for trying an installation without Buy Me a Coffee."""

from __future__ import annotations

import secrets
from datetime import datetime

from services.money import normalized
from services.providers.bmc.protocol import SIGNATURE_HEADER, signature
from services.samples import SampleOrder, SampleRequest, compact, require
from webhook_config import Settings

PATH = "/bmc-webhook"


def donation(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    secret = require(settings.bmc_webhook_secret, "BMC_WEBHOOK_SECRET")
    message = f"{order.order_id} thanks!"
    event = {"type": "donation.created", "live_mode": True, "attempt": 1, "created": int(now.timestamp()),
             "event_id": secrets.randbelow(10**9), "data": {
                 "id": secrets.randbelow(10**6), "amount": format(normalized(order.amount), "f"),
                 "currency": order.currency, "status": "succeeded", "message": message, "support_note": message,
                 "supporter_name": "Sample Supporter", "supporter_email": "sample@example.com",
                 "transaction_id": f"pi_sample{secrets.token_hex(8)}", "refunded": "false",
                 "created_at": int(now.timestamp())}}
    body = compact(event)
    return SampleRequest(PATH, {"Content-Type": "application/json", SIGNATURE_HEADER: signature(body, secret)}, body)
