"""Claiming outbox rows under a lease and recording each delivery attempt's outcome.

A claim is one short transaction (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL;
on SQLite every transaction is BEGIN IMMEDIATE, so the same statements run under
the database's single write lock). The handler then runs outside any transaction,
and its outcome is written in a new one. A worker that dies mid-delivery leaves
its rows leased; once the lease runs out another worker claims them again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import or_, select, update

from services import metrics
from services.db import db, transaction
from services.errors import GatewayError, NotConfigured, ProviderRejected, ProviderUnavailable
from services.models import DeliveryAttempt, OutboxMessage

logger = logging.getLogger(__name__)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
RETRY = "retry"
# Retries are spread by up to this fraction of their step, so a burst of failures does not return as one burst.
JITTER = 0.1
MAX_ERROR_LENGTH = 2000


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


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, retry (with next_attempt_at) or dead."""

    status: str
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None


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


def deliver(job: Job, handler: Handler | None, owner: str, schedule: tuple[int, ...],
            clock: Callable[[], datetime], rng: random.Random) -> Outcome:
    """Run the handler outside any transaction, then record the attempt and the row's new state."""
    started = clock()
    if handler is None:
        outcome = Outcome(DEAD, error=f"no handler for kind {job.kind!r} on channel {job.channel!r}")
    elif job.attempt > len(schedule) + 1:
        # Earlier claims of this row never finished (the worker died mid-delivery): a row
        # that kills its worker must not be retried forever.
        outcome = Outcome(DEAD, error=f"gave up after {job.attempt - 1} attempts that did not finish")
    else:
        outcome = _attempt(job, handler, schedule, clock, rng)
    _record(job, owner, outcome, started, clock())
    metrics.record_delivery(job.channel, outcome.status)
    log = logger.warning if outcome.status == DEAD else logger.info
    log("outbox %s %s: %s", job.channel, job.kind, outcome.status, extra={
        "outbox_id": job.id, "attempt": job.attempt, "status_code": outcome.status_code,
        "error": outcome.error, "next_attempt_at": outcome.next_attempt_at and outcome.next_attempt_at.isoformat()})
    return outcome


def _attempt(job: Job, handler: Handler, schedule: tuple[int, ...], clock: Callable[[], datetime],
             rng: random.Random) -> Outcome:
    try:
        status_code = handler(job, clock())
    except Exception as exc:  # every failure becomes a recorded attempt; none may stop the worker
        retryable, retry_after = classify(exc)
        if not isinstance(exc, GatewayError):
            logger.exception("outbox handler for %s crashed", job.kind, extra={"outbox_id": job.id})
        error = _describe(exc)
        if not retryable or job.attempt > len(schedule):
            return Outcome(DEAD, getattr(exc, "status_code", None), error)
        at = next_attempt_at(clock(), schedule[job.attempt - 1], retry_after, schedule, rng)
        return Outcome(RETRY, getattr(exc, "status_code", None), error, at)
    return Outcome(DELIVERED, status_code)


def classify(exc: BaseException) -> tuple[bool, float | None]:
    """(retryable, retry_after): only refusals the receiver calls final are permanent."""
    if isinstance(exc, DeliveryFailed):
        return exc.retryable, exc.retry_after
    if isinstance(exc, ProviderUnavailable):
        return True, exc.retry_after
    if isinstance(exc, ProviderRejected):
        return False, None
    # NotConfigured: an operator can fix the setting within the schedule; bugs: a fix can be deployed.
    return True, None


def next_attempt_at(now: datetime, step: int, retry_after: float | None, schedule: tuple[int, ...],
                    rng: random.Random) -> datetime:
    """now + the scheduled step with a little jitter, or the receiver's retry_after when that is later."""
    delay = step * (1 + rng.uniform(0, JITTER))
    if retry_after is not None and retry_after > 0:
        # A receiver cannot push a retry beyond the schedule's longest step.
        delay = max(delay, min(retry_after, max(schedule)))
    return now + timedelta(seconds=delay)


def _describe(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, NotConfigured):
        text = f"not configured: {text}"
    return text[:MAX_ERROR_LENGTH]


def _record(job: Job, owner: str, outcome: Outcome, started: datetime, finished: datetime) -> None:
    """Store the attempt; change the row only while it is pending and (for failures) still ours."""
    values: dict[str, Any] = {"lease_until": None, "lease_owner": None}
    if outcome.status == DELIVERED:
        values.update(status=DELIVERED, delivered_at=finished, last_error=None)
    elif outcome.status == RETRY:
        values.update(next_attempt_at=outcome.next_attempt_at, last_error=outcome.error)
    else:
        values.update(status=DEAD, last_error=outcome.error)
    statement = update(OutboxMessage).where(OutboxMessage.id == job.id, OutboxMessage.status == PENDING)
    if outcome.status != DELIVERED:
        # A delivery is a fact whoever holds the lease; a failure only counts for the current claim.
        statement = statement.where(OutboxMessage.lease_owner == owner, OutboxMessage.attempts == job.attempt)
    with transaction():
        db.session.add(DeliveryAttempt(
            outbox_pk=job.id, number=job.attempt, outcome=outcome.status, status_code=outcome.status_code,
            error=outcome.error, worker=owner, started_at=started, finished_at=finished))
        changed = db.session.execute(statement.values(**values).execution_options(synchronize_session=False))
    if changed.rowcount == 0:
        logger.warning("outbox row changed hands before its outcome was recorded",
                       extra={"outbox_id": job.id, "attempt": job.attempt, "outcome": outcome.status})
