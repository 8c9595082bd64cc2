"""Prometheus metrics: every metric object, the helpers that move them, and the /metrics exposition.

Under systemd PROMETHEUS_MULTIPROC_DIR is set for gunicorn and for every worker
process, prometheus_client keeps each process's values in files there, and a
scrape sums them (MultiProcessCollector): the workers' delivery and
reconciliation counters reach the app's /metrics that way. Without it the
process's own default registry is served. Outbox gauges are not
kept by any process: they are read from the database at scrape time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from services import outbox
from services.db import DATABASE_DOWN, db
from services.driver import CURRENT_UNIT
from services.models import OutboxMessage

logger = logging.getLogger(__name__)

# Request methods get their own label value; anything else a client invents is counted as OTHER.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
BAD_SIGNATURE = "bad_signature"
OUTBOX_WAITING = "pending"

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
                          ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20))
WEBHOOK_EVENTS = Counter("webhook_events_total", "Provider events received, by provider and outcome "
                         "(processed, duplicate, ignored, unmatched, mismatch, conflict, failed, bad_signature).",
                         ["provider", "outcome"])
FULFILMENTS = Counter("fulfilments_total", "Grants and reversals committed, by kind.", ["kind"])
DELIVERY_ATTEMPTS = Counter("delivery_attempts_total", "Outbox delivery attempts, by channel and outcome.",
                            ["channel", "outcome"])
RECONCILIATIONS = Counter("reconciliation_results_total", "Payments checked against the provider, by result.",
                          ["provider", "result"])

_PENDING_KEY = "metrics_after_commit"
_install_lock = threading.Lock()
_installed = False


def record_request(route: str | None, method: str, status: int, seconds: float | None) -> None:
    """Count one answered request; `route` is the URL rule (never the raw path: label cardinality)."""
    route = route or UNMATCHED_ROUTE
    labels = (route, method if method in METHODS else "OTHER", status)
    counted = _REQUEST_COUNTS.get(labels)
    if counted is None:
        counted = _REQUEST_COUNTS[labels] = (HTTP_REQUESTS.labels(route, labels[1], str(status)),
                                             HTTP_DURATION.labels(route))
    counted[0].inc()
    if seconds is not None:
        counted[1].observe(seconds)


# The labelled children of the request metrics, by (route, method, status): prometheus_client's labels()
# validates and locks on every call, which cost as much as the increments on the status read.
_REQUEST_COUNTS: dict[tuple[str, str, int], tuple] = {}


def record_webhook(provider: str, outcome: str) -> None:
    """Count one provider event by what came of it (call after its transaction committed)."""
    WEBHOOK_EVENTS.labels(provider, outcome).inc()


def record_delivery(channel: str, outcome: str) -> None:
    """Count one outbox delivery attempt (for the workers: delivered, retry, dead, ...)."""
    DELIVERY_ATTEMPTS.labels(channel, outcome).inc()


def record_reconciliation(provider: str, result: str) -> None:
    """Count one payment reconciled against its provider (for the reconciliation job)."""
    RECONCILIATIONS.labels(provider, result).inc()


def record_fulfilment(kind: str) -> None:
    """Count a grant or reversal once the transaction that wrote it commits; nothing if it rolls back."""
    unit = CURRENT_UNIT.get()
    if unit is not None:
        unit.after_commit(FULFILMENTS.labels(kind).inc)
        return
    install()
    db.session.info.setdefault(_PENDING_KEY, []).append(kind)


def install() -> None:
    """Hook commit and rollback of every session so counts made inside a transaction follow its fate."""
    global _installed
    # Asked inside the SQLite writer lock on every grant: once hooked, no lock and no listener lookup.
    if _installed:
        return
    with _install_lock:
        if not _installed:
            event.listen(Session, "after_commit", _count_committed)
            # "soft": also when the transaction never reached the database. The code takes no savepoints,
            # so any rollback ends the whole unit of work.
            event.listen(Session, "after_soft_rollback", _drop_rolled_back)
            _installed = True


def _count_committed(session: Session) -> None:
    for kind in session.info.pop(_PENDING_KEY, ()):
        FULFILMENTS.labels(kind).inc()


def _drop_rolled_back(session: Session, _previous_transaction) -> None:
    session.info.pop(_PENDING_KEY, None)


def multiprocess_dir() -> str | None:
    """prometheus_client's own switch, read where it reads it: the process environment at import time."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_exiting() -> None:
    """Drop this process's live-gauge files; its counter files stay until gunicorn folds them at its next start."""
    path = multiprocess_dir()
    if path:
        mark_process_dead(os.getpid(), path)


def exposition(now: datetime) -> tuple[bytes, str]:
    """The /metrics body and its content type: process (or all-process) metrics plus the outbox gauges."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(OutboxCollector(now))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """Serves another registry's metrics from the scrape registry."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


class OutboxCollector:
    """outbox_depth and outbox_oldest_due_seconds per channel, read from the database at scrape time."""

    def __init__(self, now: datetime):
        self.now = now

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self._waiting()
        except DATABASE_DOWN as exc:
            logger.warning("metrics: outbox not readable (%s)", type(exc).__name__)
            return
        depth = GaugeMetricFamily("outbox_depth", "Outbox messages waiting for delivery, by channel.",
                                  labels=["channel"])
        oldest = GaugeMetricFamily("outbox_oldest_due_seconds",
                                   "How long the oldest due, undelivered message has been due, by channel.",
                                   labels=["channel"])
        for channel in sorted({*outbox.CORE_CHANNELS, outbox.buyer_channel(), *rows}):
            count, first_due = rows.get(channel, (0, None))
            depth.add_metric([channel], count)
            overdue = (self.now - first_due).total_seconds() if first_due is not None else 0.0
            oldest.add_metric([channel], max(overdue, 0.0))
        yield depth
        yield oldest

    def _waiting(self) -> dict[str, tuple[int, datetime | None]]:
        """Per channel: waiting messages and the earliest due time among those already due."""
        due = func.min(OutboxMessage.next_attempt_at).filter(OutboxMessage.next_attempt_at <= self.now)
        statement = (select(OutboxMessage.channel, func.count(), due)
                     .where(OutboxMessage.status == OUTBOX_WAITING).group_by(OutboxMessage.channel))
        try:
            rows = db.session.execute(statement).all()
        finally:
            # A read still opens a transaction (BEGIN IMMEDIATE on SQLite): end it at once.
            db.session.rollback()
        return {channel: (count, first_due) for channel, count, first_due in rows}

