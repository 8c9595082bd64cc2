"""Marshmallow schemas: the single source of truth for request and response shapes (and the OpenAPI document)."""

from __future__ import annotations

import json
from datetime import timezone
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from services.money import check_amount, normalized
from services.providers import registry

# `$(?!\n)`: Python's `$` also matches before a trailing newline, which must not pass.
ORDER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$(?!\n)"
PROVIDERS = registry.NAMES
ORDER_STATUSES = ("pending", "paid", "expired", "cancelled", "refunded", "failed")
MAX_METADATA_BYTES = 4096
MAX_TELEGRAM_ID = 2**53
# Order.credit is a 32-bit INTEGER column (widening it would rebuild the orders table on SQLite).
MAX_CREDIT = 2**31 - 1


class Amount(fields.Decimal):
    """An exact amount: accepted as a JSON number or numeric string, emitted as a JSON number."""

    def __init__(self, **kwargs):
        super().__init__(as_string=False, allow_nan=False, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else normalized(Decimal(value))


class UTCTimestamp(fields.DateTime):
    """ISO-8601 in UTC with a Z suffix, as SPEC.md shows."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StrictInteger(fields.Integer):
    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


class SubscriptionSchema(Schema):
    plan = fields.String(required=True, validate=validate.Length(1, 64))
    days = StrictInteger(required=True, validate=validate.Range(1, 3650))


def _metadata_size(value: dict) -> None:
    if len(json.dumps(value, separators=(",", ":"), default=str).encode()) > MAX_METADATA_BYTES:
        raise ValidationError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")


class PaymentRequestSchema(Schema):
    """POST /api/payment body."""

    amount = Amount(required=True)
    order_id = fields.String(required=True, data_key="orderId", validate=validate.Regexp(
        ORDER_ID_PATTERN, error="must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'"))
    provider = fields.String(load_default=registry.DEFAULT, validate=validate.OneOf(PROVIDERS))
    currency = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z]{2,10}$(?!\n)"))
    description = fields.String(load_default=None, validate=validate.Length(1, 1024))
    telegram_id = StrictInteger(load_default=None, data_key="telegramId", validate=validate.Range(1, MAX_TELEGRAM_ID))
    credit = StrictInteger(load_default=None, validate=validate.Range(1, MAX_CREDIT))
    subscription = fields.Nested(SubscriptionSchema, load_default=None)
    metadata = fields.Dict(keys=fields.String(), load_default=dict, validate=_metadata_size)
    recurring = fields.Boolean(load_default=False)
    payment_method = fields.String(
        load_default=None, data_key="paymentMethod", validate=validate.Regexp(r"^[a-z_]{1,32}$(?!\n)"),
        metadata={"description": "How the buyer pays, for a provider that lets the caller choose; "
                                 "omitted: the buyer chooses on the provider's page."})

    @validates_schema
    def _needs_buyer(self, data, **kwargs):
        if (data.get("credit") or data.get("subscription")) and not data.get("telegram_id"):
            raise ValidationError("is required when credit or subscription is requested", "telegramId")

    @validates_schema
    def _renewable(self, data, **kwargs):
        """A recurring order is a subscription of exactly the period its provider renews by itself."""
        if not data.get("recurring") or data.get("provider") not in PROVIDERS:
            return
        days = registry.plugin(data["provider"]).renewal_days
        if days is None:
            raise ValidationError(f"{data['provider']} payments do not renew by themselves", "recurring")
        if (data.get("subscription") or {}).get("days") != days:
            raise ValidationError(f"is required with days = {days} for a recurring order", "subscription")


class OrderStatusSchema(Schema):
    """GET /api/status/{orderId}; also the `data` of merchant webhook events."""

    success = fields.Constant(True)
    order_id = fields.String(data_key="orderId", required=True)
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES), required=True)
    amount = Amount(required=True)
    currency = fields.String(required=True)
    provider = fields.String(required=True)
    created_at = UTCTimestamp(data_key="createdAt", required=True)
    paid_at = UTCTimestamp(data_key="paidAt", allow_none=True, required=True)
    expires_at = UTCTimestamp(data_key="expiresAt", required=True)
    telegram_id = fields.Integer(data_key="telegramId", allow_none=True)
    credit = fields.Integer(allow_none=True)
    metadata = fields.Dict(attribute="meta", required=True)
    purchase_id = fields.Integer(data_key="purchaseId")
    subscription_url = fields.String(data_key="subscriptionUrl", attribute="purchase.subscription_url")
    recurring = fields.Boolean()
    renewal = fields.Dict(metadata={"description": "A recurring order's renewals as the provider reports them: "
                                                   "expiresAt (end of the paid period), cancelledAt."})

    @post_dump
    def _omit_absent_purchase(self, data, **kwargs):
        for key in ("purchaseId", "subscriptionUrl", "renewal"):
            if data.get(key) is None:
                data.pop(key, None)
        if not data.get("recurring"):
            data.pop("recurring", None)
            data.pop("renewal", None)
        return data


class CancellationSchema(Schema):
    """POST /api/subscriptions/{orderId}/cancel (and the Mini App's): 200 when the provider stopped the
    renewals, 202 when the cancellation is queued for the provider's worker."""

    success = fields.Constant(True)
    order_id = fields.String(data_key="orderId", required=True)
    cancelled = fields.Boolean(attribute="done", required=True)


class PaymentResponseSchema(OrderStatusSchema):
    """POST /api/payment: the order plus what the buyer needs to pay it (per provider)."""

    qrc_id = fields.String(data_key="qrcId", attribute="provider_data.qrcId")
    qr = fields.String(attribute="provider_data.qr")
    qr_image = fields.String(data_key="qrImage", attribute="provider_data.qrImage")
    invoice_id = fields.Integer(data_key="invoiceId", attribute="provider_data.invoiceId")
    pay_url = fields.String(data_key="payUrl", attribute="provider_data.payUrl")
    invoice_link = fields.String(data_key="invoiceLink", attribute="provider_data.invoiceLink")
    instructions = fields.String(attribute="provider_data.instructions")
    # Not provider_data.paymentId: T-Bank keeps its PaymentId there for reference, and SBP answers never showed it.
    payment_id = fields.String(data_key="paymentId", attribute="provider_data.providerPaymentId")
    payment_method = fields.String(data_key="paymentMethod", attribute="provider_data.paymentMethod")


class BalanceSchema(Schema):
    success = fields.Constant(True)
    telegram_id = fields.Integer(data_key="telegramId", required=True)
    balance = fields.Integer(required=True)
    unit = fields.String(required=True)


class ApiHealthSchema(Schema):
    success = fields.Boolean(required=True)
    status = fields.String(validate=validate.OneOf(("healthy", "unhealthy")), required=True)
    timestamp = UTCTimestamp(required=True)


class HealthSchema(Schema):
    status = fields.String(validate=validate.OneOf(("healthy", "unhealthy")), required=True)
    timestamp = fields.Integer(required=True)


class SandboxPaidSchema(Schema):
    """POST /sandbox/sbp/{qrcId}/pay: what the simulated notification did, and the order after it."""

    success = fields.Constant(True)
    outcome = fields.String(required=True)
    order = fields.Nested(OrderStatusSchema, required=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields")


class ErrorSchema(Schema):
    success = fields.Constant(False)
    error = fields.Nested(ErrorDetailSchema, required=True)


def check_payment_amount(amount: Decimal, currency: str) -> None:
    """Raise a field error when the amount does not fit the currency's precision or limits."""
    problem = check_amount(amount, currency)
    if problem:
        raise ValidationError({"amount": [problem]})

