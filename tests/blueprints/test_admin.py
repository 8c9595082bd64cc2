"""The admin JSON API: every status of every endpoint, against the fake Marzban panel."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from services import notices
from services.audit import AuditLog
from services.db import db, transaction
from services.models import ProviderEvent
from tests.conftest import AUTH
from tests.helpers import assert_error
from tests.support.admin import app, fresh_panel_tokens  # noqa: F401
from tests.support.admin import ADMIN, ADMIN_KEY, create_order, outbox_rows, paid_subscription, panel_env

ACTOR = f"api-key:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:6]}"


def audit_rows(app, action: str | None = None) -> list[AuditLog]:
    with app.app_context(), transaction():
        query = db.select(AuditLog).order_by(AuditLog.id).execution_options(populate_existing=True)
        return list(db.session.execute(query.where(AuditLog.action == action) if action else query).scalars())


def refresh(client, purchase_id: int, headers=ADMIN):
    return client.post(f"/admin/update_configs/{purchase_id}", headers=headers)


# --- POST /admin/update_configs/{purchase_id} -------------------------------------------------------------

def test_refresh_returns_a_new_working_link_and_tells_the_buyer(app, client, clock, marzban):
    status = paid_subscription(client)
    response = refresh(client, status["purchaseId"])
    assert response.status_code == 200
    body = response.get_json()
    assert body == {"success": True, "purchaseId": status["purchaseId"], "subscriptionUrl": body["subscriptionUrl"]}
    assert body["subscriptionUrl"].startswith(marzban.url + "/sub/")
    assert marzban.subscription_is_current(body["subscriptionUrl"])
    [message] = outbox_rows(app, "telegram", "notify.subscription_link")
    assert message.payload["chat_id"] == 42 and body["subscriptionUrl"] in message.payload["text"]
    assert "stops working" in message.payload["text"]
    assert client.get("/api/status/sub-1", headers=AUTH).get_json()["subscriptionUrl"] == body["subscriptionUrl"]
    [entry] = audit_rows(app, "purchase.refresh_link")
    assert (entry.actor, entry.target, entry.details["outcome"]) == (ACTOR, f"purchase:{status['purchaseId']}",
                                                                     "refreshed")


def test_refresh_twice_revokes_the_first_link(client, marzban):
    purchase_id = paid_subscription(client)["purchaseId"]
    first = refresh(client, purchase_id).get_json()["subscriptionUrl"]
    second = refresh(client, purchase_id).get_json()["subscriptionUrl"]
    assert marzban.subscription_is_current(second) and not marzban.subscription_is_current(first)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, AUTH, {"Authorization": ADMIN_KEY}])
def test_refresh_without_the_admin_key_is_401(client, headers):
    response = refresh(client, 1, headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_admin_api_without_a_configured_key_is_503(make_app, marzban):
    env = {k: v for k, v in panel_env(marzban).items() if k != "ADMIN_API_KEY"}
    assert_error(make_app(**env).test_client().post("/admin/update_configs/1", headers=ADMIN), 503, "not_configured")


def test_refresh_of_an_unknown_purchase_is_404(client):
    assert_error(refresh(client, 999), 404, "not_found")


def test_refresh_without_a_panel_is_503(make_app, marzban):
    env = {k: v for k, v in panel_env(marzban).items() if not k.startswith(("PANEL", "MARZBAN"))}
    client = make_app(**env).test_client()
    purchase_id = paid_subscription(client)["purchaseId"]
    assert_error(refresh(client, purchase_id), 503, "not_configured")


def test_refresh_with_the_panel_down_is_503_and_audited(app, client, marzban):
    purchase_id = paid_subscription(client)["purchaseId"]
    marzban.down()
    assert_error(refresh(client, purchase_id), 503, "panel_unreachable")
    [entry] = audit_rows(app, "purchase.refresh_link")
    assert entry.details["outcome"] == "failed"
    assert outbox_rows(app, "telegram", "notify.subscription_link") == []


def test_refresh_with_a_panel_5xx_is_503(client, marzban):
    purchase_id = paid_subscription(client)["purchaseId"]
    marzban.fail_next(status=500)
    assert_error(refresh(client, purchase_id), 503, "provider_unavailable")


def test_refresh_refused_by_the_panel_is_502(make_app, marzban):
    client = make_app(**panel_env(marzban, MARZBAN_PASSWORD="not-the-password")).test_client()
    purchase_id = paid_subscription(client)["purchaseId"]
    assert_error(refresh(client, purchase_id), 502, "provider_error")


def test_refresh_with_a_panel_4xx_is_502(client, marzban):
    purchase_id = paid_subscription(client)["purchaseId"]
    marzban.fail_next(status=403, body={"detail": "You're not allowed"}, path="/revoke_sub")
    assert_error(refresh(client, purchase_id), 502, "provider_error")


# --- POST /admin/update_configs ---------------------------------------------------------------------------

def three_purchases(client) -> None:
    for number in (1, 2, 3):
        paid_subscription(client, f"sub-{number}", telegram_id=100 + number)


def test_bulk_refresh_counts_every_purchase(app, client, marzban):
    three_purchases(client)
    response = client.post("/admin/update_configs", headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "total": 3, "succeeded": 3, "failed": 0, "connectionErrors": 0}
    assert len(outbox_rows(app, "telegram", "notify.subscription_link")) == 3


def test_bulk_refresh_counts_a_5xx_as_failed(client, marzban):
    three_purchases(client)
    marzban.fail_next(status=500, path="/revoke_sub")
    body = client.post("/admin/update_configs", headers=ADMIN).get_json()
    assert body == {"success": True, "total": 3, "succeeded": 2, "failed": 1, "connectionErrors": 0}


def test_bulk_refresh_with_the_panel_down_counts_connection_errors(app, client, marzban):
    three_purchases(client)
    marzban.down()
    body = client.post("/admin/update_configs", headers=ADMIN).get_json()
    assert body == {"success": True, "total": 3, "succeeded": 0, "failed": 3, "connectionErrors": 3}
    [summary] = audit_rows(app, "purchase.refresh_all")
    assert summary.details["connectionErrors"] == 3 and summary.actor == ACTOR


def test_bulk_refresh_skips_expired_purchases(client, clock, marzban):
    paid_subscription(client, "sub-1", telegram_id=1, days=1)
    paid_subscription(client, "sub-2", telegram_id=2, days=30)
    clock.advance(days=2)
    assert client.post("/admin/update_configs", headers=ADMIN).get_json()["total"] == 1


def test_bulk_refresh_without_purchases_is_all_zero(client):
    body = client.post("/admin/update_configs", headers=ADMIN).get_json()
    assert body == {"success": True, "total": 0, "succeeded": 0, "failed": 0, "connectionErrors": 0}


def test_bulk_refresh_without_a_panel_is_503(make_app, marzban):
    env = {k: v for k, v in panel_env(marzban).items() if not k.startswith(("PANEL", "MARZBAN"))}
    assert_error(make_app(**env).test_client().post("/admin/update_configs", headers=ADMIN), 503)


def test_bulk_refresh_needs_the_admin_key(client):
    assert_error(client.post("/admin/update_configs"), 401)


# --- GET /admin/purchases/{purchase_id} -------------------------------------------------------------------

def test_purchase_lookup(client, clock):
    status = paid_subscription(client, telegram_id=7, plan="pro", days=30)
    body = client.get(f"/admin/purchases/{status['purchaseId']}", headers=ADMIN).get_json()
    assert body["success"] is True and body["purchaseId"] == status["purchaseId"]
    assert (body["telegramId"], body["plan"], body["status"]) == (7, "pro", "active")
    assert body["expiresAt"] == "2026-12-23T10:00:00Z"
    assert body["orders"] == [{"orderId": "sub-1", "status": "paid", "paidAt": "2026-11-23T10:00:00Z"}]


def test_purchase_lookup_statuses(client):
    assert_error(client.get("/admin/purchases/5", headers=ADMIN), 404)
    assert_error(client.get("/admin/purchases/5"), 401)


# --- POST /admin/orders/{orderId}/replay ------------------------------------------------------------------

def store_event(app, status: str, order_id: str | None, amount: str = "100", currency: str = "RUB",
                provider: str = "sbp", event_type: str = "CONFIRMED", qrc_id: str = "QR1") -> int:
    body = (f'{{"qrcId": "{qrc_id}", "orderId": "{order_id}", "status": "{event_type}", "amount": "{amount}", '
            f'"currency": "{currency}"}}').encode()
    with app.app_context(), transaction():
        event = ProviderEvent(provider=provider, event_key=f"k-{status}-{order_id}-{amount}", event_type=event_type,
                              status=status, claimed_order_id=order_id, amount=Decimal(amount), currency=currency,
                              verification="sandbox", details={}, headers={}, body=body, processing_attempts=1)
        db.session.add(event)
        db.session.flush()
        return event.id


def test_replay_reprocesses_a_failed_payment_event(app, client, clock):
    created = create_order(client, "order-9", telegramId=5, credit=50)
    event_id = store_event(app, notices.ERROR, "order-9", qrc_id=created["qrcId"])
    response = client.post("/admin/orders/order-9/replay", headers=ADMIN)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "paid" and body["events"] == [{"eventId": event_id, "outcome": "processed"}]
    assert client.get("/api/balance/5", headers=AUTH).get_json()["balance"] == 50
    assert body["queued"] >= 0
    again = client.post("/admin/orders/order-9/replay", headers=ADMIN).get_json()
    assert again["events"] == [] and again["queued"] == 0
    assert client.get("/api/balance/5", headers=AUTH).get_json()["balance"] == 50
    assert [row.target for row in audit_rows(app, "order.replay")] == ["order:order-9", "order:order-9"]


def test_replay_queues_what_is_missing_once_the_panel_is_configured(make_app, marzban):
    env = {k: v for k, v in panel_env(marzban).items() if not k.startswith(("PANEL", "MARZBAN"))}
    paid_subscription(make_app(**env).test_client())
    app = make_app(**panel_env(marzban))
    client = app.test_client()
    assert outbox_rows(app, "panel") == []
    assert client.post("/admin/orders/sub-1/replay", headers=ADMIN).get_json()["queued"] == 1
    assert len(outbox_rows(app, "panel")) == 1
    assert client.post("/admin/orders/sub-1/replay", headers=ADMIN).get_json()["queued"] == 0


def test_replay_statuses(client):
    assert_error(client.post("/admin/orders/nope/replay", headers=ADMIN), 404)
    assert_error(client.post("/admin/orders/nope/replay"), 401)


# --- POST /admin/events/{id}/assign -----------------------------------------------------------------------

def assign(client, event_id: int, **body):
    return client.post(f"/admin/events/{event_id}/assign", json=body, headers=ADMIN)


def test_assign_settles_the_order_once(app, client):
    create_order(client, "order-5", telegramId=9, credit=30)
    event_id = store_event(app, notices.UNMATCHED, None)
    response = assign(client, event_id, orderId="order-5")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "eventId": event_id, "orderId": "order-5",
                                   "outcome": "assigned", "status": "paid", "forced": None}
    repeat = assign(client, event_id, orderId="order-5")
    assert repeat.status_code == 200 and repeat.get_json()["outcome"] == "already_assigned"
    assert client.get("/api/balance/9", headers=AUTH).get_json()["balance"] == 30
    with app.app_context(), transaction():
        assert db.session.get(ProviderEvent, event_id).status == "assigned"
    assert [row.actor for row in audit_rows(app, "event.assign")] == [ACTOR]


def test_assign_to_another_order_after_assignment_is_409(app, client):
    create_order(client, "order-5")
    create_order(client, "order-6")
    event_id = store_event(app, notices.UNMATCHED, None)
    assign(client, event_id, orderId="order-5")
    assert_error(assign(client, event_id, orderId="order-6"), 409)


def test_assign_with_a_different_amount_is_409_unless_forced(app, client):
    create_order(client, "order-5", telegramId=9, credit=30)
    event_id = store_event(app, notices.UNMATCHED, None, amount="99")
    error = assert_error(assign(client, event_id, orderId="order-5"), 409, "conflict")
    assert "amount 99" in error["message"]
    assert client.get("/api/status/order-5", headers=AUTH).get_json()["status"] == "pending"
    forced = assign(client, event_id, orderId="order-5", force=True).get_json()
    assert forced["outcome"] == "assigned" and "amount 99" in forced["forced"]
    assert client.get("/api/balance/9", headers=AUTH).get_json()["balance"] == 30


def test_assign_to_a_paid_order_is_409(app, client):
    created = create_order(client, "order-5")
    client.post(f"/sandbox/sbp/{created['qrcId']}/pay", headers=AUTH)
    event_id = store_event(app, notices.UNMATCHED, None)
    assert_error(assign(client, event_id, orderId="order-5"), 409)


def test_assign_of_a_processed_event_is_409(app, client):
    create_order(client, "order-5")
    event_id = store_event(app, notices.PROCESSED, "order-5")
    assert_error(assign(client, event_id, orderId="order-5"), 409)


def test_assign_of_a_refund_notification_is_409(app, client):
    create_order(client, "order-5")
    event_id = store_event(app, notices.UNMATCHED, None, event_type="REFUNDED")
    assert_error(assign(client, event_id, orderId="order-5"), 409)


@pytest.mark.parametrize("body", [{}, {"orderId": "bad id!"}, {"orderId": "x", "force": "y"}])
def test_assign_validates_its_body(app, client, body):
    assert_error(assign(client, 1, **body), 422)


def test_assign_statuses(app, client):
    create_order(client, "order-5")
    assert_error(assign(client, 12345, orderId="order-5"), 404)
    event_id = store_event(app, notices.UNMATCHED, None)
    assert_error(assign(client, event_id, orderId="missing"), 404)
    assert_error(client.post(f"/admin/events/{event_id}/assign", json={"orderId": "order-5"}), 401)
    assert_error(client.post(f"/admin/events/{event_id}/assign", data="x", headers=ADMIN), 415)
