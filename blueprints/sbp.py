"""POST /webhook/sbp/tbank: T-Bank acquiring notifications (Token check; the reply body is exactly OK)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import delivery
from services.providers.sbp import inbound as sbp
from services.providers.sbp.protocol import PROVIDER

bp = Blueprint("sbp", __name__, url_prefix="/webhook/sbp")


@bp.post("/tbank")
def tbank_notification():
    payload = parse_json(request.get_data(cache=True))
    result = sbp.receive_tbank_notification(payload, delivery(PROVIDER), settings(), now())
    note_order(result.order_id)
    # T-Bank retries anything but a plain-text OK, duplicates and ignored statuses included.
    return Response("OK", mimetype="text/plain")
