"""A correctly signed sample T-Bank CONFIRMED notification, for trying an installation without T-Bank."""

from __future__ import annotations

import secrets
from datetime import datetime

from services.money import to_minor_units
from services.providers.sbp.protocol import tbank_order_id, token
from services.samples import SampleOrder, SampleRequest, compact, require
from webhook_config import Settings

PATH = "/webhook/sbp/tbank"


def tbank_confirmed(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    password = require(settings.tbank_password, "TBANK_PASSWORD")
    body = {"TerminalKey": require(settings.tbank_terminal_key, "TBANK_TERMINAL_KEY"),
            "OrderId": tbank_order_id(order.order_id), "Success": True, "Status": "CONFIRMED",
            "PaymentId": int(order.provider_ref) if (order.provider_ref or "").isdigit() else secrets.randbelow(10**9),
            "ErrorCode": "0", "Amount": to_minor_units(order.amount)}
    body["Token"] = token(body, password)
    return SampleRequest(PATH, {"Content-Type": "application/json"}, compact(body))
