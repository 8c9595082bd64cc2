"""Writing outbound work to the outbox, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.db import insert_ignore
from services.models import Order, OutboxMessage

MERCHANT = "merchant"
TELEGRAM = "telegram"
PANEL = "panel"


def enqueue(channel: str, kind: str, dedupe_key: str, payload: dict[str, Any], now: datetime,
            order: Order | None = None) -> int | None:
    """Queue one message; the dedupe key makes a repeat of the same cause a no-op (None)."""
    return insert_ignore(OutboxMessage, {
        "channel": channel,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "payload": payload,
        "order_pk": order.id if order is not None else None,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }, ["dedupe_key"])
