"""A provider reply that conflicts with stored data is a clear 502, never a unique-violation 500 (SPEC §5)."""

from __future__ import annotations

import itertools

import pytest

from services.providers import registry
from services.providers.base import CreatedPayment
from tests.conftest import AUTH
from tests.helpers import assert_error, create


@pytest.fixture
def tbank_app(make_app, tbank):
    return make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key, TBANK_PASSWORD=tbank.password,
                    TBANK_API_URL=tbank.api_url)


def test_payment_id_already_used_by_another_order_is_502(tbank_app, tbank):
    client = tbank_app.test_client()
    assert create(client, orderId="first").status_code == 201
    tbank._ids = itertools.count(4_000_000_001)  # the gateway hands out the first order's PaymentId again
    error = assert_error(create(client, orderId="second"), 502, "provider_error")
    assert "already" in error["message"]
    assert client.get("/api/status/first", headers=AUTH).get_json()["status"] == "pending"


def test_after_such_a_reply_a_retry_asks_the_provider_again(tbank_app, tbank):
    client = tbank_app.test_client()
    create(client, orderId="first")
    tbank._ids = itertools.count(4_000_000_001)
    assert create(client, orderId="second").status_code == 502
    tbank._ids = itertools.count(4_000_000_100)
    retried = create(client, orderId="second")
    assert retried.status_code == 200 and retried.get_json()["qrcId"]


class LocalDuplicate:
    """A provider that creates payments locally (no call) and always names the same one."""

    name, local = "sbp", True

    def default_currency(self) -> str:
        return "RUB"

    def currency_problem(self, currency: str) -> None:
        return None

    def create(self, draft) -> CreatedPayment:
        return CreatedPayment(provider_ref="same", data={"qr": "https://qr.nspk.ru/X"})


def test_local_provider_naming_a_used_payment_is_502_and_stores_nothing(client, monkeypatch):
    monkeypatch.setattr(registry, "payment_provider", lambda name, settings: LocalDuplicate())
    assert create(client, orderId="first").status_code == 201
    assert_error(create(client, orderId="second"), 502, "provider_error")
    assert client.get("/api/status/second", headers=AUTH).status_code == 404
