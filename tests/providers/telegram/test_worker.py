"""Telegram channel: buyer messages (403 final, 429 waits retry_after) and forwarded updates."""

from __future__ import annotations

import pytest

from services import outbox
from services.db import transaction
from tests.support.worker import attempts, frozen_now, run_worker, wired_env
from tests.support.worker import outbox as outbox_rows

CHAT = 5551234


@pytest.fixture
def app(make_app, telegram):
    app = make_app(**wired_env(telegram=telegram))
    frozen_now(app)
    return app


def queue(app, kind="notify.paid", payload=None):
    payload = payload or {"chat_id": CHAT, "text": "✅ Payment received"}
    with app.app_context(), transaction():
        return outbox.enqueue("telegram", kind, f"telegram:{kind}", payload, app.config["CLOCK"].now)


def test_message_is_sent_to_the_buyer(app, telegram):
    queue(app)
    run_worker(app, "telegram")
    assert [m["text"] for m in telegram.sent_messages(CHAT)] == ["✅ Payment received"]
    assert outbox_rows(app)[0].status == "delivered"


def test_blocked_buyer_is_dead_at_once(app, telegram):
    telegram.block_chat(CHAT)
    row_id = queue(app)
    run_worker(app, "telegram")
    [row] = outbox_rows(app)
    assert row.status == "dead" and "blocked by the user" in row.last_error
    assert [(a.outcome, a.status_code) for a in attempts(app, row_id)] == [("dead", 403)]


def test_rate_limit_waits_for_retry_after(app, telegram):
    clock = app.config["CLOCK"]
    telegram.rate_limit_next(1, retry_after=30, method="sendMessage")
    queue(app)
    run_worker(app, "telegram")
    [row] = outbox_rows(app)
    assert row.status == "pending" and (row.next_attempt_at - clock.now).total_seconds() >= 30
    clock.advance(seconds=20)  # past the schedule's 5 s, before retry_after
    run_worker(app, "telegram")
    assert telegram.sent_messages() == []
    clock.advance(seconds=11)
    run_worker(app, "telegram")
    assert len(telegram.sent_messages(CHAT)) == 1 and outbox_rows(app)[0].status == "delivered"


def test_forwarded_update_is_posted_byte_for_byte(app, sink):
    raw = '{"update_id": 1, "message": {"text": "hi", "price": 1.10}}'
    queue(app, "forward.update", {"url": f"{sink.url}/bot-backend", "body": raw})
    run_worker(app, "telegram")
    [request] = sink.requests
    assert (request.method, request.path, request.body) == ("POST", "/bot-backend", raw.encode())
    assert request.headers["content-type"] == "application/json"
    assert outbox_rows(app)[0].status == "delivered"
