"""POST /webhook/telegram: Telegram Bot API updates, authenticated by X-Telegram-Bot-Api-Secret-Token."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhooks import acknowledgement, delivery
from services.providers.telegram import inbound as telegram
from services.providers.telegram.protocol import PROVIDER, SECRET_HEADER

bp = Blueprint("telegram", __name__, url_prefix="/webhook")


@bp.post("/telegram")
def update():
    config = settings()
    telegram.authenticate(request.headers.get(SECRET_HEADER), config)
    payload = parse_json(request.get_data(cache=True), signed=True)
    reply = telegram.handle_update(payload, delivery(PROVIDER), config, now())
    note_order(reply.order_id)
    # A pre-checkout answer goes back as a Bot API call in this very response (Content-Type: application/json).
    return jsonify(reply.answer if reply.result is None else acknowledgement(reply.result))
