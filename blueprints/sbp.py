"""POST /webhook/sbp/tbank: T-Bank acquiring notifications (Token check; the reply body is exactly OK)."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, request

from blueprints.http import note_order, now, parse_json, settings
from blueprints.webhook_reader import FrontRoute, HeaderReader, Receipt
from blueprints.webhooks import delivery
from services.notices import IngestResult
from services.providers.sbp import inbound as sbp
from services.providers.sbp.protocol import PROVIDER
from webhook_config import Settings

PREFIX = "/webhook/sbp"
bp = Blueprint("sbp", __name__, url_prefix=PREFIX)
# T-Bank retries anything but a plain-text OK, duplicates and ignored statuses included.
ACKNOWLEDGEMENT = "OK"


@bp.post("/tbank")
def tbank_notification():
    payload = parse_json(request.get_data(cache=True))
    result = sbp.receive_tbank_notification(payload, delivery(PROVIDER), settings(), now())
    note_order(result.order_id)
    return Response(ACKNOWLEDGEMENT, mimetype="text/plain")


def _front_read(raw: bytes, header: HeaderReader, config: Settings, at: datetime) -> Receipt:
    return Receipt(sbp.authenticated_notice(parse_json(raw), config))


def _acknowledge(result: IngestResult) -> str:
    return ACKNOWLEDGEMENT


FRONT = FrontRoute(f"{PREFIX}/tbank", PROVIDER, _front_read, (), _acknowledge)
