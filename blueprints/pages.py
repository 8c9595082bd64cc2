"""GET /paid: where a buyer lands after paying on a provider's page (YOOKASSA_RETURN_URL's default)."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/paid")
def paid():
    # The page knows nothing of the order: the provider's redirect carries nothing we could trust.
    return render_template("pages/paid.html")
