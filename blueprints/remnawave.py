"""POST /webhook/remnawave: the Remnawave panel's events, authenticated by X-Remnawave-Signature over the raw body."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import acknowledgement, delivery
from services.panels import remnawave_webhook as remnawave
from services.panels.remnawave_webhook import PROVIDER, SIGNATURE_HEADER, TIMESTAMP_HEADER

bp = Blueprint("remnawave", __name__)


@bp.post("/webhook/remnawave")
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    remnawave.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    event = parse_json(raw)
    result = remnawave.receive_event(event, delivery(PROVIDER, SIGNATURE_HEADER, TIMESTAMP_HEADER), settings(),
                                     now())
    note_order(result.order_id)
    return acknowledgement(result)
