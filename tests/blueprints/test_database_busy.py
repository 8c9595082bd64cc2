"""No free pooled connection is a database outage: 503 for the provider to retry, never a failed event."""

from __future__ import annotations

import json
import runpy
import threading
import time
from contextlib import contextmanager

import pytest

import webhook_app
from services.db import db
from services.models import Order, ProviderEvent
from tests.helpers import assert_error, create, status


@pytest.fixture
def tiny_pool_app(make_app, tbank, monkeypatch):
    """One pooled connection, and a request waits only 0.1 s for it."""
    original = webhook_app.engine_options
    monkeypatch.setattr(webhook_app, "engine_options", lambda *args: {
        **original(*args), "pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1})
    return make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key, TBANK_PASSWORD=tbank.password,
                    TBANK_API_URL=tbank.api_url)


def notify(client, body: dict):
    return client.post("/webhook/sbp/tbank", data=json.dumps(body), content_type="application/json")


def test_notification_without_a_free_connection_is_retried_not_recorded_as_failed(tiny_pool_app, tbank):
    client = tiny_pool_app.test_client()
    assert create(client).status_code == 201
    notification = tbank.notification(tbank.payment_by_order("order-1")["PaymentId"])
    with tiny_pool_app.app_context():
        held = db.engine.connect()  # e.g. every thread of the process busy with a request
        try:
            busy = notify(client, notification)
        finally:
            held.close()
    assert_error(busy, 503, "database_unavailable")
    assert busy.headers["Retry-After"] == "5"
    with tiny_pool_app.app_context():
        assert db.session.execute(db.select(ProviderEvent)).scalars().all() == []
    assert notify(client, notification).get_data() == b"OK"
    assert status(client)["status"] == "paid"


# --- lock waits -------------------------------------------------------------------------------------------

def gunicorn_timeout(repo_root, monkeypatch) -> int:
    monkeypatch.delenv("GUNICORN_TIMEOUT", raising=False)
    return runpy.run_path(str(repo_root / "gunicorn.conf.py"))["timeout"]


def test_database_lock_wait_is_well_under_the_request_timeout(app, repo_root, monkeypatch):
    """The wait the engine really uses (SQLite busy timeout, PostgreSQL lock_timeout) is at most a third of it."""
    limit_ms = gunicorn_timeout(repo_root, monkeypatch) * 1000 / 3
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            waits_ms = connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        else:
            waits_ms = int(connection.exec_driver_sql(
                "SELECT setting FROM pg_settings WHERE name = 'lock_timeout'").scalar_one())
        assert 0 < waits_ms <= limit_ms
        if connection.dialect.name != "sqlite":
            assert db.engine.pool.timeout() <= limit_ms / 1000


@contextmanager
def order_row_locked(app, order_id: str, release_after: float = 10.0):
    """Another transaction holds the order's row (PostgreSQL) or the write lock (SQLite).

    It lets go after `release_after` seconds in any case, so a request that would wait forever fails the
    test instead of hanging it.
    """
    with app.app_context():
        holder = db.engine.connect()
        holder.begin()
        holder.execute(db.update(Order).where(Order.order_id == order_id).values(description="held"))
        timer = threading.Timer(release_after, holder.rollback)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            holder.close()


def test_a_lock_held_elsewhere_is_a_quick_503_to_retry(make_app):
    client = make_app(DATABASE_LOCK_TIMEOUT_SECONDS="0.2").test_client()
    assert create(client).status_code == 201
    with order_row_locked(client.application, "order-1"):
        started = time.monotonic()
        busy = create(client)
        waited = time.monotonic() - started
    assert_error(busy, 503, "database_unavailable")
    assert busy.headers["Retry-After"] == "5"
    assert waited < 3
    assert create(client).status_code == 200
