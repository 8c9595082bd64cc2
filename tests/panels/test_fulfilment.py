"""Paid subscriptions on each panel (Marzban, Remnawave, 3x-ui), through the API, the inbox and the panel worker:
the right absolute expiry, extensions from the current expiry, exactly one period under duplicates and a lost
answer, refreshed links, and a panel outage left queued and retried."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import requests

from services import events, notices
from services.db import db, transaction, utcnow
from services.models import Order, Purchase
from tests.conftest import AUTH, FrozenClock
from tests.support.admin import ADMIN, outbox_rows, paid_subscription
from tests.support.panels import answer_changes_too_late, app_env, fresh_panel_sessions, wired  # noqa: F401
from tests.support.worker import run_worker

USER = "tg42_pro"
PARALLEL = 30


@pytest.fixture
def app(make_app, wired):
    return make_app(**app_env(wired))


@pytest.fixture
def clock(app) -> FrozenClock:
    """The real time to the second: Remnawave compares expiries with its own clock, panels store seconds or ms."""
    frozen = FrozenClock(utcnow().replace(microsecond=0))
    app.config["CLOCK"] = frozen
    return frozen


def purchase(app) -> Purchase:
    with app.app_context(), transaction():
        return db.session.execute(db.select(Purchase)).scalar_one()


def test_a_paid_subscription_creates_the_panel_user_with_its_expiry(app, client, clock, wired):
    status = paid_subscription(client, days=30)
    run_worker(app, "panel")
    stored = purchase(app)
    assert stored.panel_username == USER and stored.expires_at == clock.now + timedelta(days=30)
    assert wired.expiry(USER) == stored.expires_at
    assert wired.link_is_current(USER, stored.subscription_url)
    assert client.get(f"/api/status/{status['orderId']}", headers=AUTH).get_json()["subscriptionUrl"] == \
        stored.subscription_url
    [message] = outbox_rows(app, "telegram", "notify.subscription_link")
    assert message.payload["chat_id"] == 42 and stored.subscription_url in message.payload["text"]


def test_a_second_purchase_extends_from_the_current_expiry(app, client, clock, wired):
    paid_subscription(client, "sub-1", days=30)
    run_worker(app, "panel")
    first = purchase(app)
    clock.advance(days=3)
    paid_subscription(client, "sub-2", days=10)
    run_worker(app, "panel")
    assert wired.expiry(USER) == first.expires_at + timedelta(days=10) == purchase(app).expires_at
    assert purchase(app).subscription_url == first.subscription_url
    assert wired.link_is_current(USER, first.subscription_url)


def test_a_lapsed_purchase_extends_from_now(app, client, clock, wired):
    paid_subscription(client, "sub-1", days=1)
    run_worker(app, "panel")
    clock.advance(days=5)
    paid_subscription(client, "sub-2", days=10)
    run_worker(app, "panel")
    assert wired.expiry(USER) == clock.now + timedelta(days=10)


def test_a_refund_ends_the_subscription_on_the_panel(app, client, clock, wired):
    paid_subscription(client, days=30)
    run_worker(app, "panel")
    assert wired.active_at(USER, clock.now + timedelta(days=1))
    clock.advance(hours=1)
    refund = notices.Notice(event_key="refund-1", event_type="REFUNDED", action=notices.REFUNDED, order_id="sub-1",
                            amount=Decimal(100), currency="RUB")
    delivery = notices.Delivery(provider="sbp", body=b"{}", headers={}, remote_addr="127.0.0.1")
    with app.app_context():
        assert events.ingest(delivery, refund, app.config["SETTINGS"], clock.now).outcome == "processed"
    run_worker(app, "panel")
    assert [row.status for row in outbox_rows(app, "panel")] == ["delivered", "delivered"]
    assert not wired.active_at(USER, clock.now + timedelta(minutes=5))


def test_refresh_rotates_the_link_and_tells_the_buyer(app, client, clock, wired):
    purchase_id = paid_subscription(client)["purchaseId"]
    run_worker(app, "panel")
    old = purchase(app).subscription_url
    response = client.post(f"/admin/update_configs/{purchase_id}", headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    new = response.get_json()["subscriptionUrl"]
    assert new != old and wired.link_is_current(USER, new) and not wired.link_is_current(USER, old)
    assert purchase(app).subscription_url == new and wired.expiry(USER) == purchase(app).expires_at
    texts = [row.payload["text"] for row in outbox_rows(app, "telegram", "notify.subscription_link")]
    assert len(texts) == 2 and new in texts[-1]


def test_bulk_refresh_rotates_every_active_link(app, client, clock, wired):
    paid_subscription(client, "sub-1", telegram_id=41)
    paid_subscription(client, "sub-2", telegram_id=42)
    response = client.post("/admin/update_configs", headers=ADMIN)
    assert response.get_json() == {"success": True, "total": 2, "succeeded": 2, "failed": 0, "connectionErrors": 0}
    for telegram_id in (41, 42):
        with app.app_context(), transaction():
            url = db.session.execute(db.select(Purchase.subscription_url)
                                     .where(Purchase.telegram_id == telegram_id)).scalar_one()
        assert wired.link_is_current(f"tg{telegram_id}_pro", url)


def test_a_panel_outage_leaves_the_call_queued_then_delivers_it(app, client, clock, wired):
    paid_subscription(client)
    wired.fake.down()
    run_worker(app, "panel")
    [sync] = outbox_rows(app, "panel")
    assert (sync.status, sync.attempts) == ("pending", 1) and sync.next_attempt_at > clock.now
    assert "unreachable" in sync.last_error and purchase(app).subscription_url is None
    wired.fake.up()
    clock.advance(seconds=(sync.next_attempt_at - clock.now).total_seconds())
    run_worker(app, "panel")
    [sync] = outbox_rows(app, "panel")
    assert (sync.status, sync.attempts) == ("delivered", 2)
    assert wired.expiry(USER) == purchase(app).expires_at and purchase(app).subscription_url


def test_duplicate_webhooks_and_a_lost_panel_answer_add_one_period(app, base_env, tbank, wired, tmp_path,
                                                                   monkeypatch):
    from tests.support.live import LiveServer

    env = {**base_env, **app_env(wired), "SBP_GATEWAY": "tbank", "TBANK_TERMINAL_KEY": tbank.terminal_key,
           "TBANK_PASSWORD": tbank.password, "TBANK_API_URL": tbank.api_url}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        order = {"amount": 100, "orderId": "race-1", "telegramId": 42, "subscription": {"plan": "pro", "days": 30}}
        assert requests.post(f"{live.url}/api/payment", json=order, headers=AUTH, timeout=30).status_code == 201
        body = tbank.notification(tbank.payment_by_order("race-1")["PaymentId"], "CONFIRMED")
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            responses = list(pool.map(lambda _: requests.post(f"{live.url}/webhook/sbp/tbank", json=body,
                                                              timeout=30), range(PARALLEL)))
        assert [r.text for r in responses] == ["OK"] * PARALLEL
    with app.app_context(), transaction():
        paid_at = db.session.execute(db.select(Order.paid_at)).scalar_one()
    clock = FrozenClock(utcnow())
    app.config["CLOCK"] = clock
    answer_changes_too_late(wired, monkeypatch, seconds=3)
    run_worker(app, "panel")
    [sync] = outbox_rows(app, "panel")
    assert (sync.status, sync.attempts) == ("pending", 1) and "within" in sync.last_error
    one_period = wired.as_stored(paid_at + timedelta(days=30))
    assert wired.expiry(USER) == one_period  # the change landed; its answer did not
    wired.fake.delay_seconds = 0
    monkeypatch.undo()
    clock.advance(seconds=(sync.next_attempt_at - clock.now).total_seconds())
    run_worker(app, "panel")
    assert [row.status for row in outbox_rows(app, "panel")] == ["delivered"]
    assert wired.expiry(USER) == one_period == wired.as_stored(purchase(app).expires_at)
    assert getattr(wired.fake, "extend_calls", 0) == 0
