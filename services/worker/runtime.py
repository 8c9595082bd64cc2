"""Delivering one claimed outbox row: run its handler outside any transaction, record the attempt, and
schedule the retry (with backoff and jitter) or dead-letter it."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import update

from services import metrics
from services.db import db, transaction
from services.errors import GatewayError, NotConfigured, ProviderRejected, ProviderUnavailable
from services.models import DeliveryAttempt, OutboxMessage
from services.outbox import DEAD, DELIVERED, PENDING, DeliveryFailed, Handler, Job

logger = logging.getLogger(__name__)

RETRY = "retry"
# Retries are spread by up to this fraction of their step, so a burst of failures does not return as one burst.
JITTER = 0.1
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, retry (with next_attempt_at) or dead."""

    status: str
    status_code: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None


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
