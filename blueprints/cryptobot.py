"""POST /webhook/cryptobot: Crypto Pay updates, authenticated by crypto-pay-api-signature over the raw body."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import acknowledgement, delivery
from services.providers.cryptobot import inbound as cryptobot
from services.providers.cryptobot.protocol import PROVIDER, SIGNATURE_HEADER

bp = Blueprint("cryptobot", __name__)


@bp.post("/webhook/cryptobot")
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    cryptobot.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    update = parse_json(raw, signed=True)
    result = cryptobot.receive_update(update, delivery(PROVIDER, SIGNATURE_HEADER), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)
