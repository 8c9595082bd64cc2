"""Creating YooKassa payments through POST /api/payment against the fake API: the request YooKassa gets, the
answer the caller gets, idempotency by orderId (ours and YooKassa's Idempotence-Key), errors."""

from __future__ import annotations

import logging

import pytest

from services.providers.yookassa import protocol
from tests.helpers import assert_error, create, status
from tests.support.yookassa import create_payment, yookassa_env


@pytest.fixture
def app(make_app, yookassa):
    return make_app(**yookassa_env(yookassa))


def posts(fake) -> list:
    return [r for r in fake.requests if r.method == "POST"]


def test_create_asks_for_a_one_stage_payment_with_a_redirect(client, yookassa):
    response = create_payment(client, description="VPN, 30 days", amount="199.9")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    [call] = posts(yookassa)
    assert call.path == "/v3/payments" and call.headers["authorization"].startswith("Basic ")
    assert call.headers["idempotence-key"] == protocol.idempotence_key("payment", "order-1")
    assert call.json == {"amount": {"value": "199.90", "currency": "RUB"}, "capture": True,
                         "confirmation": {"type": "redirect", "return_url": "https://pay.example.test/paid"},
                         "description": "VPN, 30 days", "metadata": {"orderId": "order-1"}}
    payment = yookassa.payment(body["paymentId"])
    assert body["payUrl"] == payment["confirmation"]["confirmation_url"]
    assert (body["provider"], body["currency"], body["status"], body["orderId"]) == (
        "yookassa", "RUB", "pending", "order-1")
    assert "paymentMethod" not in body and "qrcId" not in body and "invoiceId" not in body


@pytest.mark.parametrize("method", ["bank_card", "sbp"])
def test_a_chosen_payment_method_is_asked_for_and_echoed(client, yookassa, method):
    body = create_payment(client, paymentMethod=method).get_json()
    assert posts(yookassa)[0].json["payment_method_data"] == {"type": method}
    assert body["paymentMethod"] == method
    assert yookassa.payment(body["paymentId"])["payment_method"]["type"] == method


def test_return_url_is_configurable(make_app, yookassa):
    client = make_app(**yookassa_env(yookassa, YOOKASSA_RETURN_URL="https://shop.example/thanks")).test_client()
    create_payment(client)
    assert posts(yookassa)[0].json["confirmation"]["return_url"] == "https://shop.example/thanks"


def test_repeat_returns_the_same_payment_without_a_second_call(client, yookassa):
    first = create_payment(client, paymentMethod="sbp").get_json()
    again = create_payment(client, paymentMethod="sbp")
    assert again.status_code == 200
    assert (again.get_json()["paymentId"], again.get_json()["payUrl"]) == (first["paymentId"], first["payUrl"])
    assert len(posts(yookassa)) == 1


@pytest.mark.parametrize("first, second", [({}, {"paymentMethod": "sbp"}), ({"paymentMethod": "sbp"}, {}),
                                           ({"paymentMethod": "sbp"}, {"paymentMethod": "bank_card"})])
def test_repeat_with_another_payment_method_is_409(client, yookassa, first, second):
    assert create_payment(client, **first).status_code == 201
    error = assert_error(create_payment(client, **second), 409, "order_conflict")
    assert "paymentMethod" in error["fields"] and len(posts(yookassa)) == 1


def test_retry_after_a_timeout_gives_one_payment(make_app, yookassa):
    client = make_app(**yookassa_env(yookassa, HTTP_TIMEOUT_SECONDS="0.3")).test_client()
    yookassa.delay_seconds = 1  # YooKassa creates the payment, but its answer comes too late
    assert_error(create_payment(client), 503, "provider_unavailable")
    assert yookassa.payments_created == 1 and status(client)["status"] == "pending"
    yookassa.delay_seconds = 0
    retry = create_payment(client)
    assert retry.status_code == 200
    [payment_id] = yookassa.payments
    assert retry.get_json()["paymentId"] == payment_id and yookassa.payments_created == 1
    keys = {r.headers["idempotence-key"] for r in posts(yookassa)}
    assert len(posts(yookassa)) == 2 and len(keys) == 1


@pytest.mark.parametrize("failure", [500, 429])
def test_retryable_answer_is_503_and_the_retry_replays_one_payment(client, yookassa, failure):
    yookassa.error_next(failure, path="/payments")
    assert_error(create_payment(client), 503, "provider_unavailable")
    assert create_payment(client).get_json()["paymentId"]
    assert yookassa.payments_created == 1


def test_api_down_is_503_and_a_retry_creates_the_payment(client, yookassa):
    yookassa.down()
    assert_error(create_payment(client), 503, "provider_unavailable")
    yookassa.up()
    assert create_payment(client).get_json()["payUrl"].startswith("https://")


def test_rejected_request_is_502_with_yookassa_code(client, yookassa, caplog):
    yookassa.error_next(400, description="Invalid amount.value", code="invalid_request", parameter="amount.value")
    with caplog.at_level(logging.WARNING):
        error = assert_error(create_payment(client), 502, "provider_error")
    assert "invalid_request" in error["message"] and "Invalid amount.value" in error["message"]
    [logged] = [r for r in caplog.records if "YooKassa POST payments refused" in r.getMessage()]
    assert logged.parameter == "amount.value" and logged.yookassa_error_id


def test_wrong_credentials_are_503_not_configured_and_never_echoed(make_app, yookassa, caplog):
    client = make_app(**yookassa_env(yookassa, YOOKASSA_SECRET_KEY="test_wrong-secret-key")).test_client()
    with caplog.at_level(logging.DEBUG):
        response = create_payment(client)
    error = assert_error(response, 503, "not_configured")
    assert "YOOKASSA_SHOP_ID" in error["message"]
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "wrong-secret-key" not in logged + response.get_data(as_text=True)
    assert "Authorization" not in logged and "Basic " not in logged


@pytest.mark.parametrize("body, field", [
    ({"currency": "USD"}, "currency"), ({"amount": "1.005"}, "amount"),
    ({"paymentMethod": "yoo_money"}, "paymentMethod"), ({"paymentMethod": "SBP"}, "paymentMethod"),
    ({"paymentMethod": 1}, "paymentMethod"),
])
def test_invalid_terms_are_422_without_a_call(client, yookassa, body, field):
    assert field in assert_error(create_payment(client, **body), 422, "validation_error")["fields"]
    assert yookassa.requests == []


def test_another_provider_takes_no_payment_method(client):
    error = assert_error(create(client, paymentMethod="sbp"), 422, "validation_error")
    assert error["fields"]["paymentMethod"] == ["this provider lets the buyer choose"]


def test_without_credentials_payments_are_503(make_app):
    assert_error(create_payment(make_app().test_client()), 503, "not_configured")

