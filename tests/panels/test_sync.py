"""Paid subscription orders reach the panel through the panel worker; links are stored and announced."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from services import events, notices
from services.panels import sync as panel
from services.db import db, transaction
from services.models import Purchase
from services.panels import marzban as adapter
from tests.conftest import AUTH
from tests.support.admin import app, fresh_panel_tokens  # noqa: F401
from tests.support.admin import outbox_rows, paid_subscription


def run_panel_worker(app) -> None:
    result = app.test_cli_runner().invoke(args=["worker", "run", "--provider", "panel", "--once"])
    assert result.exit_code == 0, (result.output, result.exception)


def purchase(app) -> Purchase:
    with app.app_context(), transaction():
        return db.session.execute(db.select(Purchase)).scalar_one()


def test_paid_subscription_creates_the_panel_user_and_stores_the_link(app, clock, client, marzban):
    paid_subscription(client, telegram_id=42, plan="pro", days=30)
    run_panel_worker(app)
    stored = purchase(app)
    assert stored.panel_username == "tg42_pro"
    assert marzban.user("tg42_pro")["expire"] == int((clock.now + timedelta(days=30)).timestamp())
    assert stored.subscription_url.startswith(marzban.url + "/sub/")
    assert marzban.subscription_is_current(stored.subscription_url)
    [sync] = outbox_rows(app, "panel")
    assert sync.status == "delivered"
    assert client.get("/api/status/sub-1", headers=AUTH).get_json()["subscriptionUrl"] == stored.subscription_url


def test_first_link_is_sent_to_the_buyer(app, clock, client, marzban):
    paid_subscription(client, telegram_id=42)
    run_panel_worker(app)
    [message] = outbox_rows(app, "telegram", "notify.subscription_link")
    assert message.payload["chat_id"] == 42 and purchase(app).subscription_url in message.payload["text"]


def test_extension_moves_the_expiry_and_keeps_the_link(app, clock, client, marzban):
    paid_subscription(client, "sub-1", days=30)
    run_panel_worker(app)
    first = purchase(app).subscription_url
    clock.advance(days=3)
    paid_subscription(client, "sub-2", days=10)
    run_panel_worker(app)
    assert purchase(app).subscription_url == first and marzban.subscription_is_current(first)
    assert marzban.user("tg42_pro")["expire"] == int(purchase(app).expires_at.timestamp())
    assert len(outbox_rows(app, "telegram", "notify.subscription_link")) == 1


def test_refund_shortens_the_panel_expiry_without_a_link_message(app, clock, client, marzban):
    paid_subscription(client, days=30)
    run_panel_worker(app)
    refund = notices.Notice(event_key="refund-1", event_type="REFUNDED", action=notices.REFUNDED, order_id="sub-1",
                          amount=Decimal(100), currency="RUB")
    delivery = notices.Delivery(provider="sbp", body=b"{}", headers={}, remote_addr="127.0.0.1")
    with app.app_context():
        assert events.ingest(delivery, refund, app.config["SETTINGS"], clock.now).outcome == "processed"
    run_panel_worker(app)
    assert purchase(app).expires_at == clock.now
    assert marzban.user("tg42_pro")["expire"] == int(clock.now.timestamp())
    assert len(outbox_rows(app, "telegram", "notify.subscription_link")) == 1
    assert [row.status for row in outbox_rows(app, "panel")] == ["delivered", "delivered"]


def test_panel_outage_leaves_the_sync_queued_for_a_retry(app, clock, client, marzban):
    paid_subscription(client)
    marzban.down()
    run_panel_worker(app)
    [sync] = outbox_rows(app, "panel")
    assert sync.status == "pending" and sync.attempts == 1 and "unreachable" in sync.last_error
    assert purchase(app).subscription_url is None


def test_sync_rereads_an_expiry_that_moved_during_the_panel_call(app, clock, client, marzban, monkeypatch):
    paid_subscription(client)
    stored = purchase(app)
    original = stored.expires_at
    real = adapter.MarzbanPanel.ensure_user
    calls = []

    def ensure_then_extend(self, username, expire_at, telegram_id=None):
        calls.append(expire_at)
        url = real(self, username, expire_at, telegram_id)
        if len(calls) == 1:
            with transaction():
                db.session.get(Purchase, stored.id).expires_at += timedelta(days=7)
        return url

    monkeypatch.setattr(adapter.MarzbanPanel, "ensure_user", ensure_then_extend)
    with app.app_context():
        panel.sync_purchase({"purchase_id": stored.id, "notify": True}, app.config["SETTINGS"], original)
    assert calls == [original, original + timedelta(days=7)]
    assert marzban.user("tg42_pro")["expire"] == int(purchase(app).expires_at.timestamp())
