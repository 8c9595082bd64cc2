"""The Telegram Mini App storefront: the page (/miniapp/) and its JSON API, authenticated by init data."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from blueprints.errors import error_response
from blueprints.http import load_body, note_order, now, settings
from blueprints.security_headers import relax_policy
from services import renewals
from services.errors import NotConfigured
from services.miniapp import initdata, storefront
from services.miniapp.catalog import Catalog
from services.miniapp.schemas import (MiniAppBuyerSchema, MiniAppCancelRequestSchema, MiniAppCatalogSchema,
                                      MiniAppOrderRequestSchema)
from services.schemas import CancellationSchema, PaymentResponseSchema

bp = Blueprint("miniapp", __name__, url_prefix="/miniapp")
SCHEME = "tma"
FRAMED_BY = "https://web.telegram.org https://*.telegram.org"
# Telegram's web clients show the Mini App in a frame; nothing else may. The page loads only
# our files and Telegram's WebApp script, and talks only to us.
PAGE_POLICY = ("default-src 'none'; script-src 'self' https://telegram.org; style-src 'self'; "
               "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               f"frame-ancestors {FRAMED_BY}")
# The site-wide policy forbids framing (and adds X-Frame-Options): this blueprint's page must be framable.
relax_policy(bp, frame_ancestors=FRAMED_BY)
order_request_schema = MiniAppOrderRequestSchema()
catalog_schema = MiniAppCatalogSchema()
buyer_schema = MiniAppBuyerSchema()
cancel_request_schema = MiniAppCancelRequestSchema()
cancellation_schema = CancellationSchema()
payment_response_schema = PaymentResponseSchema()


def catalog() -> Catalog:
    configured = settings().catalog
    if configured is None:
        raise NotConfigured("The Mini App is not configured on this server (CATALOG_FILE).")
    return configured


@bp.before_request
def _only_when_configured():
    catalog()


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Balances and orders are one buyer's: no shared cache may keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(initdata.InitDataInvalid)
def _unauthorized(exc: initdata.InitDataInvalid):
    return error_response(401, exc.message, exc.code, headers={"WWW-Authenticate": SCHEME})


def buyer() -> initdata.Buyer:
    """The buyer named by `Authorization: tma <initData>` (the raw init data is never logged)."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != SCHEME or not raw.strip():
        raise initdata.InitDataInvalid("Send the Mini App's init data: Authorization: tma <initData>.")
    current = settings()
    return initdata.verify(raw.strip(), current.telegram_bot_token, current.miniapp_bot_ids,
                           current.miniapp_auth_max_age, now())


@bp.get("/")
def page():
    response = Response(render_template("miniapp/index.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    # The page holds nothing personal (the API does); revalidate so a new release reaches every buyer.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/api/catalog")
def products():
    buyer()
    return catalog_schema.dump({"unit": settings().credit_unit, "products": catalog().products})


@bp.get("/api/me")
def me():
    return buyer_schema.dump(storefront.buyer_view(buyer().telegram_id, settings()))


@bp.post("/api/subscription/cancel")
def cancel_subscription():
    telegram_id = buyer().telegram_id
    order_id = load_body(cancel_request_schema)["order_id"] or storefront.renewing_order(telegram_id)
    note_order(order_id)
    cancellation = renewals.cancel(order_id, f"miniapp:{telegram_id}", settings(), now(), buyer=telegram_id)
    return cancellation_schema.dump(cancellation), 200 if cancellation.done else 202


@bp.post("/api/orders")
def create_order():
    telegram_id = buyer().telegram_id
    wanted = load_body(order_request_schema)
    order, created = storefront.place_order(catalog(), telegram_id, wanted["product_id"], wanted["provider"],
                                            settings(), now())
    note_order(order.order_id)
    return payment_response_schema.dump(order), 201 if created else 200
