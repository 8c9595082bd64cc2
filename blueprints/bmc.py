"""POST /bmc-webhook: Buy Me a Coffee events, authenticated by x-signature-sha256 over the raw body."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.repeat_reader import HeaderReader, RepeatRoute
from blueprints.webhooks import acknowledgement, delivery
from services.providers.bmc import inbound as bmc
from services.providers.bmc.protocol import EVENT_HEADER, PROVIDER, SIGNATURE_HEADER, verify_signature
from webhook_config import Settings

bp = Blueprint("bmc", __name__)
PATH = "/bmc-webhook"


@bp.post(PATH)
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    bmc.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    event = parse_json(raw, signed=True)
    result = bmc.receive_event(event, delivery(PROVIDER, SIGNATURE_HEADER, EVENT_HEADER), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)


def _repeat_key(raw: bytes, header: HeaderReader, config: Settings, at: datetime) -> str:
    verify_signature(raw, header(SIGNATURE_HEADER), config.bmc_webhook_secret)
    return bmc.event_key(parse_json(raw, signed=True), raw, config)


REPEAT = RepeatRoute(PATH, PROVIDER, _repeat_key, acknowledgement)
