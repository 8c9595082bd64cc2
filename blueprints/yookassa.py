"""POST /webhook/yookassa: YooKassa notifications, authenticated by source address (ProxyFix applies
PROXY_HOPS to the client address) and by fetching the object they name back from the API."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import acknowledgement, delivery
from services.providers.yookassa import inbound as yookassa
from services.providers.yookassa.protocol import PROVIDER

bp = Blueprint("yookassa", __name__)


@bp.post("/webhook/yookassa")
def webhook():
    config = settings()
    # Nothing from outside YooKassa's addresses is parsed, and nothing unsigned is believed without a GET.
    yookassa.authenticate(request.remote_addr, config)
    payload = parse_json(request.get_data(cache=True))
    result = yookassa.receive_notification(payload, delivery(PROVIDER), config, now())
    note_order(result.order_id)
    return acknowledgement(result)
