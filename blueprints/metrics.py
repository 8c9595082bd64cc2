"""GET /metrics: Prometheus text format (nginx keeps it to loopback)."""

from __future__ import annotations

from flask import Blueprint, Response

from blueprints.http import now
from services import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    body, content_type = metrics.exposition(now())
    return Response(body, content_type=content_type)
