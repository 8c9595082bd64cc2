"""POST /sandbox/sbp/{qrcId}/pay: settle a sandbox SBP payment (404 unless SBP_GATEWAY=sandbox)."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import note_order, now, require_bearer, settings
from services.providers.sbp import inbound as sbp
from services.errors import NotFound
from services.orders import get_order
from services.schemas import SandboxPaidSchema

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


@bp.before_request
def _only_in_sandbox():
    if not settings().sandbox:
        raise NotFound("The sandbox is off: SBP_GATEWAY is not 'sandbox'.")


@bp.post("/sbp/<qrc_id>/pay")
@require_bearer(lambda s: s.api_tokens, "The payment API (WEBHOOK_API_TOKEN)")
def pay(qrc_id: str):
    result = sbp.sandbox_pay(qrc_id, request.remote_addr, settings(), now())
    note_order(result.order_id)
    return SandboxPaidSchema().dump({"outcome": result.outcome, "order": get_order(result.order_id)})
