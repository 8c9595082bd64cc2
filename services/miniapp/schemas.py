"""Marshmallow schemas of the Mini App's JSON API (/miniapp/api/*)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from services.providers import registry
from services.schemas import Amount, OrderStatusSchema, SubscriptionSchema, UTCTimestamp


class MiniAppOrderRequestSchema(Schema):
    """POST /miniapp/api/orders: what to buy and how to pay. Anything else the client sends
    (an amount, a price, a telegramId) is dropped: the catalogue and the init data decide those."""

    class Meta:
        unknown = EXCLUDE

    product_id = fields.String(required=True, data_key="productId", validate=validate.Length(1, 64))
    provider = fields.String(required=True, validate=validate.OneOf(registry.NAMES))


class MiniAppCancelRequestSchema(Schema):
    """POST /miniapp/api/subscription/cancel: which of the buyer's renewing orders; without one, the newest."""

    class Meta:
        unknown = EXCLUDE

    order_id = fields.String(data_key="orderId", load_default=None, validate=validate.Length(1, 64))


class MiniAppPriceSchema(Schema):
    provider = fields.String(required=True, validate=validate.OneOf(registry.NAMES))
    amount = Amount(required=True)
    currency = fields.String(required=True)


class MiniAppProductSchema(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(allow_none=True, required=True)
    subscription = fields.Nested(SubscriptionSchema, allow_none=True, required=True)
    credit = fields.Integer(allow_none=True, required=True)
    recurring = fields.Boolean(required=True)
    prices = fields.List(fields.Nested(MiniAppPriceSchema), required=True)


class MiniAppCatalogSchema(Schema):
    """GET /miniapp/api/catalog: the products of CATALOG_FILE, prices in the order buy buttons are shown."""

    success = fields.Constant(True)
    unit = fields.String(required=True, metadata={"description": "CREDIT_UNIT, the unit of `credit`."})
    products = fields.List(fields.Nested(MiniAppProductSchema), required=True)


class MiniAppSubscriptionSchema(Schema):
    plan = fields.String(required=True)
    expires_at = UTCTimestamp(data_key="expiresAt", required=True)
    subscription_url = fields.String(data_key="subscriptionUrl", allow_none=True, required=True)
    recurring = fields.Boolean(required=True)


class MiniAppOrderSchema(OrderStatusSchema):
    """One of the buyer's orders: GET /api/status's object without its `success`."""

    class Meta:
        exclude = ("success",)


class MiniAppBuyerSchema(Schema):
    """GET /miniapp/api/me: the buyer named by the init data, and only their own orders."""

    success = fields.Constant(True)
    telegram_id = fields.Integer(data_key="telegramId", required=True)
    balance = fields.Integer(required=True)
    unit = fields.String(required=True)
    subscription = fields.Nested(MiniAppSubscriptionSchema, allow_none=True, required=True)
    orders = fields.List(fields.Nested(MiniAppOrderSchema), required=True,
                         metadata={"description": "The buyer's last 20 orders, newest first."})
