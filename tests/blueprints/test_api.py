"""The payment API: create, idempotency, status, balance, QR images, and every error status."""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from PIL import Image

from services.providers.sbp import nspk
from tests.conftest import API_TOKEN, AUTH
from tests.helpers import assert_error, create, status


def test_create_sbp_payment_returns_qr_fields(client):
    response = create(client, amount="100.50", telegramId=42, credit=500, metadata={"cart": [1, 2]})
    assert response.status_code == 201
    body = response.get_json()
    assert body["success"] is True
    assert (body["orderId"], body["status"], body["provider"], body["currency"]) == ("order-1", "pending", "sbp", "RUB")
    assert body["amount"] == pytest.approx(100.5) and "100.5" in response.get_data(as_text=True)
    assert nspk.QRC_ID_PATTERN.match(body["qrcId"]) and body["qrcId"].startswith("BD")
    assert body["qr"].startswith(f"https://qr.nspk.ru/{body['qrcId']}?type=02&bank=100000000000&sum=10050&cur=RUB&crc=")
    assert body["qrImage"] == "https://pay.example.test/api/payment/order-1/qr.png"
    assert body["expiresAt"].endswith("Z") and body["metadata"] == {"cart": [1, 2]}


def test_sandbox_link_crc_is_ccitt_false_over_text_before_crc(client):
    link = create(client).get_json()["qr"]
    text, crc = link.split("&crc=")
    assert crc == f"{nspk.crc16_ccitt_false(text.encode()):04X}"


def test_repeat_returns_same_payment_with_200(client):
    first = create(client).get_json()
    repeat = create(client)
    assert repeat.status_code == 200
    assert repeat.get_json()["qrcId"] == first["qrcId"]


@pytest.mark.parametrize("change", [
    {"amount": 101}, {"amount": "100.01"}, {"telegramId": 7, "credit": 5},
    {"telegramId": 7, "subscription": {"plan": "pro", "days": 30}},
])
def test_same_order_with_different_terms_is_409(client, change):
    create(client)
    assert_error(create(client, **change), 409, "order_conflict")


def test_conflict_leaves_existing_order_unchanged(client):
    original = create(client).get_json()
    create(client, amount=999)
    after = status(client)
    assert (after["amount"], after["status"]) == (original["amount"], "pending")


@pytest.mark.parametrize("body, field", [
    ({"orderId": "o-1"}, "amount"),
    ({"amount": 100}, "orderId"),
    ({"amount": 0, "orderId": "o-1"}, "amount"),
    ({"amount": -5, "orderId": "o-1"}, "amount"),
    ({"amount": "1.555", "orderId": "o-1"}, "amount"),
    ({"amount": "abc", "orderId": "o-1"}, "amount"),
    ({"amount": True, "orderId": "o-1"}, "amount"),
    ({"amount": 100, "orderId": "bad id!"}, "orderId"),
    ({"amount": 100, "orderId": "x" * 65}, "orderId"),
    ({"amount": 100, "orderId": "o-3\n"}, "orderId"),
    ({"amount": 100, "orderId": "o-1", "currency": "RUB\n"}, "currency"),
    ({"amount": 100, "orderId": "o-1", "provider": "paypal"}, "provider"),
    ({"amount": 100, "orderId": "o-1", "currency": "USD"}, "currency"),
    ({"amount": 100, "orderId": "o-1", "telegramId": "42"}, "telegramId"),
    ({"amount": 100, "orderId": "o-1", "credit": 5}, "telegramId"),
    ({"amount": 100, "orderId": "o-1", "telegramId": 1, "subscription": {"plan": "pro"}}, "subscription"),
    ({"amount": 100, "orderId": "o-1", "metadata": {"x": "y" * 5000}}, "metadata"),
    ({"amount": 100, "orderId": "o-1", "unknown": 1}, "unknown"),
])
def test_invalid_payment_requests_are_422_with_field(client, body, field):
    response = client.post("/api/payment", json=body, headers=AUTH)
    error = assert_error(response, 422, "validation_error")
    assert field in error["fields"]


def test_nan_amount_is_rejected(client):
    response = client.post("/api/payment", data='{"amount": NaN, "orderId": "o-1"}',
                           content_type="application/json", headers=AUTH)
    assert_error(response, 400)


def test_amount_given_as_float_text_is_exact(client):
    response = client.post("/api/payment", data='{"amount": 0.1, "orderId": "o-1"}',
                           content_type="application/json", headers=AUTH)
    assert response.status_code == 201
    assert "sum=10&" in response.get_json()["qr"]


def test_malformed_json_is_400(client):
    response = client.post("/api/payment", data="{not json", content_type="application/json", headers=AUTH)
    assert_error(response, 400, "malformed_payload")


def test_json_array_body_is_400(client):
    assert_error(client.post("/api/payment", json=[1], headers=AUTH), 400)


def test_non_json_body_is_415(client):
    response = client.post("/api/payment", data="amount=1", content_type="application/x-www-form-urlencoded",
                           headers=AUTH)
    assert_error(response, 415, "unsupported_media_type")


def test_oversize_body_is_413(client):
    body = '{"amount": 1, "orderId": "o", "description": "' + "x" * 70000 + '"}'
    response = client.post("/api/payment", data=body, content_type="application/json", headers=AUTH)
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}, {"Authorization": "Bearer"},
])
def test_missing_or_wrong_token_is_401_with_challenge(client, headers):
    response = client.post("/api/payment", json={"amount": 1, "orderId": "o"}, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_any_of_several_rotated_tokens_is_accepted(make_app):
    client = make_app(WEBHOOK_API_TOKEN=f"old-token-abc, {API_TOKEN}").test_client()
    assert client.get("/api/status/none", headers={"Authorization": "Bearer old-token-abc"}).status_code == 404
    assert client.get("/api/status/none", headers=AUTH).status_code == 404


def test_api_without_configured_token_is_503(make_app):
    client = make_app(WEBHOOK_API_TOKEN="").test_client()
    assert_error(client.get("/api/status/x", headers=AUTH), 503, "not_configured")


def test_status_of_unknown_order_is_404(client):
    assert_error(client.get("/api/status/nope", headers=AUTH), 404, "not_found")


def test_status_shape(client):
    create(client, metadata={"k": "v"})
    body = status(client)
    assert body == {**body, "success": True, "orderId": "order-1", "status": "pending", "amount": 100,
                    "currency": "RUB", "provider": "sbp", "paidAt": None, "metadata": {"k": "v"}}
    assert body["createdAt"].endswith("Z")
    assert "purchaseId" not in body


def test_balance_of_unknown_user_is_zero(client):
    response = client.get("/api/balance/123", headers=AUTH)
    assert response.get_json() == {"success": True, "telegramId": 123, "balance": 0, "unit": "NDN"}


def test_balance_unit_follows_setting(make_app):
    client = make_app(CREDIT_UNIT="GEM").test_client()
    assert client.get("/api/balance/1", headers=AUTH).get_json()["unit"] == "GEM"


def test_unknown_route_and_wrong_method_are_json(client):
    assert_error(client.get("/no/such/path"), 404)
    response = client.delete("/api/payment", headers=AUTH)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch("[0-9a-f]{32}", generated) and client.get("/health").headers["X-Request-ID"] != generated
    assert client.get("/health", headers={"X-Request-ID": "bad id <x>"}).headers["X-Request-ID"] != "bad id <x>"


def test_qr_png_decodes_back_to_the_link(client):
    link = create(client).get_json()["qr"]
    response = client.get("/api/payment/order-1/qr.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert "max-age" in response.headers["Cache-Control"]
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(response.data)))
    assert [code.text for code in decoded] == [link]


def test_qr_svg_and_conditional_get(client):
    create(client)
    response = client.get("/api/payment/order-1/qr.svg")
    assert response.mimetype == "image/svg+xml" and b"<svg" in response.data
    etag = response.headers["ETag"]
    again = client.get("/api/payment/order-1/qr.svg", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data


def test_qr_of_unknown_order_or_format_is_404(client):
    assert_error(client.get("/api/payment/none/qr.png"), 404)
    create(client)
    assert_error(client.get("/api/payment/order-1/qr.gif"), 404)


def test_balance_of_out_of_range_telegram_id_is_422(client):
    assert_error(client.get(f"/api/balance/{2**64}", headers=AUTH), 422, "validation_error")
