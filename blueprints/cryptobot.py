"""POST /webhook/cryptobot: Crypto Pay updates, authenticated by crypto-pay-api-signature over the raw body."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhook_reader import FrontRoute, HeaderReader, Receipt
from blueprints.webhooks import acknowledgement, delivery
from services.providers.cryptobot import inbound as cryptobot
from services.providers.cryptobot.protocol import PROVIDER, SIGNATURE_HEADER, verify_signature
from webhook_config import Settings

bp = Blueprint("cryptobot", __name__)
PATH = "/webhook/cryptobot"
# The provider's headers the inbox keeps with the delivery.
HEADERS = (SIGNATURE_HEADER,)


@bp.post(PATH)
def webhook():
    raw = request.get_data(cache=True)
    # The signature covers the exact bytes, so it is checked before anything parses them.
    cryptobot.authenticate(raw, request.headers.get(SIGNATURE_HEADER), settings())
    update = parse_json(raw, signed=True)
    result = cryptobot.receive_update(update, delivery(PROVIDER, *HEADERS), settings(), now())
    note_order(result.order_id)
    return acknowledgement(result)


def _front_read(raw: bytes, header: HeaderReader, config: Settings, at: datetime) -> Receipt | None:
    verify_signature(raw, header(SIGNATURE_HEADER), config.cryptobot_token)
    notice = cryptobot.fresh_notice(parse_json(raw, signed=True), at)
    return None if notice is None else Receipt(notice)


FRONT = FrontRoute(PATH, PROVIDER, _front_read, HEADERS, acknowledgement)
