"""Bad bytes never make a 500 (SPEC §7): NUL anywhere, integers beyond their column, oversize chunked bodies.

Several of these only failed on PostgreSQL (text columns refuse NUL, INTEGER is 32-bit): run them there too.
"""

from __future__ import annotations

import io
import re

import pytest
import requests
from marshmallow import validate
from sqlalchemy import BigInteger

from services.models import Order
from services.schemas import MAX_CREDIT, MAX_TELEGRAM_ID, PaymentRequestSchema, SubscriptionSchema
from tests.conftest import AUTH
from tests.helpers import assert_error, balance, create, status
from tests.support.admin import PASSWORD, app, cheap_hashing, fresh_panel_tokens, staff  # noqa: F401
from tests.support.live import LiveServer

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client, path: str = "/console/login") -> str:
    return _TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


@pytest.fixture
def console(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD,
                                        "csrf_token": csrf(client)})
    return client


# --- NUL ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, headers", [
    ("/api/payment/zz%00/qr.png", {}),
    ("/api/payment/zz%00/qr.svg", {}),
    ("/api/status/zz%00", AUTH),
    ("/api/status/zz?q=%00", AUTH),
    ("/api/status/zz", {**AUTH, "X-Note": "a\x00b"}),
    # Kept without the HTTP_ prefix in the WSGI environ.
    ("/api/status/zz", {**AUTH, "Content-Type": "text/plain\x00"}),
])
def test_nul_in_path_query_or_header_is_400_json(client, path, headers):
    assert_error(client.get(path, headers=headers), 400, "invalid_characters")


@pytest.mark.parametrize("extra, field", [
    ({"description": "a\x00b"}, "description"),
    ({"metadata": {"note": "a\x00b"}}, "metadata"),
    ({"metadata": {"a\x00b": 1}}, "metadata"),
    ({"metadata": {"deep": [{"x": ["\x00"]}]}}, "metadata"),
    ({"telegramId": 5, "subscription": {"plan": "p\x00", "days": 3}}, "subscription"),
    ({"currency": "RU\x00B"}, "currency"),
])
def test_nul_in_a_json_body_is_422_naming_the_field(client, extra, field):
    error = assert_error(create(client, orderId="nul-1", **extra), 422, "validation_error")
    assert field in error["fields"]


def test_nul_in_an_admin_body_is_422(make_app):
    client = make_app(ADMIN_API_KEY="admin-key-0123456789abcdef0123456789").test_client()
    response = client.post("/admin/events/1/assign", json={"orderId": "o\x00"},
                           headers={"Authorization": "Bearer admin-key-0123456789abcdef0123456789"})
    assert_error(response, 422, "validation_error")


def test_nul_in_the_login_email_shows_the_form_again(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    response = client.post("/console/login", data={"email": "admin@example.test\x00", "password": "x",
                                                   "csrf_token": csrf(client)})
    assert response.status_code == 400 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'name="password"' in page and "NUL" in page


def test_nul_in_a_multipart_login_form_shows_the_form_again(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    response = client.post("/console/login", content_type="multipart/form-data", data={
        "email": "admin@example.test\x00", "password": "x", "csrf_token": csrf(client)})
    assert response.status_code == 400 and 'name="password"' in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/console/?q=a%00b", "/console/orders/a%00b"])
def test_nul_in_a_console_page_address_is_an_html_400(console, path):
    response = console.get(path)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "NUL" in response.get_data(as_text=True)


def test_nul_in_a_console_form_field_is_an_html_400(console):
    response = console.post("/console/events/1/assign",
                            data={"order_id": "o\x00", "csrf_token": csrf(console, "/console/")})
    assert response.status_code == 400 and response.mimetype == "text/html"


# --- integers at their column's limits ---------------------------------------------------------------------

def _column_max(column) -> int:
    return 2**63 - 1 if isinstance(column.type, BigInteger) else 2**31 - 1


@pytest.mark.parametrize("schema, field, column", [
    (PaymentRequestSchema, "telegram_id", Order.__table__.c.telegram_id),
    (PaymentRequestSchema, "credit", Order.__table__.c.credit),
    (SubscriptionSchema, "days", Order.__table__.c.subscription_days),
])
def test_every_request_integer_fits_its_column(schema, field, column):
    [limit] = [rule for rule in schema().fields[field].validators if isinstance(rule, validate.Range)]
    assert limit.max <= _column_max(column)


def test_largest_credit_and_telegram_id_are_stored_and_credited(client):
    body = {"telegramId": MAX_TELEGRAM_ID, "credit": MAX_CREDIT, "subscription": {"plan": "max", "days": 3650}}
    created = create(client, orderId="big-1", **body)
    assert created.status_code == 201, created.get_json()
    assert client.post(f"/sandbox/sbp/{created.get_json()['qrcId']}/pay", headers=AUTH).status_code == 200
    assert status(client, "big-1")["credit"] == MAX_CREDIT
    assert balance(client, MAX_TELEGRAM_ID) == MAX_CREDIT


@pytest.mark.parametrize("extra, field", [
    ({"telegramId": MAX_TELEGRAM_ID + 1}, "telegramId"),
    ({"telegramId": 1, "credit": MAX_CREDIT + 1}, "credit"),
    ({"telegramId": 1, "credit": 2**31}, "credit"),
    ({"telegramId": 1, "credit": 10**12}, "credit"),
    ({"telegramId": 1, "subscription": {"plan": "p", "days": 3651}}, "subscription"),
])
def test_integers_beyond_the_limit_are_422(client, extra, field):
    error = assert_error(create(client, orderId="big-2", **extra), 422, "validation_error")
    assert field in error["fields"]


# --- chunked bodies ----------------------------------------------------------------------------------------

def chunked_post(client, path: str, body: bytes, **headers: str):
    """A body without Content-Length, as gunicorn hands over a chunked request (wsgi.input_terminated)."""
    return client.post(path, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def padded_payment(size: int) -> bytes:
    """A valid payment request of exactly `size` bytes."""
    head, tail = b'{"amount": 1, "orderId": "chunked-1", "description": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("path", ["/api/payment", "/webhook/cryptobot", "/webhook/sbp/tbank"])
def test_chunked_body_over_the_limit_is_413(client, path):
    response = chunked_post(client, path, padded_payment(65536 + 1), Authorization=AUTH["Authorization"])
    assert_error(response, 413, "payload_too_large")


def test_chunked_body_at_the_limit_is_read_whole(make_app):
    client = make_app(MAX_BODY_BYTES="1024").test_client()
    response = chunked_post(client, "/api/payment", padded_payment(1024), Authorization=AUTH["Authorization"])
    assert response.status_code == 201, response.get_json()


def test_chunked_body_over_the_limit_is_413_through_gunicorn(base_env, tmp_path):
    with LiveServer(base_env, workers=1, log_path=tmp_path / "gunicorn.log") as live:
        body = padded_payment(65536 * 2)
        response = requests.post(live.url + "/api/payment", data=iter([body[:1000], body[1000:]]),
                                 headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


# --- where the login returns --------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/console/\r\nSet-Cookie: x=1", "/console/\nx", "/console/\rx"])
def test_login_next_with_control_characters_falls_back_to_the_console(app, client, cheap_hashing, target):  # noqa: F811
    staff(app)
    response = client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD,
                                                   "csrf_token": csrf(client), "next": target})
    assert response.status_code == 303 and response.location == "/console/"
