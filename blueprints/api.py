"""The payment API: create payments, read status and balances, serve QR images."""

from __future__ import annotations

from flask import Blueprint, Response, request

from blueprints.http import load_body, note_order, now, require_bearer, settings
from blueprints.status_reader import READ_FAILED
from services import audit, ledger, payments, qr, renewals
from services.errors import InvalidRequest, NotFound
from services.orders import status_of
from services.schemas import (MAX_TELEGRAM_ID, BalanceSchema, CancellationSchema, PaymentRequestSchema,
                              PaymentResponseSchema)

bp = Blueprint("api", __name__, url_prefix="/api")
api_token = require_bearer(lambda s: s.api_tokens, "The payment API (WEBHOOK_API_TOKEN)")
# Built once: a schema instance deep-copies its fields, and dump/load keep no state on it.
payment_request_schema = PaymentRequestSchema()
payment_response_schema = PaymentResponseSchema()
balance_schema = BalanceSchema()
cancellation_schema = CancellationSchema()


@bp.post("/payment")
@api_token
def create_payment():
    payment_request = load_body(payment_request_schema)
    note_order(payment_request["order_id"])
    order, created = payments.create_payment(payment_request, settings(), now())
    return payment_response_schema.dump(order), 201 if created else 200


@bp.get("/status/<order_id>")
@api_token
def order_status(order_id: str):
    note_order(order_id)
    # The status reader in front of Flask asked the database already: answer its failure, do not ask again.
    failed = request.environ.pop(READ_FAILED, None)
    if failed is not None:
        raise failed
    return status_of(order_id)  # already what OrderStatusSchema would dump (orders.status_view)


@bp.post("/subscriptions/<order_id>/cancel")
@api_token
def cancel_subscription(order_id: str):
    note_order(order_id)
    actor = audit.api_key_actor(request.headers.get("Authorization", "").partition(" ")[2].strip())
    cancellation = renewals.cancel(order_id, actor, settings(), now())
    return cancellation_schema.dump(cancellation), 200 if cancellation.done else 202


@bp.get("/balance/<int:telegram_id>")
@api_token
def balance(telegram_id: int):
    if telegram_id > MAX_TELEGRAM_ID:
        raise InvalidRequest("The Telegram id is out of range.", {"telegramId": [f"must be at most {MAX_TELEGRAM_ID}"]})
    return balance_schema.dump({"telegram_id": telegram_id, "balance": ledger.balance(telegram_id),
                                 "unit": settings().credit_unit})


@bp.get("/payment/<order_id>/qr.<fmt>")
def qr_image(order_id: str, fmt: str):
    if fmt not in qr.FORMATS:
        raise NotFound("QR images are served as qr.png or qr.svg.")
    note_order(order_id)
    current = now()
    link, expires_at = qr.payable_link(order_id, current)
    tag = qr.etag(link, fmt)
    response = Response(status=304) if tag in request.if_none_match else Response(qr.render(link, fmt))
    response.mimetype = qr.FORMATS[fmt]
    response.set_etag(tag)
    # The link of an order never changes, but the image is for the buyer only and only while the order can
    # be paid: the browser may keep it until then, shared caches not at all.
    response.headers["Cache-Control"] = f"private, max-age={int((expires_at - current).total_seconds())}"
    return response
