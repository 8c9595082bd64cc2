"""The sandbox SBP gateway: paying a QR through the same path a gateway notification takes."""

from __future__ import annotations

from services.db import db
from services.models import OutboxMessage, ProviderEvent
from tests.conftest import AUTH
from tests.helpers import assert_error, balance, create, status


def pay(client, qrc_id: str):
    return client.post(f"/sandbox/sbp/{qrc_id}/pay", headers=AUTH)


def test_sandbox_pay_marks_paid_and_credits_once(client, app, clock):
    qrc_id = create(client, telegramId=42, credit=500).get_json()["qrcId"]
    first = pay(client, qrc_id)
    assert first.status_code == 200
    assert first.get_json()["outcome"] == "processed"
    assert first.get_json()["order"]["status"] == "paid"
    assert pay(client, qrc_id).get_json()["outcome"] == "duplicate"
    assert status(client)["paidAt"] == "2026-11-23T10:00:00Z"
    assert balance(client, 42) == 500
    with app.app_context():
        events = db.session.execute(db.select(ProviderEvent)).scalars().all()
        assert [(e.provider, e.status, e.verification) for e in events] == [("sbp", "processed", "sandbox")]


def test_sandbox_pay_of_unknown_qr_is_404(client):
    assert_error(pay(client, "BD" + "0" * 30), 404)


def test_sandbox_pay_needs_token(client):
    qrc_id = create(client).get_json()["qrcId"]
    assert_error(client.post(f"/sandbox/sbp/{qrc_id}/pay"), 401)
    assert status(client)["status"] == "pending"


def test_sandbox_is_404_when_gateway_is_tbank(make_app):
    client = make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY="k", TBANK_PASSWORD="p").test_client()
    assert_error(client.post("/sandbox/sbp/BD00/pay", headers=AUTH), 404)


def test_paid_order_queues_merchant_event_and_buyer_message(make_app, clock):
    app = make_app(MERCHANT_WEBHOOK_URL="http://127.0.0.1:9/hooks",
                   MERCHANT_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                   TELEGRAM_BOT_TOKEN="123:abc")
    app.config["CLOCK"] = clock
    client = app.test_client()
    qrc_id = create(client, telegramId=42, credit=5).get_json()["qrcId"]
    pay(client, qrc_id)
    pay(client, qrc_id)
    with app.app_context():
        messages = db.session.execute(db.select(OutboxMessage).order_by(OutboxMessage.channel)).scalars().all()
        assert [(m.channel, m.kind) for m in messages] == [("merchant", "order.paid"), ("telegram", "notify.paid")]
        merchant, telegram = messages
        assert merchant.payload["type"] == "order.paid"
        assert merchant.payload["data"]["orderId"] == "order-1" and merchant.payload["data"]["status"] == "paid"
        assert telegram.payload["chat_id"] == 42 and "5 NDN" in telegram.payload["text"]
