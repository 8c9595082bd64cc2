"""POST /admin/orders/{orderId}/refund: refunds through YooKassa and Telegram Stars, reversed once through the
inbox when the provider confirms; audited; shown on the console timeline."""

from __future__ import annotations

import json
import re

import pytest

from services.audit import AuditLog
from services.db import db, transaction
from services.models import Fulfilment, LedgerEntry
from services.providers.yookassa import protocol
from tests.blueprints.test_telegram import BUYER, SECRET, SUCCESSFUL_PAYMENT, create_stars, send
from tests.conftest import AUTH
from tests.helpers import assert_error, balance, create, status
from tests.support.admin import ADMIN, ADMIN_KEY, PASSWORD, cheap_hashing, staff  # noqa: F401
from tests.support.yookassa import create_payment, events, notify, yookassa_env

CHARGE = SUCCESSFUL_PAYMENT["message"]["successful_payment"]["telegram_payment_charge_id"]


@pytest.fixture
def app(make_app, yookassa, telegram):
    return make_app(**yookassa_env(yookassa), ADMIN_API_KEY=ADMIN_KEY, TELEGRAM_BOT_TOKEN=telegram.bot_token,
                    TELEGRAM_API_URL=telegram.api_url, TELEGRAM_WEBHOOK_SECRET=SECRET)


def refund(client, order_id: str = "order-1", headers=ADMIN):
    return client.post(f"/admin/orders/{order_id}/refund", headers=headers)


def rows(app, model) -> list:
    with app.app_context(), transaction():
        return list(db.session.execute(db.select(model).order_by(model.id)).scalars())


@pytest.fixture
def paid_yookassa(client, yookassa) -> str:
    payment_id = create_payment(client).get_json()["paymentId"]
    yookassa.succeed(payment_id)
    assert notify(client, yookassa, "payment.succeeded", payment_id).get_json()["outcome"] == "processed"
    return payment_id


def refund_posts(yookassa) -> list:
    return [r for r in yookassa.requests if r.method == "POST" and r.path == "/v3/refunds"]


# --- YooKassa ----------------------------------------------------------------------------------------------

def test_yookassa_refund_that_succeeds_reverses_at_once(app, client, yookassa, paid_yookassa):
    response = refund(client)
    assert response.status_code == 200
    body = response.get_json()
    [call] = refund_posts(yookassa)
    assert call.json == {"payment_id": paid_yookassa, "amount": {"value": "100.00", "currency": "RUB"}}
    assert call.headers["idempotence-key"] == protocol.idempotence_key("refund.0", "order-1")
    assert body == {"success": True, "orderId": "order-1", "status": "refunded", "refundId": body["refundId"],
                    "refundStatus": "succeeded", "outcome": "processed", "eventId": body["eventId"]}
    assert yookassa.refund(body["refundId"])["payment_id"] == paid_yookassa
    assert status(client)["status"] == "refunded" and balance(client, 42) == 0
    assert {f.kind for f in rows(app, Fulfilment)} == {"credit", "credit_reversal"}
    # YooKassa's notification of the same refund changes nothing more.
    assert notify(client, yookassa, "refund.succeeded", body["refundId"]).get_json()["outcome"] == "duplicate"
    assert sorted(e.amount for e in rows(app, LedgerEntry)) == [-500, 500]
    [entry] = [a for a in rows(app, AuditLog) if a.action == "order.refund"]
    assert entry.target == "order:order-1" and entry.actor.startswith("api-key:")
    assert entry.details == {"refundId": body["refundId"], "refundStatus": "succeeded", "outcome": "processed"}


def test_pending_refund_reverses_when_its_notification_comes(app, client, yookassa, paid_yookassa):
    yookassa.refund_status = "pending"
    body = refund(client).get_json()
    assert (body["status"], body["refundStatus"], body["outcome"]) == ("paid", "pending", "ignored")
    assert balance(client, 42) == 500
    yookassa.set_refund_status(body["refundId"], "succeeded")
    assert notify(client, yookassa, "refund.succeeded", body["refundId"]).get_json()["outcome"] == "processed"
    assert status(client)["status"] == "refunded" and balance(client, 42) == 0


def test_repeated_request_while_pending_asks_yookassa_for_no_second_refund(app, client, yookassa, paid_yookassa):
    yookassa.refund_status = "pending"
    first = refund(client).get_json()
    again = refund(client).get_json()
    assert again["refundId"] == first["refundId"] and again["outcome"] == "duplicate"
    assert yookassa.refunds_created == 1 and len({r.headers["idempotence-key"] for r in refund_posts(yookassa)}) == 1


def test_after_a_canceled_refund_a_new_one_can_be_asked_for(app, client, yookassa, paid_yookassa):
    yookassa.refund_status = "pending"
    first = refund(client).get_json()
    yookassa.set_refund_status(first["refundId"], "canceled")
    assert notify(client, yookassa, "refund.canceled", first["refundId"]).get_json()["outcome"] == "ignored"
    yookassa.refund_status = "succeeded"
    second = refund(client).get_json()
    assert second["refundId"] != first["refundId"] and second["status"] == "refunded"
    keys = [r.headers["idempotence-key"] for r in refund_posts(yookassa)]
    assert keys == [protocol.idempotence_key("refund.0", "order-1"), protocol.idempotence_key("refund.1", "order-1")]


def test_yookassa_refusing_is_502_and_nothing_changes(app, client, yookassa, paid_yookassa):
    yookassa.error_next(400, description="Payment can't be refunded", code="invalid_request", path="/refunds")
    error = assert_error(refund(client), 502, "provider_error")
    assert "can't be refunded" in error["message"]
    assert status(client)["status"] == "paid" and not [a for a in rows(app, AuditLog) if a.action == "order.refund"]


def test_yookassa_down_is_503_and_a_retry_refunds_once(app, client, yookassa, paid_yookassa):
    yookassa.delay_seconds = 4  # past HTTP_TIMEOUT_SECONDS: YooKassa refunds, the answer is lost
    assert_error(refund(client), 503, "provider_unavailable")
    yookassa.delay_seconds = 0
    assert refund(client).get_json()["status"] == "refunded"
    assert yookassa.refunds_created == 1 and balance(client, 42) == 0


def test_unpaid_order_is_409(app, client, yookassa):
    create_payment(client)
    assert_error(refund(client), 409, "conflict")
    assert refund_posts(yookassa) == []


def test_refunded_order_is_409(app, client, yookassa, paid_yookassa):
    refund(client)
    assert_error(refund(client), 409, "conflict")
    assert len(refund_posts(yookassa)) == 1


# --- Telegram Stars ----------------------------------------------------------------------------------------

def test_stars_refund_calls_refund_star_payment_and_reverses_once(app, client, telegram):
    create_stars(client)
    assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "processed"
    body = refund(client, "order-45").get_json()
    assert (body["status"], body["refundId"], body["refundStatus"], body["outcome"]) == (
        "refunded", CHARGE, "succeeded", "processed")
    assert telegram.refunds == [{"user_id": BUYER, "telegram_payment_charge_id": CHARGE}]
    assert balance(client, BUYER) == 0
    [event] = [e for e in events(app) if e.event_key == f"refund:{CHARGE}"]
    assert json.loads(event.body)["method"] == "refundStarPayment"
    # Telegram's refunded_payment update for the same charge is a duplicate.
    update = {"update_id": 900000003, "message": {**SUCCESSFUL_PAYMENT["message"], "refunded_payment": {
        "currency": "XTR", "total_amount": 50, "invoice_payload": "order-45", "telegram_payment_charge_id": CHARGE}}}
    del update["message"]["successful_payment"]
    assert send(client, update).get_json()["outcome"] == "duplicate"
    assert sorted(e.amount for e in rows(app, LedgerEntry)) == [-500, 500]


def test_stars_refunded_before_is_recorded_once(app, client, telegram):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    telegram.refunds.append({"user_id": BUYER, "telegram_payment_charge_id": CHARGE})  # refunded elsewhere
    assert refund(client, "order-45").get_json()["status"] == "refunded"
    assert balance(client, BUYER) == 0


def test_stars_refund_refused_by_telegram_is_502(app, client, telegram):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    telegram.fail_next(1, 400, {"ok": False, "error_code": 400, "description": "Bad Request: CHARGE_NOT_FOUND"})
    assert_error(refund(client, "order-45"), 502, "provider_error")
    assert status(client, "order-45")["status"] == "paid"


def test_replay_reads_a_stars_refund_back(app, client, telegram):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    refund(client, "order-45")
    replay = client.post("/admin/orders/order-45/replay", headers=ADMIN)
    assert replay.status_code == 200 and replay.get_json()["status"] == "refunded"
    assert balance(client, BUYER) == 0


# --- providers without a refund API, and the usual errors ---------------------------------------------------

def test_provider_without_a_refund_api_is_422(app, client):
    created = create(client, telegramId=5, credit=1).get_json()
    client.post(f"/sandbox/sbp/{created['qrcId']}/pay", headers=AUTH)
    assert_error(refund(client), 422, "refund_not_supported")
    assert status(client)["status"] == "paid"


def test_unknown_order_is_404(client):
    assert_error(refund(client, "nothing-here"), 404)


@pytest.mark.parametrize("headers", [{}, AUTH, {"Authorization": "Bearer wrong"}])
def test_without_the_admin_key_is_401(client, headers):
    assert_error(refund(client, headers=headers), 401)


# --- the console timeline ------------------------------------------------------------------------------------

def console_page(app, client, path: str) -> str:
    """The page as an admin sees it (tests/blueprints/test_console.py logs in the same way)."""
    staff(app)
    login = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD, "csrf_token": token})
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.usefixtures("cheap_hashing")
def test_console_timeline_shows_each_step(app, client, yookassa):
    payment_id = create_payment(client).get_json()["paymentId"]
    notify(client, yookassa, "payment.succeeded", payment_id)  # forged: still pending at YooKassa
    yookassa.succeed(payment_id)
    notify(client, yookassa, "payment.succeeded", payment_id)
    refund(client)
    page = console_page(app, client, "/console/orders/order-1")
    for text in ("Order created", "yookassa payment.pending", "yookassa payment.succeeded", "address allowed",
                 "Fulfilment: credit", "yookassa refund.succeeded", "refund requested", "Fulfilment: credit_reversal",
                 "order.refund by api-key:", payment_id):
        assert text in page, text


@pytest.mark.usefixtures("cheap_hashing")
def test_console_timeline_shows_the_cancellation_reason(app, client, yookassa):
    payment_id = create_payment(client).get_json()["paymentId"]
    yookassa.cancel(payment_id, reason="insufficient_funds")
    notify(client, yookassa, "payment.canceled", payment_id)
    page = console_page(app, client, "/console/orders/order-1")
    assert "yookassa payment.canceled" in page and "insufficient_funds" in page and "cancelled" in page
