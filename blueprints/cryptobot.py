"""POST /webhook/cryptobot: Crypto Pay updates, authenticated by crypto-pay-api-signature over the raw body."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.repeat_reader import HeaderReader, RepeatRoute
from blueprints.webhooks import acknowledgement, delivery
from services.providers.cryptobot import inbound as cryptobot
from services.providers.cryptobot.protocol import PROVIDER, SIGNATURE_HEADER, verify_signature
from webhook_config import Settings

bp = Blueprint("cryptobot", __name__)
PATH = "/webhook/cryptobot"


@bp.post(PATH)
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    cryptobot.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    update = parse_json(raw, signed=True)
    result = cryptobot.receive_update(update, delivery(PROVIDER, SIGNATURE_HEADER), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)


def _repeat_key(raw: bytes, header: HeaderReader, config: Settings, at: datetime) -> str | None:
    verify_signature(raw, header(SIGNATURE_HEADER), config.cryptobot_token)
    return cryptobot.fresh_event_key(parse_json(raw, signed=True), at)


REPEAT = RepeatRoute(PATH, PROVIDER, _repeat_key, acknowledgement)
