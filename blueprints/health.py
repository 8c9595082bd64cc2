"""Liveness with a database check, in the two shapes SPEC.md gives."""

from __future__ import annotations

from flask import Blueprint

from blueprints.http import now
from services import health
from services.schemas import ApiHealthSchema, HealthSchema

bp = Blueprint("health", __name__)


@bp.get("/health")
def plain_health():
    healthy = health.database_answers()
    body = HealthSchema().dump({"status": "healthy" if healthy else "unhealthy", "timestamp": int(now().timestamp())})
    return body, 200 if healthy else 503


@bp.get("/api/health")
def api_health():
    healthy = health.database_answers()
    body = ApiHealthSchema().dump({"success": healthy, "status": "healthy" if healthy else "unhealthy",
                                   "timestamp": now()})
    return body, 200 if healthy else 503
