"""No free pooled connection is a database outage: 503 for the provider to retry, never a failed event."""

from __future__ import annotations

import json

import pytest

import webhook_app
from services.db import db
from services.models import ProviderEvent
from tests.helpers import assert_error, create, status


@pytest.fixture
def tiny_pool_app(make_app, tbank, monkeypatch):
    """One pooled connection, and a request waits only 0.1 s for it."""
    original = webhook_app.engine_options
    monkeypatch.setattr(webhook_app, "engine_options", lambda url, pool_size: {
        **original(url, pool_size), "pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1})
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
