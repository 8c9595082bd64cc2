"""Whether the service's dependencies answer."""

from __future__ import annotations

import logging

from sqlalchemy import text

from services.db import DATABASE_DOWN, db

logger = logging.getLogger(__name__)


def database_answers() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except DATABASE_DOWN as exc:
        logger.warning("health check: database unavailable (%s)", type(exc).__name__)
        db.session.rollback()
        return False
