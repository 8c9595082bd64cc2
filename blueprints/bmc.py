"""POST /bmc-webhook: Buy Me a Coffee events, authenticated by x-signature-sha256 over the raw body."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhook_reader import FrontRoute, HeaderReader, Receipt
from blueprints.webhooks import acknowledgement, delivery
from services.providers.bmc import inbound as bmc
from services.providers.bmc.protocol import EVENT_HEADER, PROVIDER, SIGNATURE_HEADER, verify_signature
from webhook_config import Settings

bp = Blueprint("bmc", __name__)
PATH = "/bmc-webhook"
# The provider's headers the inbox keeps with the delivery.
HEADERS = (SIGNATURE_HEADER, EVENT_HEADER)


@bp.post(PATH)
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    bmc.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    event = parse_json(raw, signed=True)
    result = bmc.receive_event(event, delivery(PROVIDER, *HEADERS), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)


def _front_read(raw: bytes, header: HeaderReader, config: Settings, at: datetime) -> Receipt:
    verify_signature(raw, header(SIGNATURE_HEADER), config.bmc_webhook_secret)
    return Receipt(bmc.notice_of(parse_json(raw, signed=True), raw, config), bmc.receive_notice)


FRONT = FrontRoute(PATH, PROVIDER, _front_read, HEADERS, acknowledgement)
