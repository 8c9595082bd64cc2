"""A correctly authenticated sample successful_payment update, for trying an installation without Telegram."""

from __future__ import annotations

import secrets
from datetime import datetime

from services.providers.telegram.protocol import SECRET_HEADER
from services.samples import SampleOrder, SampleRequest, compact, require
from webhook_config import Settings

PATH = "/webhook/telegram"


def successful_payment(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    secret = require(settings.telegram_webhook_secret, "TELEGRAM_WEBHOOK_SECRET")
    buyer = {"id": 5551234, "is_bot": False, "first_name": "Sample"}
    update = {"update_id": secrets.randbelow(10**9), "message": {
        "message_id": 1, "date": int(now.timestamp()), "chat": {"id": buyer["id"], "type": "private"}, "from": buyer,
        "successful_payment": {"currency": order.currency, "total_amount": int(order.amount),
                               "invoice_payload": order.order_id,
                               "telegram_payment_charge_id": f"sample{secrets.token_hex(8)}",
                               "provider_payment_charge_id": ""}}}
    return SampleRequest(PATH, {"Content-Type": "application/json", SECRET_HEADER: secret}, compact(update))
