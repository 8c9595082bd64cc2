"""The core's public types for inbound events: what a provider package hands to the inbox, and what comes back.

A provider translates its own wire format into a `Notice` (what happened, in the gateway's terms)
and a `Delivery` (the raw request, kept for the audit trail); `events.ingest` stores and settles it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

# What an event asks of its order.
PAID, REFUNDED, FAILED, CANCELLED, EXPIRED, IGNORE = "paid", "refunded", "failed", "cancelled", "expired", "ignore"
# A subscription's later charge that the provider made by itself: one more period for a paid order.
RENEWED = "renewed"

# Event outcomes. Those in NEEDS_REVIEW are shown to support as work to do.
PROCESSED, IGNORED, UNMATCHED, MISMATCH, CONFLICT, ERROR, ASSIGNED = (
    "processed", "ignored", "unmatched", "mismatch", "conflict", "failed", "assigned")
NEEDS_REVIEW = frozenset({UNMATCHED, MISMATCH, CONFLICT, ERROR})
# Outcomes of an event that was applied to its order.
SETTLED = frozenset({PROCESSED, ASSIGNED})
RETRYABLE = frozenset({ERROR})
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Delivery:
    """The raw inbound request, kept for the audit trail."""

    provider: str
    body: bytes
    headers: dict[str, str]
    remote_addr: str | None
    verification: str = "valid"


@dataclass(frozen=True)
class Notice:
    """What a provider's event means, in the gateway's own terms."""

    event_key: str
    event_type: str
    action: str
    order_id: str | None = None
    provider_ref: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    provider_payment_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # For a charge of a subscription the provider renews: who paid it, and the end of the period it paid.
    payer_id: int | None = None
    renews_until: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    event_id: int
    outcome: str
    order_id: str | None

    @property
    def duplicate(self) -> bool:
        return self.outcome == DUPLICATE
