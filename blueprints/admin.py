"""The admin JSON API (bearer ADMIN_API_KEY): subscription links, order replay, payment assignment, lookups."""

from __future__ import annotations

from flask import Blueprint, request

from blueprints.http import load_body, note_order, now, require_bearer, settings
from services import admin, audit, timeline
from services.admin_schemas import (AssignRequestSchema, AssignResultSchema, EventsQuerySchema, PurchaseSchema,
                                    RefreshResultSchema, RefreshSummarySchema, RefundResultSchema, ReplayResultSchema,
                                    SupportEventsSchema)
from services.panels import sync as panel

bp = Blueprint("admin", __name__, url_prefix="/admin")
admin_key = require_bearer(lambda s: s.admin_keys, "The admin API (ADMIN_API_KEY)")


def actor() -> str:
    """Who is acting: the presented key, named by a short hash (require_bearer has checked it)."""
    return audit.api_key_actor(request.headers.get("Authorization", "").partition(" ")[2].strip())


@bp.post("/update_configs/<row_id:purchase_id>")
@admin_key
def update_configs(purchase_id: int):
    url = panel.refresh_purchase(purchase_id, actor(), settings(), now())
    return RefreshResultSchema().dump({"purchase_id": purchase_id, "subscription_url": url})


@bp.post("/update_configs")
@admin_key
def update_all_configs():
    return RefreshSummarySchema().dump(panel.refresh_all(actor(), settings(), now()))


@bp.post("/orders/<order_id>/replay")
@admin_key
def replay_order(order_id: str):
    note_order(order_id)
    return ReplayResultSchema().dump(admin.replay_order(order_id, actor(), settings(), now()))


@bp.get("/events")
@admin_key
def support_events():
    query = EventsQuerySchema().load(request.args.to_dict())
    return SupportEventsSchema().dump(timeline.events_for_support(query.get("status"), query["limit"],
                                                                  query.get("before")))


@bp.post("/orders/<order_id>/refund")
@admin_key
def refund_order(order_id: str):
    note_order(order_id)
    return RefundResultSchema().dump(admin.refund_order(order_id, actor(), settings(), now()))


@bp.post("/events/<row_id:event_id>/assign")
@admin_key
def assign_event(event_id: int):
    body = load_body(AssignRequestSchema())
    note_order(body["order_id"])
    result = admin.assign_event(event_id, body["order_id"], body["force"], actor(), settings(), now())
    return AssignResultSchema().dump(result)


@bp.get("/purchases/<row_id:purchase_id>")
@admin_key
def purchase(purchase_id: int):
    return PurchaseSchema().dump(panel.purchase_view(purchase_id))
