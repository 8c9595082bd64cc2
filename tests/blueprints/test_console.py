"""The support console: login, lock-out, logout, search, the order timeline, actions, roles and CSRF."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from services.audit import AuditLog
from services.db import db, transaction
from services.models import DeliveryAttempt, Order, OutboxMessage, ProviderEvent
from tests.conftest import AUTH
from tests.support.admin import app, fresh_panel_tokens  # noqa: F401
from tests.support.admin import cheap_hashing  # noqa: F401
from tests.support.admin import PASSWORD, create_order, outbox_rows, pay, paid_subscription, staff

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def csrf(client, path: str = "/console/login") -> str:
    return _TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


def login(client, email: str = "admin@example.test", password: str = PASSWORD):
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf(client)})


@pytest.fixture
def admin_client(app, client):
    staff(app)
    assert login(client).status_code == 303
    return client


@pytest.fixture
def support_client(app, client):
    staff(app, "sam@example.test", "support")
    assert login(client, "sam@example.test").status_code == 303
    return client


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def post(client, path: str, back: str = "/console/", **data):
    return client.post(path, data={"csrf_token": csrf(client, back), "next": back, **data})


# --- login, lock-out, logout ------------------------------------------------------------------------------

def test_console_pages_need_a_login(client):
    response = client.get("/console/?q=order-1")
    assert response.status_code == 302 and response.location.startswith("/console/login?next=")


def test_login_then_the_console_opens(app, client):
    staff(app)
    response = login(client)
    assert response.status_code == 303 and response.location == "/console/"
    body = page(client, "/console/")
    assert "Needs review" in body and "admin@example.test" in body


def test_session_cookie_is_httponly_lax_and_secure_on_https(app, client):
    staff(app)
    login(client)
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.secure


def test_login_returns_to_the_page_asked_for(app, client):
    staff(app)
    response = client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD,
                                                   "csrf_token": csrf(client), "next": "/console/?q=x"})
    assert response.location == "/console/?q=x"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console/", "/api/status/x"])
def test_login_never_redirects_off_the_console(app, client, target):
    staff(app)
    response = client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD,
                                                   "csrf_token": csrf(client), "next": target})
    assert response.location == "/console/"


@pytest.mark.parametrize("email, password", [("admin@example.test", "wrong password!"),
                                             ("nobody@example.test", PASSWORD)])
def test_wrong_credentials_are_refused_alike(app, client, email, password):
    staff(app)
    response = login(client, email, password)
    assert response.status_code == 401 and "e-mail or password is not correct" in response.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_repeated_failures_lock_the_account(app, client, clock):
    staff(app)
    for _ in range(5):
        assert login(client, password="wrong password!").status_code == 401
    locked = login(client)
    assert locked.status_code == 401 and "Too many failed logins" in locked.get_data(as_text=True)
    clock.advance(minutes=14)
    assert login(client).status_code == 401
    clock.advance(minutes=2)
    assert login(client).status_code == 303
    with app.app_context(), transaction():
        assert db.session.execute(db.select(AuditLog.action).where(AuditLog.action == "users.lock")).scalar_one()


def test_a_success_resets_the_failure_count(app, client):
    staff(app)
    for _ in range(4):
        login(client, password="wrong password!")
    assert login(client).status_code == 303
    client.post("/console/logout", data={"csrf_token": csrf(client, "/console/")})
    for _ in range(4):
        login(client, password="wrong password!")
    assert login(client).status_code == 303


def test_logout_ends_the_session(admin_client):
    response = admin_client.post("/console/logout", data={"csrf_token": csrf(admin_client, "/console/")})
    assert response.status_code == 303 and response.location == "/console/login"
    assert admin_client.get("/console/").status_code == 302


def test_session_expires(clock, admin_client):
    # `clock` first: the login in admin_client must happen at the frozen time, not the wall clock.
    clock.advance(hours=13)
    assert admin_client.get("/console/").status_code == 302


def test_disabled_account_loses_its_session(app, admin_client):
    app.test_cli_runner().invoke(args=["users", "disable", "--email", "admin@example.test"])
    assert admin_client.get("/console/").status_code == 302


# --- CSRF ---------------------------------------------------------------------------------------------------

def test_login_without_csrf_token_is_400(app, client):
    staff(app)
    response = client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD})
    assert response.status_code == 400 and "text/html" in response.content_type
    assert "form has expired" in response.get_data(as_text=True)


def test_action_with_a_wrong_csrf_token_is_400(admin_client):
    response = admin_client.post("/console/outbox/1/resend", data={"csrf_token": "forged"})
    assert response.status_code == 400


def test_webhooks_and_json_apis_need_no_csrf_token(client):
    assert client.post("/api/payment", json={"amount": 1, "orderId": "no-csrf"}, headers=AUTH).status_code == 201


# --- search -------------------------------------------------------------------------------------------------

def test_search_by_order_id_opens_the_order(admin_client):
    create_order(admin_client, "order-42")
    response = admin_client.get("/console/?q=order-42")
    assert response.status_code == 302 and response.location == "/console/orders/order-42"


def test_search_by_telegram_id_lists_the_buyers_orders(admin_client):
    create_order(admin_client, "a-1", telegramId=777, credit=1)
    create_order(admin_client, "a-2", telegramId=777, credit=1)
    create_order(admin_client, "b-1", telegramId=778, credit=1)
    body = page(admin_client, "/console/?q=777")
    assert "a-1" in body and "a-2" in body and "b-1" not in body


def test_search_by_email(app, admin_client):
    create_order(admin_client, "mail-1")
    with app.app_context(), transaction():
        db.session.execute(db.update(Order).where(Order.order_id == "mail-1").values(buyer_email="Buyer@Example.test"))
    assert "mail-1" in page(admin_client, "/console/?q=buyer@example.test")


def test_search_without_results(admin_client):
    assert "No order has this orderId" in page(admin_client, "/console/?q=nothing-here")


# --- the order page -----------------------------------------------------------------------------------------

def test_order_timeline_shows_events_fulfilment_and_deliveries(app, admin_client, clock):
    pay(admin_client, create_order(admin_client, "order-1", telegramId=5, credit=10))
    with app.app_context(), transaction():
        row = db.session.execute(db.select(OutboxMessage).where(OutboxMessage.channel == "telegram")).scalar_one()
        row.status, row.attempts, row.last_error = "dead", 3, "Forbidden: bot was blocked by the user"
        db.session.add(DeliveryAttempt(
            outbox_pk=row.id, number=3, outcome="dead", status_code=403, error="bot was blocked",
            worker="w1", started_at=clock.now, finished_at=clock.now))
    body = page(admin_client, "/console/orders/order-1")
    for text in ("Order created", "sbp CONFIRMED", "processed", "verification", "sandbox", "Fulfilment: credit",
                 "Notification: notify.paid", "bot was blocked by the user", "#3 dead", "HTTP 403",
                 "Resend notification", "Replay delivery"):
        assert text in body, text


def test_unknown_order_page_is_404_html(admin_client):
    response = admin_client.get("/console/orders/missing")
    assert response.status_code == 404 and "text/html" in response.content_type


def test_needs_review_lists_unmatched_payments(app, admin_client):
    with app.app_context(), transaction():
        db.session.add(ProviderEvent(provider="bmc", event_key="e1", event_type="donation.created",
                                     status="unmatched", amount=Decimal(5), currency="USD", verification="valid",
                                     details={"message": "for order zz-9"}, headers={}, body=b"{}"))
    body = page(admin_client, "/console/")
    assert "donation.created" in body and "unmatched" in body and "for order zz-9" in body
    assert "Assign payment" in body


# --- actions and roles --------------------------------------------------------------------------------------

def test_resend_queues_a_new_notification(app, support_client):
    pay(support_client, create_order(support_client, "order-1", telegramId=5, credit=10))
    [original] = outbox_rows(app, "telegram")
    response = post(support_client, f"/console/outbox/{original.id}/resend", "/console/orders/order-1")
    assert response.status_code == 303 and response.location == "/console/orders/order-1"
    rows = outbox_rows(app, "telegram")
    assert len(rows) == 2 and rows[1].payload == original.payload and rows[1].dedupe_key != original.dedupe_key
    assert "Queued again as message" in page(support_client, "/console/orders/order-1")
    with app.app_context(), transaction():
        actors = db.session.execute(db.select(AuditLog.actor).where(AuditLog.action == "outbox.resend")).scalars()
        assert list(actors) == ["staff:sam@example.test"]


@pytest.mark.parametrize("path", ["/console/outbox/1/replay", "/console/events/1/assign",
                                  "/console/purchases/1/refresh", "/console/orders/order-1/replay"])
def test_support_gets_403_on_admin_actions(support_client, path):
    response = post(support_client, path, order_id="order-1")
    assert response.status_code == 403 and "admin role" in response.get_data(as_text=True)


def test_support_sees_no_admin_buttons(app, support_client):
    paid_subscription(support_client)
    body = page(support_client, "/console/orders/sub-1")
    assert "Refresh subscription link" not in body and "Replay fulfilment" not in body


def test_admin_replays_a_dead_delivery(app, admin_client, clock):
    pay(admin_client, create_order(admin_client, "order-1", telegramId=5, credit=10))
    with app.app_context(), transaction():
        row = db.session.execute(db.select(OutboxMessage)).scalar_one()
        row.status, row.attempts = "dead", 8
    response = post(admin_client, f"/console/outbox/{row.id}/replay", "/console/orders/order-1")
    assert response.status_code == 303
    [replayed] = outbox_rows(app, "telegram")
    assert (replayed.status, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, clock.now)
    again = post(admin_client, f"/console/outbox/{row.id}/replay", "/console/orders/order-1")
    assert again.status_code == 303
    assert "only dead-lettered deliveries" in page(admin_client, "/console/orders/order-1")


def test_admin_assigns_an_unmatched_payment(app, admin_client):
    create_order(admin_client, "order-3", telegramId=8, credit=4)
    with app.app_context(), transaction():
        event = ProviderEvent(provider="bmc", event_key="e1", event_type="legacy", status="unmatched",
                              amount=Decimal(100), currency="RUB", verification="valid", details={}, headers={},
                              body=b'{"response": {"total_amount": "100", "support_note": "hi"}}')
        db.session.add(event)
    response = post(admin_client, f"/console/events/{event.id}/assign", order_id="order-3", force="yes")
    assert response.status_code == 303
    assert admin_client.get("/api/status/order-3", headers=AUTH).get_json()["status"] == "paid"
    assert "assigned to order-3" in page(admin_client, "/console/")


def test_admin_refreshes_subscription_links(app, admin_client, marzban):
    status = paid_subscription(admin_client)
    response = post(admin_client, f"/console/purchases/{status['purchaseId']}/refresh", "/console/orders/sub-1")
    assert response.status_code == 303
    body = page(admin_client, "/console/orders/sub-1")
    assert "New subscription link: " + marzban.url in body
    assert "Notification: notify.subscription_link" in body


def test_panel_outage_is_shown_not_crashed(app, admin_client, marzban):
    status = paid_subscription(admin_client)
    marzban.down()
    post(admin_client, f"/console/purchases/{status['purchaseId']}/refresh", "/console/orders/sub-1")
    assert "Marzban is unreachable" in page(admin_client, "/console/orders/sub-1")
