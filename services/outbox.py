"""The outbox: outbound work written in the caller's transaction, and claimed by workers under a lease.

A claim is one short transaction (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite every
transaction is BEGIN IMMEDIATE, so the same statements run under the database's single write lock).
The handler then runs outside any transaction (services/worker/runtime.py). A worker that dies
mid-delivery leaves its rows leased; once the lease runs out another worker claims them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import or_, select, update

from services.db import db, transaction
from services.driver import insert_ignore, insert_ignore_rows
from services.errors import GatewayError
from services.models import Order, OutboxMessage
from services.providers import registry
from webhook_config import Settings

if TYPE_CHECKING:
    from services.orders import OrderRow

# Channels of the core; each provider's own channel is named after the provider.
MERCHANT = "merchant"
PANEL = "panel"
CORE_CHANNELS = (PANEL, MERCHANT)
# Row states.
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class Message:
    """One outbox row to be: where it goes, what it is, the key that makes a repeat of its cause a no-op."""

    channel: str
    kind: str
    dedupe_key: str
    payload: dict[str, Any]


def enqueue(channel: str, kind: str, dedupe_key: str, payload: dict[str, Any], now: datetime,
            order: Order | OrderRow | None = None) -> int | None:
    """Queue one message; the dedupe key makes a repeat of the same cause a no-op (None)."""
    return _enqueue(Message(channel, kind, dedupe_key, payload), now, order)


def _enqueue(message: Message, now: datetime, order: Order | OrderRow | None) -> int | None:
    return insert_ignore(OutboxMessage, _row(message, now, order), ["dedupe_key"])


def enqueue_all(messages: list[Message | None], now: datetime, order: Order | OrderRow | None = None) -> None:
    """Queue the messages of one cause in one statement (None: a message with nobody to send it); each one's
    dedupe key makes its repeat a no-op."""
    insert_ignore_rows(OutboxMessage, [_row(message, now, order) for message in messages if message is not None],
                       ["dedupe_key"])


def _row(message: Message, now: datetime, order: Order | OrderRow | None) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "kind": message.kind,
        "dedupe_key": message.dedupe_key,
        "payload": message.payload,
        "order_pk": order.id if order is not None else None,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def buyer_channel() -> str:
    """The channel whose worker messages buyers (the registry's notifier)."""
    return registry.notifier().channel


def buyer_message(chat_id: int, text: str, kind: str, dedupe_key: str, settings: Settings) -> Message | None:
    """A message to the buyer, or None when no notifier is configured."""
    notifier = registry.notifier()
    if not notifier.enabled(settings):
        return None
    return Message(notifier.channel, kind, dedupe_key, {"chat_id": chat_id, "text": text})


def enqueue_buyer_message(chat_id: int, text: str, kind: str, dedupe_key: str, settings: Settings, now: datetime,
                          order: Order | OrderRow | None = None) -> int | None:
    """Queue a message to the buyer, unless no notifier is configured."""
    message = buyer_message(chat_id, text, kind, dedupe_key, settings)
    return None if message is None else _enqueue(message, now, order)


def enqueue_panel_sync(order: OrderRow, purchase_id: int, cause: str, settings: Settings, now: datetime, *,
                       notify: bool) -> int | None:
    """Queue the panel call that brings the purchase's panel user in step with its expiry (when a panel is set)."""
    if not settings.panel_type:
        return None
    return enqueue(PANEL, "panel.sync", f"panel:{order.order_id}:{cause}",
                   {"purchase_id": purchase_id, "notify": notify}, now, order)


@dataclass(frozen=True)
class Job:
    """A claimed outbox row, detached from the session: handlers never touch the ORM row."""

    id: int
    channel: str
    kind: str
    dedupe_key: str
    payload: dict[str, Any]
    order_pk: int | None
    attempt: int
    lease_until: datetime


class Handler(Protocol):
    """Delivers one job; returns the receiver's HTTP status (or None) and raises to fail the attempt.

    ProviderUnavailable (and any unexpected exception) is retried per the schedule, honouring its
    retry_after; ProviderRejected is permanent (dead at once); DeliveryFailed says which it is.
    """

    def __call__(self, job: Job, now: datetime) -> int | None: ...


class DeliveryFailed(GatewayError):
    """An attempt that failed with a known receiver status; `retryable` decides retry or dead."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


def claim(channel: str, owner: str, now: datetime, limit: int, lease: timedelta) -> list[Job]:
    """Lease up to `limit` due rows of `channel` to `owner`; rows whose lease expired count as due."""
    with transaction():
        ids = db.session.execute(
            select(OutboxMessage.id)
            .where(OutboxMessage.channel == channel, OutboxMessage.status == PENDING,
                   OutboxMessage.next_attempt_at <= now,
                   or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until <= now))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        if not ids:
            return []
        db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids))
            .values(lease_until=now + lease, lease_owner=owner, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False))
        rows = db.session.execute(
            select(OutboxMessage).where(OutboxMessage.id.in_(ids))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .execution_options(populate_existing=True)
        ).scalars().all()
        return [Job(id=row.id, channel=row.channel, kind=row.kind, dedupe_key=row.dedupe_key,
                    payload=row.payload, order_pk=row.order_pk, attempt=row.attempts,
                    lease_until=row.lease_until) for row in rows]


def release(jobs: list[Job], owner: str) -> None:
    """Give back claimed jobs that were not attempted (shutdown, or the lease would not cover them)."""
    for job in jobs:
        with transaction():
            db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == job.id, OutboxMessage.status == PENDING,
                       OutboxMessage.lease_owner == owner, OutboxMessage.attempts == job.attempt)
                .values(lease_until=None, lease_owner=None, attempts=OutboxMessage.attempts - 1)
                .execution_options(synchronize_session=False))
