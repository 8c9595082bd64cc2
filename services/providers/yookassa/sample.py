"""A sample payment.succeeded notification for an order's YooKassa payment.

YooKassa signs nothing, so this cannot pay anything by itself: the gateway fetches the payment it names and
acts on what the API says. It is a way to make the gateway look now (e.g. after paying in a test shop whose
notifications cannot reach this machine), sent from an address in YOOKASSA_ALLOWED_IPS.
"""

from __future__ import annotations

from datetime import datetime

from services.errors import InvalidRequest
from services.providers.yookassa.protocol import ORDER_KEY, PAYMENT, amount_value
from services.samples import SampleOrder, SampleRequest, compact, require
from webhook_config import Settings

PATH = "/webhook/yookassa"


def succeeded_notification(order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    require(settings.yookassa_shop_id, "YOOKASSA_SHOP_ID")
    if not order.provider_ref:
        raise InvalidRequest(f"Order {order.order_id!r} has no YooKassa payment: create it with POST /api/payment.")
    payment = {"id": order.provider_ref, "status": "succeeded", "paid": True,
               "amount": {"value": amount_value(order.amount), "currency": order.currency},
               "captured_at": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "metadata": {ORDER_KEY: order.order_id}}
    body = compact({"type": "notification", "event": f"{PAYMENT}.succeeded", "object": payment})
    return SampleRequest(PATH, {"Content-Type": "application/json"}, body)
