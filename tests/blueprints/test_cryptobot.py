"""CryptoBot: invoices through the fake Crypto Pay API, and POST /webhook/cryptobot end to end."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from services.providers.cryptobot import inbound as cryptobot_service
from services.db import db
from services.models import ProviderEvent
from services.providers.base import PaymentDraft
from services.providers.cryptobot.client import CryptoBotProvider, CryptoPayClient
from tests.conftest import AUTH
from tests.fakes import crypto_pay_signature
from tests.helpers import (assert_error, assert_processed_once, assert_settled_once, balance, create, post_concurrently,
                           status)
from tests.providers.cryptobot.test_protocol import TOKEN, VECTOR_BODY, VECTOR_SIGNATURE
from webhook_config import Settings

URL = "/webhook/cryptobot"
PARALLEL = 30


@pytest.fixture
def crypto_app(make_app, cryptopay, clock):
    app = make_app(CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url)
    app.config["CLOCK"] = clock
    return app


@pytest.fixture
def crypto_client(crypto_app):
    return crypto_app.test_client()


def create_invoice(client, **body):
    return create(client, provider="cryptobot", currency="USDT", amount="1.5", **body)


def update_body(invoice: dict, update_id: int = 1, update_type: str = "invoice_paid",
                request_date: str = "2026-11-23T10:00:00.000Z") -> bytes:
    update = {"update_id": update_id, "update_type": update_type, "request_date": request_date, "payload": invoice}
    return json.dumps(update, separators=(",", ":")).encode()


def deliver(client, body: bytes, signature: str | None = "sign", token: str = TOKEN):
    headers = {} if signature is None else {
        "crypto-pay-api-signature": crypto_pay_signature(token, body) if signature == "sign" else signature}
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def paid_body(cryptopay, order_id: str = "order-1", **paid) -> bytes:
    invoice_id = next(i for i, inv in cryptopay.invoices.items() if inv.get("payload") == order_id)
    return update_body(cryptopay.mark_paid(invoice_id, **paid))


def events(app) -> list[ProviderEvent]:
    with app.app_context():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


# --- creating invoices ---------------------------------------------------------------------------------------------


def test_create_calls_create_invoice_and_returns_invoice_and_pay_url(crypto_client, cryptopay):
    response = create_invoice(crypto_client, description="VPN month")
    assert response.status_code == 201
    body = response.get_json()
    [call] = cryptopay.requests
    assert call.path == "/api/createInvoice" and call.headers["crypto-pay-api-token"] == TOKEN
    params = call.json
    assert (params["currency_type"], params["asset"], params["amount"]) == ("crypto", "USDT", "1.5")
    assert (params["payload"], params["description"]) == ("order-1", "VPN month")
    assert isinstance(params["expires_in"], int) and 1 <= params["expires_in"] <= 2_678_400
    invoice = cryptopay.invoice(body["invoiceId"])
    assert (body["provider"], body["currency"], body["status"]) == ("cryptobot", "USDT", "pending")
    assert isinstance(body["invoiceId"], int) and body["payUrl"] == invoice["bot_invoice_url"]
    assert "qr" not in body and "qrcId" not in body


def test_fiat_order_creates_a_fiat_invoice_with_the_amount_as_a_string(crypto_client, cryptopay):
    assert create(crypto_client, provider="cryptobot", currency="usd", amount=10.5).status_code == 201
    params = cryptopay.requests[0].json
    assert (params["currency_type"], params["fiat"], params["amount"]) == ("fiat", "USD", "10.5")
    assert "asset" not in params


def test_repeat_returns_the_same_invoice_without_a_second_call(crypto_client, cryptopay):
    first = create_invoice(crypto_client).get_json()
    repeat = create_invoice(crypto_client)
    assert repeat.status_code == 200 and repeat.get_json()["invoiceId"] == first["invoiceId"]
    assert len(cryptopay.requests) == 1


def test_expires_in_is_the_time_left_on_the_order(cryptopay):
    settings = Settings(cryptobot_token=cryptopay.token, cryptobot_api_url=cryptopay.api_url, http_timeout=5)
    now = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    provider = CryptoBotProvider(settings, CryptoPayClient(settings), clock=lambda: now)
    draft = PaymentDraft(order_id="o-1", amount=Decimal("0.00000001"), currency="BTC", description="d" * 2000,
                         expires_at=now + timedelta(seconds=900), telegram_id=None)
    created = provider.create(draft)
    params = cryptopay.requests[0].json
    assert params["expires_in"] == 900 and params["amount"] == "0.00000001" and len(params["description"]) == 1024
    assert created.provider_ref == str(created.data["invoiceId"])


@pytest.mark.parametrize("currency", ["XTR", "ABC", "KGS"])
def test_currency_crypto_pay_does_not_take_is_422(crypto_client, cryptopay, currency):
    error = assert_error(create(crypto_client, provider="cryptobot", currency=currency, amount=1), 422)
    assert "currency" in error["fields"] and cryptopay.requests == []


def test_provider_down_is_503_and_a_later_retry_gets_the_invoice(crypto_client, cryptopay):
    cryptopay.down()
    assert_error(create_invoice(crypto_client), 503, "provider_unavailable")
    assert status(crypto_client)["status"] == "pending"
    cryptopay.up()
    retry = create_invoice(crypto_client)
    assert retry.status_code == 200 and retry.get_json()["invoiceId"]
    assert retry.get_json()["payUrl"].startswith("https://t.me/")


def test_provider_5xx_is_503(crypto_client, cryptopay):
    cryptopay.fail_next(1, 500)
    assert_error(create_invoice(crypto_client), 503, "provider_unavailable")
    assert create_invoice(crypto_client).get_json()["invoiceId"]


def test_provider_rejecting_is_502(crypto_client, cryptopay):
    cryptopay.fail_next(1, 400, body={"ok": False, "error": {"code": 400, "name": "AMOUNT_INVALID"}})
    error = assert_error(create_invoice(crypto_client), 502, "provider_error")
    assert "AMOUNT_INVALID" in error["message"]


def test_wrong_token_is_502_and_never_echoed(make_app, cryptopay):
    client = make_app(CRYPTOBOT_TOKEN="1:wrong-token-value", CRYPTOBOT_API_URL=cryptopay.api_url).test_client()
    response = create_invoice(client)
    assert_error(response, 502, "provider_error")
    assert b"wrong-token-value" not in response.get_data()


def test_without_token_payments_and_webhook_are_503(client):
    assert_error(create_invoice(client), 503, "not_configured")
    assert_error(deliver(client, VECTOR_BODY, VECTOR_SIGNATURE), 503, "not_configured")


# --- the webhook ---------------------------------------------------------------------------------------------------


def test_paid_update_fulfils_and_is_stored_before_the_200(crypto_client, crypto_app, cryptopay):
    invoice_id = create_invoice(crypto_client, telegramId=42, credit=500).get_json()["invoiceId"]
    response = deliver(crypto_client, paid_body(cryptopay))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["success"], body["outcome"], body["duplicate"]) == (True, "processed", False)
    assert status(crypto_client)["status"] == "paid" and balance(crypto_client, 42) == 500
    [event] = events(crypto_app)
    assert event.event_key == f"invoice:{invoice_id}:paid" and event.id == body["eventId"]
    assert event.provider_payment_id == str(invoice_id) and event.claimed_order_id == "order-1"
    assert (event.status, event.verification, event.amount, event.currency) == (
        "processed", "valid", Decimal("1.5"), "USDT")
    assert "Crypto-Pay-Api-Signature" in event.headers


def test_the_stored_event_keeps_the_named_headers_that_came_and_no_others(crypto_client, crypto_app, cryptopay):
    create_invoice(crypto_client)
    body = paid_body(cryptopay)
    signature = crypto_pay_signature(TOKEN, body)
    crypto_client.post(URL, data=body, content_type="application/json; charset=utf-8", headers={
        "crypto-pay-api-signature": signature, "User-Agent": "CryptoBot", "X-Request-ID": "req-7",
        "Accept": "*/*", "X-Other": "not kept"}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    [event] = events(crypto_app)
    assert event.headers == {"Content-Type": "application/json; charset=utf-8", "User-Agent": "CryptoBot",
                             "X-Request-ID": "req-7", "Crypto-Pay-Api-Signature": signature}
    assert event.remote_addr == "203.0.113.9"


def test_protocols_vector_pays_order_42(crypto_client, crypto_app):
    invoice_id = create_invoice(crypto_client, orderId="order-42", telegramId=7, credit=3).get_json()["invoiceId"]
    assert invoice_id == 528890  # the fake numbers invoices like the vector
    response = deliver(crypto_client, VECTOR_BODY, VECTOR_SIGNATURE)
    assert response.get_json()["outcome"] == "processed"
    assert status(crypto_client, "order-42")["status"] == "paid" and balance(crypto_client, 7) == 3
    [event] = events(crypto_app)
    assert event.body == VECTOR_BODY and event.event_key == "invoice:528890:paid"


def test_fiat_invoice_paid_in_crypto_settles_the_fiat_order(crypto_client, cryptopay):
    create(crypto_client, provider="cryptobot", currency="EUR", amount="9.99", telegramId=5, credit=1)
    response = deliver(crypto_client, paid_body(cryptopay, paid_asset="TON", paid_amount="3.1"))
    assert response.get_json()["outcome"] == "processed" and balance(crypto_client, 5) == 1


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "wrong", "sign-with-other-token"])
def test_bad_or_missing_signature_is_401_and_nothing_is_stored(crypto_client, crypto_app, cryptopay, signature):
    create_invoice(crypto_client, telegramId=42, credit=500)
    body = paid_body(cryptopay)
    if signature == "sign-with-other-token":
        response = deliver(crypto_client, body, "sign", token="1234:OTHER")
    else:
        response = deliver(crypto_client, body, signature)
    error = assert_error(response, 401, "invalid_signature")
    assert TOKEN not in error["message"]
    assert events(crypto_app) == [] and status(crypto_client)["status"] == "pending"
    assert balance(crypto_client, 42) == 0


def test_rejection_is_logged_without_the_token(crypto_client, cryptopay, caplog):
    with caplog.at_level(logging.WARNING):
        deliver(crypto_client, VECTOR_BODY, "0" * 64)
    rejected = [r for r in caplog.records if "rejected a CryptoBot webhook" in r.getMessage()]
    assert rejected
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert TOKEN not in logged and TOKEN.split(":")[1] not in logged


def test_signature_is_checked_before_parsing(crypto_client, crypto_app):
    assert_error(deliver(crypto_client, b"{not json", "0" * 64), 401, "invalid_signature")


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"update_type": "invoice_paid"}',
                                  b'{"update_type":"invoice_paid","payload":{"invoice_id":"7"}}'])
def test_malformed_body_with_a_valid_signature_is_400(crypto_client, crypto_app, body):
    assert_error(deliver(crypto_client, body), 400, "malformed_payload")
    assert events(crypto_app) == []


def test_oversize_body_is_413(crypto_client, crypto_app):
    body = update_body({"invoice_id": 1, "status": "paid", "comment": "x" * 70000})
    assert_error(deliver(crypto_client, body), 413)
    assert events(crypto_app) == []


def test_unknown_update_type_is_stored_and_acknowledged(crypto_client, crypto_app):
    response = deliver(crypto_client, update_body({"check_id": 9}, update_type="check_activated"))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    [event] = events(crypto_app)
    assert (event.event_type, event.status) == ("check_activated", "ignored")


@pytest.mark.parametrize("paid, problem", [({"paid_amount": "1.4"}, "amount"), ({"paid_asset": "TON"}, "currency")])
def test_wrong_amount_or_asset_is_held_as_mismatch(crypto_client, crypto_app, cryptopay, paid, problem):
    create_invoice(crypto_client, telegramId=42, credit=500)
    response = deliver(crypto_client, paid_body(cryptopay, **paid))
    assert response.status_code == 200 and response.get_json()["outcome"] == "mismatch"
    assert status(crypto_client)["status"] == "pending" and balance(crypto_client, 42) == 0
    [event] = events(crypto_app)
    assert event.status == "mismatch" and problem in event.error


def test_invoice_of_another_order_does_not_pay_this_one(crypto_client, crypto_app, cryptopay):
    create_invoice(crypto_client, telegramId=42, credit=500)
    forged = {**cryptopay.invoice(528890), "invoice_id": 1, "status": "paid"}
    assert deliver(crypto_client, update_body(forged)).get_json()["outcome"] == "mismatch"
    assert status(crypto_client)["status"] == "pending"


def test_unknown_order_is_stored_as_unmatched(crypto_client, crypto_app):
    invoice = {"invoice_id": 777, "status": "paid", "currency_type": "crypto", "asset": "USDT", "amount": "5",
               "payload": "no-such-order", "comment": "hi"}
    response = deliver(crypto_client, update_body(invoice))
    assert response.status_code == 200 and response.get_json()["outcome"] == "unmatched"
    [event] = events(crypto_app)
    assert (event.claimed_order_id, event.amount, event.currency) == ("no-such-order", Decimal("5"), "USDT")
    assert event.details["comment"] == "hi"


def test_duplicates_are_acknowledged_and_credit_once(crypto_client, crypto_app, cryptopay):
    create_invoice(crypto_client, telegramId=42, credit=500)
    body = paid_body(cryptopay)
    first = deliver(crypto_client, body).get_json()
    again = deliver(crypto_client, body).get_json()
    invoice = json.loads(body)["payload"]
    other_update_id = deliver(crypto_client, update_body(invoice, update_id=555)).get_json()
    assert first["outcome"] == "processed"
    assert again["duplicate"] is True and again["eventId"] == first["eventId"]
    assert other_update_id["outcome"] == "duplicate"
    assert balance(crypto_client, 42) == 500 and len(events(crypto_app)) == 1


def test_reconciliation_of_an_already_delivered_invoice_is_a_duplicate(crypto_client, crypto_app, cryptopay, clock):
    create_invoice(crypto_client, telegramId=42, credit=500)
    body = paid_body(cryptopay)
    deliver(crypto_client, body)
    with crypto_app.app_context():
        [invoice] = CryptoPayClient(crypto_app.config["SETTINGS"]).get_invoices(status="paid")
        result = cryptobot_service.record_invoice(invoice, crypto_app.config["SETTINGS"], clock())
    assert result.duplicate and balance(crypto_client, 42) == 500


def test_reconciliation_pays_when_the_webhook_never_came(crypto_client, crypto_app, cryptopay, clock):
    invoice_id = create_invoice(crypto_client, telegramId=42, credit=500).get_json()["invoiceId"]
    cryptopay.mark_paid(invoice_id)
    with crypto_app.app_context():
        [invoice] = CryptoPayClient(crypto_app.config["SETTINGS"]).get_invoices([invoice_id])
        result = cryptobot_service.record_invoice(invoice, crypto_app.config["SETTINGS"], clock())
    assert result.outcome == "processed" and balance(crypto_client, 42) == 500
    assert deliver(crypto_client, update_body(invoice)).get_json()["outcome"] == "duplicate"


def test_stale_request_date_is_accepted_and_recorded(crypto_client, crypto_app, cryptopay, clock, caplog):
    create_invoice(crypto_client, telegramId=42, credit=500)
    body = paid_body(cryptopay)
    clock.advance(days=3)
    with caplog.at_level(logging.WARNING):
        response = deliver(crypto_client, body)
    assert response.status_code == 200 and response.get_json()["outcome"] == "processed"
    [event] = events(crypto_app)
    assert event.verification == "valid; stale request_date"
    assert any("stale request_date" in r.getMessage() for r in caplog.records)


def test_database_down_is_503(make_app, tmp_path):
    app = make_app(CRYPTOBOT_TOKEN=TOKEN, DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.db")
    response = deliver(app.test_client(), VECTOR_BODY, VECTOR_SIGNATURE)
    assert_error(response, 503, "database_unavailable")


def test_concurrent_duplicate_deliveries_credit_once(app, base_env, cryptopay, tmp_path):
    from tests.support.live import LiveServer

    env = {**base_env, "CRYPTOBOT_TOKEN": cryptopay.token, "CRYPTOBOT_API_URL": cryptopay.api_url}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        order = {"amount": "1.5", "orderId": "race-c", "provider": "cryptobot", "currency": "USDT",
                 "telegramId": 77, "credit": 500}
        invoice_id = requests.post(f"{live.url}/api/payment", json=order, headers=AUTH, timeout=30).json()["invoiceId"]
        body = update_body(cryptopay.mark_paid(invoice_id))
        headers = {"Content-Type": "application/json", "crypto-pay-api-signature": cryptopay.sign(body)}
        assert_processed_once(post_concurrently(f"{live.url}{URL}", body, headers, PARALLEL))
        assert requests.get(f"{live.url}/api/balance/77", headers=AUTH, timeout=10).json()["balance"] == 500
    assert_settled_once(app)


@pytest.mark.parametrize("field, value", [("paid_asset", "US\x00DT"), ("comment", "thanks \x00"),
                                          ("payload", "order-1\x00"), ("status", "pa\x00id")])
def test_a_nul_inside_a_signed_update_is_stored_and_flagged(crypto_client, crypto_app, cryptopay, field, value):
    invoice_id = create_invoice(crypto_client, telegramId=7, credit=10).get_json()["invoiceId"]
    invoice = {**cryptopay.invoice(invoice_id), "status": "paid", "paid_asset": "USDT", "paid_amount": "1.5",
               field: value}
    body = update_body(invoice)
    response = deliver(crypto_client, body)
    assert response.status_code == 200, response.get_json()
    [event] = events(crypto_app)
    assert event.body == body
    assert "\x00" not in json.dumps(event.details) + event.event_key + (event.currency or "")
    again = deliver(crypto_client, body)  # looked up by its key as stored
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    assert [stored.id for stored in events(crypto_app)] == [event.id]
