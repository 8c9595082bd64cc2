"""Marshmallow schemas of the admin JSON API (/admin/*)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.db import ROW_ID_MAX
from services.notices import NEEDS_REVIEW
from services.schemas import ORDER_ID_PATTERN, Amount, UTCTimestamp


class RefreshResultSchema(Schema):
    """POST /admin/update_configs/{purchase_id}."""

    success = fields.Constant(True)
    purchase_id = fields.Integer(data_key="purchaseId", required=True)
    subscription_url = fields.String(data_key="subscriptionUrl", required=True)


class RefreshSummarySchema(Schema):
    """POST /admin/update_configs: `failed` counts every purchase not refreshed, connection errors included."""

    success = fields.Constant(True)
    total = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    connection_errors = fields.Integer(data_key="connectionErrors", required=True)


class ReplayedEventSchema(Schema):
    event_id = fields.Integer(data_key="eventId", required=True)
    outcome = fields.String(required=True)


class ReplayResultSchema(Schema):
    """POST /admin/orders/{orderId}/replay."""

    success = fields.Constant(True)
    order_id = fields.String(data_key="orderId", required=True)
    status = fields.String(required=True)
    events = fields.List(fields.Dict(), required=True)
    queued = fields.Integer(required=True)


class AssignRequestSchema(Schema):
    """POST /admin/events/{id}/assign body."""

    order_id = fields.String(required=True, data_key="orderId", validate=validate.Regexp(
        ORDER_ID_PATTERN, error="must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'"))
    force = fields.Boolean(load_default=False, truthy={True}, falsy={False})


class AssignResultSchema(Schema):
    """POST /admin/events/{id}/assign: `outcome` is assigned or already_assigned; `forced`, an accepted mismatch."""

    success = fields.Constant(True)
    event_id = fields.Integer(data_key="eventId", required=True)
    order_id = fields.String(data_key="orderId", required=True)
    outcome = fields.String(required=True)
    status = fields.String(required=True)
    forced = fields.String(allow_none=True)


class RefundResultSchema(Schema):
    """POST /admin/orders/{orderId}/refund: the provider's refund, and the order once its answer was recorded.

    `refundStatus` is the provider's: succeeded (the order is refunded now), pending (it will be when the
    provider confirms) or canceled. `outcome` is what recording the answer did (processed, duplicate, ignored,
    conflict), null when nothing was recorded yet.
    """

    success = fields.Constant(True)
    order_id = fields.String(data_key="orderId", required=True)
    status = fields.String(required=True)
    refund_id = fields.String(data_key="refundId", required=True)
    refund_status = fields.String(data_key="refundStatus", required=True)
    outcome = fields.String(allow_none=True, required=True)
    event_id = fields.Integer(data_key="eventId", allow_none=True, required=True)


class PurchaseOrderSchema(Schema):
    order_id = fields.String(data_key="orderId", required=True)
    status = fields.String(required=True)
    paid_at = UTCTimestamp(data_key="paidAt", allow_none=True)


class PurchaseSchema(Schema):
    """GET /admin/purchases/{purchase_id}."""

    success = fields.Constant(True)
    purchase_id = fields.Integer(data_key="purchaseId", attribute="id", required=True)
    telegram_id = fields.Integer(data_key="telegramId", required=True)
    plan = fields.String(required=True)
    status = fields.String(required=True)
    expires_at = UTCTimestamp(data_key="expiresAt", required=True)
    panel_username = fields.String(data_key="panelUsername", allow_none=True)
    subscription_url = fields.String(data_key="subscriptionUrl", allow_none=True)
    created_at = UTCTimestamp(data_key="createdAt", required=True)
    updated_at = UTCTimestamp(data_key="updatedAt", required=True)
    orders = fields.List(fields.Nested(PurchaseOrderSchema), required=True)


class EventsQuerySchema(Schema):
    """GET /admin/events query: one status (default: every status that needs support) and a page."""

    # No load_default=None on the optional ones: it would document them as nullable, which a query cannot be.
    status = fields.String(validate=validate.OneOf(sorted(NEEDS_REVIEW)))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100))
    before = fields.Integer(validate=validate.Range(1, ROW_ID_MAX), metadata={
        "description": "Continue after this event id: `nextBefore` of the previous page."})


class SupportEventSchema(Schema):
    """An event that needs support; `id` is what /admin/events/{id}/assign takes."""

    id = fields.Integer(required=True)
    provider = fields.String(required=True)
    event_type = fields.String(data_key="eventType", required=True)
    status = fields.String(required=True)
    amount = Amount(allow_none=True, required=True)
    currency = fields.String(allow_none=True, required=True)
    received_at = UTCTimestamp(data_key="receivedAt", required=True)
    order_id = fields.String(data_key="orderId", allow_none=True, required=True,
                             metadata={"description": "The orderId the payment named, if any."})
    reason = fields.String(required=True)


class SupportEventsSchema(Schema):
    """GET /admin/events: newest first; `nextBefore` is null on the last page."""

    success = fields.Constant(True)
    events = fields.List(fields.Nested(SupportEventSchema), required=True)
    next_before = fields.Integer(data_key="nextBefore", allow_none=True, required=True)
