"""Bad bytes never make a 500 (SPEC §7): NUL anywhere, integers beyond their column, oversize chunked bodies.

Several of these only failed on PostgreSQL (text columns refuse NUL, INTEGER is 32-bit): run them there too.
"""

from __future__ import annotations

import re

import pytest
from marshmallow import validate
from sqlalchemy import BigInteger

from services.models import Order
from services.schemas import MAX_CREDIT, MAX_TELEGRAM_ID, PaymentRequestSchema, SubscriptionSchema
from tests.conftest import AUTH
from tests.helpers import assert_error, balance, create, status
from tests.support.admin import app, cheap_hashing, fresh_panel_tokens, staff  # noqa: F401

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client, path: str = "/console/login") -> str:
    return _TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


@pytest.fixture
def console(app, client, cheap_hashing):  # noqa: F811
    staff(app)
    client.post("/console/login", data={"email": "admin@example.test", "password": "correct horse battery staple",
                                        "csrf_token": csrf(client)})
    return client


# --- NUL ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, headers", [
    ("/api/payment/zz%00/qr.png", {}),
    ("/api/payment/zz%00/qr.svg", {}),
    ("/api/status/zz%00", AUTH),
    ("/api/status/zz?q=%00", AUTH),
    ("/api/status/zz", {**AUTH, "X-Note": "a\x00b"}),
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
