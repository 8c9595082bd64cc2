"""T-Bank (real SBP gateway) against the fake T-Bank server: create, notifications, Token checks."""

from __future__ import annotations

import json

import pytest

from services.db import db
from services.models import ProviderEvent
from services.providers.sbp import protocol as tbank_provider
from tests.helpers import assert_error, balance, create, status

TERMINAL = PASSWORD = "TinkoffBankTest"


@pytest.fixture
def tbank_app(make_app, tbank, clock):
    app = make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=TERMINAL, TBANK_PASSWORD=PASSWORD,
                   TBANK_API_URL=tbank.api_url)
    app.config["CLOCK"] = clock
    return app


@pytest.fixture
def tbank_client(tbank_app):
    return tbank_app.test_client()


def notify(client, body: dict):
    return client.post("/webhook/sbp/tbank", data=json.dumps(body), content_type="application/json")


def events(app) -> list[ProviderEvent]:
    with app.app_context():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


def test_create_calls_init_and_getqr_with_valid_tokens(tbank_client, tbank):
    body = create(tbank_client, amount="123.45", description="VPN month").get_json()
    payment = tbank.payment_by_order("order-1")
    assert payment["Amount"] == 12345
    assert payment["NotificationURL"] == "https://pay.example.test/webhook/sbp/tbank"
    assert body["qr"].startswith("https://qr.nspk.ru/") and "bank=100000000004" in body["qr"]
    assert body["qrcId"] and body["qrcId"] in body["qr"]
    assert [r.path for r in tbank.requests] == ["/v2/Init", "/v2/GetQr"]


def test_long_order_id_is_shortened_for_tbank_and_still_matched(tbank_client, tbank):
    long_id = "order-" + "x" * 50
    create(tbank_client, orderId=long_id)
    payment_id = tbank.payment_by_order(tbank_provider.tbank_order_id(long_id))["PaymentId"]
    assert notify(tbank_client, tbank.notification(payment_id)).get_data() == b"OK"
    assert status(tbank_client, long_id)["status"] == "paid"


def test_confirmed_notification_pays_and_answers_plain_ok(tbank_client, tbank, tbank_app):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    response = notify(tbank_client, tbank.notification(payment_id, "CONFIRMED"))
    assert response.status_code == 200 and response.get_data() == b"OK" and response.mimetype == "text/plain"
    assert status(tbank_client)["status"] == "paid"
    assert balance(tbank_client, 7) == 100
    [event] = events(tbank_app)
    assert (event.event_key, event.status, event.verification) == (f"{payment_id}:CONFIRMED", "processed", "valid")
    assert json.loads(event.body)["PaymentId"] == payment_id


def test_duplicate_notification_is_ok_and_changes_nothing(tbank_client, tbank, tbank_app):
    create(tbank_client, telegramId=7, credit=100)
    body = tbank.notification(tbank.payment_by_order("order-1")["PaymentId"])
    for _ in range(3):
        assert notify(tbank_client, body).get_data() == b"OK"
    assert balance(tbank_client, 7) == 100
    assert len(events(tbank_app)) == 1


def test_authorized_then_confirmed_grants_only_on_confirmed(tbank_client, tbank):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    notify(tbank_client, tbank.notification(payment_id, "AUTHORIZED"))
    assert status(tbank_client)["status"] == "pending" and balance(tbank_client, 7) == 0
    notify(tbank_client, tbank.notification(payment_id, "CONFIRMED"))
    assert status(tbank_client)["status"] == "paid" and balance(tbank_client, 7) == 100


def test_rejected_fails_the_order(tbank_client, tbank):
    create(tbank_client)
    notify(tbank_client, tbank.notification(tbank.payment_by_order("order-1")["PaymentId"], "REJECTED"))
    assert status(tbank_client)["status"] == "failed"


def test_refund_reverses_credit(tbank_client, tbank):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    notify(tbank_client, tbank.notification(payment_id, "CONFIRMED"))
    notify(tbank_client, tbank.notification(payment_id, "REFUNDED"))
    assert status(tbank_client)["status"] == "refunded"
    assert balance(tbank_client, 7) == 0


@pytest.mark.parametrize("tamper", [
    {"Token": "0" * 64},
    {"Amount": 1},
    {"Status": "CONFIRMED", "Token": None},
])
def test_bad_token_is_401_and_nothing_is_stored(tbank_client, tbank, tbank_app, tamper):
    create(tbank_client, telegramId=7, credit=100)
    body = tbank.notification(tbank.payment_by_order("order-1")["PaymentId"], "AUTHORIZED")
    body["Status"] = "CONFIRMED"
    body.update({k: v for k, v in tamper.items() if v is not None})
    if tamper.get("Token", "") is None:
        del body["Token"]
    assert_error(notify(tbank_client, body), 401, "invalid_signature")
    assert events(tbank_app) == [] and status(tbank_client)["status"] == "pending"


def test_notification_for_another_terminal_is_401(tbank_client, tbank):
    create(tbank_client)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    body = {k: v for k, v in tbank.notification(payment_id).items() if k != "Token"}
    body["TerminalKey"] = "SomeoneElse"
    body["Token"] = tbank_provider.token(body, PASSWORD)
    assert_error(notify(tbank_client, body), 401)


def test_malformed_body_is_400(tbank_client):
    response = tbank_client.post("/webhook/sbp/tbank", data="{oops", content_type="application/json")
    assert_error(response, 400, "malformed_payload")


def test_wrong_amount_is_held_for_support(tbank_client, tbank, tbank_app):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    notify(tbank_client, tbank.notification(payment_id, Amount=1))
    assert status(tbank_client)["status"] == "pending" and balance(tbank_client, 7) == 0
    [event] = events(tbank_app)
    assert event.status == "mismatch" and "amount" in event.error


def test_notification_for_unknown_order_is_stored_and_acknowledged(tbank_client, tbank, tbank_app):
    create(tbank_client)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    body = {k: v for k, v in tbank.notification(payment_id).items() if k != "Token"}
    body.update(OrderId="never-created", PaymentId=999)
    body["Token"] = tbank_provider.token(body, PASSWORD)
    assert notify(tbank_client, body).get_data() == b"OK"
    [event] = events(tbank_app)
    assert (event.status, event.claimed_order_id) == ("unmatched", "never-created")


def test_provider_down_is_503_and_a_retry_creates_the_payment(tbank_client, tbank):
    tbank.fail_next(1, status=503)
    assert_error(create(tbank_client), 503, "provider_unavailable")
    assert status(tbank_client)["status"] == "pending"
    retried = create(tbank_client)
    assert retried.status_code == 200 and retried.get_json()["qrcId"]


def test_provider_rejection_is_502(tbank_client):
    assert_error(create(tbank_client, amount=5), 502, "provider_error")


def test_notifications_without_tbank_settings_are_503(client):
    assert_error(notify(client, {"TerminalKey": "x", "Token": "y"}), 503, "not_configured")


def test_database_down_is_503_so_tbank_retries(make_app, tbank):
    app = make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=TERMINAL, TBANK_PASSWORD=PASSWORD,
                   TBANK_API_URL=tbank.api_url, DATABASE_URL="sqlite:////nonexistent-dir/x.db")
    body = {"TerminalKey": TERMINAL, "OrderId": "o", "Success": True, "Status": "CONFIRMED",
            "PaymentId": 1, "ErrorCode": "0", "Amount": 100}
    body["Token"] = tbank_provider.token(body, PASSWORD)
    assert_error(notify(app.test_client(), body), 503, "database_unavailable")


def test_non_ascii_token_is_401_not_500(tbank_client, tbank):
    create(tbank_client)
    body = tbank.notification(tbank.payment_by_order("order-1")["PaymentId"], Token="токен")
    assert_error(notify(tbank_client, body), 401)


def test_refund_of_a_payment_that_did_not_settle_the_order_reverses_nothing(tbank_client, tbank, tbank_app):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    notify(tbank_client, tbank.notification(payment_id, "CONFIRMED"))
    # A second payment for the same OrderId, made outside the gateway, refunded by the merchant.
    foreign = tbank.notification(payment_id, "REFUNDED", PaymentId=int(payment_id) + 1000)
    assert notify(tbank_client, foreign).get_data() == b"OK"
    assert status(tbank_client)["status"] == "paid"
    assert balance(tbank_client, 7) == 100
    refund = next(event for event in events(tbank_app) if event.event_type == "REFUNDED")
    assert refund.status == "conflict"
    assert refund.error == f"the refunded payment {int(payment_id) + 1000} did not pay for this order"
    notify(tbank_client, tbank.notification(payment_id, "REFUNDED"))
    assert status(tbank_client)["status"] == "refunded"
    assert balance(tbank_client, 7) == 0


def test_an_unsuccessful_confirmed_never_blocks_the_successful_one(tbank_client, tbank, tbank_app):
    create(tbank_client, telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    failed = tbank.notification(payment_id, "CONFIRMED", Success=False, ErrorCode="1051")
    assert notify(tbank_client, failed).get_data() == b"OK"
    assert status(tbank_client)["status"] == "pending"
    assert notify(tbank_client, tbank.notification(payment_id, "CONFIRMED")).get_data() == b"OK"
    assert status(tbank_client)["status"] == "paid" and balance(tbank_client, 7) == 100
    assert [event.status for event in events(tbank_app)] == ["ignored", "processed"]


def test_a_partial_refund_is_flagged_for_support(tbank_client, tbank, tbank_app):
    create(tbank_client, amount="100", telegramId=7, credit=100)
    payment_id = tbank.payment_by_order("order-1")["PaymentId"]
    notify(tbank_client, tbank.notification(payment_id, "CONFIRMED"))
    notify(tbank_client, tbank.notification(payment_id, "REFUNDED", Amount=4000))
    assert status(tbank_client)["status"] == "paid" and balance(tbank_client, 7) == 100
    refund = events(tbank_app)[-1]
    assert refund.status == "conflict" and "40" in refund.error
