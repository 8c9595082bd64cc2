"""Typed models: orders, the provider-event inbox, fulfilments, the ledger, purchases and the outbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, false)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.db import Money, UTCDateTime, db, utcnow


class Order(db.Model):
    """One payment a caller asked for, identified by the caller's orderId."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("provider", "provider_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(10))
    description: Mapped[str | None] = mapped_column(String(1024))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    buyer_email: Mapped[str | None] = mapped_column(String(254), index=True)
    credit: Mapped[int | None] = mapped_column(Integer)
    subscription_plan: Mapped[str | None] = mapped_column(String(64))
    subscription_days: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    provider_ref: Mapped[str | None] = mapped_column(String(128))
    provider_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    create_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    # A subscription the provider charges again every period by itself (Stars subscriptions).
    recurring: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What the provider says of those renewals: chargeId and payerId of the first charge (to cancel them),
    # expiresAt (the provider's own end of the paid period), cancelledAt.
    renewal: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    purchase: Mapped[Purchase | None] = relationship()


class ProviderEvent(db.Model):
    """A verified inbound delivery, stored before it is acknowledged: the audit trail support reads."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_key"),
                      Index("ix_provider_events_retry_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    claimed_order_id: Mapped[str | None] = mapped_column(String(128), index=True)
    order_pk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(10))
    provider_payment_id: Mapped[str | None] = mapped_column(String(128))
    verification: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    processing_attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A failed event is processed again automatically at this time; None once a person must look at it.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order | None] = relationship()


class Fulfilment(db.Model):
    """What was granted (or taken back) for an order; unique per kind, which makes granting exactly-once."""

    __tablename__ = "fulfilments"
    __table_args__ = (UniqueConstraint("order_pk", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    kind: Mapped[str] = mapped_column(String(32))
    event_pk: Mapped[int | None] = mapped_column(ForeignKey("provider_events.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(db.Model):
    """One signed movement of a buyer's balance; the balance is their sum."""

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("order_pk", "reason"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    order_pk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Purchase(db.Model):
    """A buyer's subscription to a plan; paid orders activate or extend it."""

    __tablename__ = "purchases"
    __table_args__ = (UniqueConstraint("telegram_id", "plan"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    plan: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    panel_username: Mapped[str | None] = mapped_column(String(64))
    subscription_url: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OutboxMessage(db.Model):
    """Outbound work written in the same transaction as its cause, delivered by a provider's worker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "channel", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    order_pk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(db.Model):
    """One try at delivering an outbox message, shown in the console timeline."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_pk: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
