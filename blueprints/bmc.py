"""POST /bmc-webhook: Buy Me a Coffee events, authenticated by x-signature-sha256 over the raw body."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import acknowledgement, delivery
from services.providers.bmc import inbound as bmc
from services.providers.bmc.protocol import EVENT_HEADER, PROVIDER, SIGNATURE_HEADER

bp = Blueprint("bmc", __name__)


@bp.post("/bmc-webhook")
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    bmc.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    event = parse_json(raw, signed=True)
    result = bmc.receive_event(event, delivery(PROVIDER, SIGNATURE_HEADER, EVENT_HEADER), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)
