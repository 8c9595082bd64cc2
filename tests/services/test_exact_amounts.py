"""Amounts from providers never pass through float: answers, notifications and stored bodies read back."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from services import events
from services.errors import MalformedPayload, ProviderUnavailable
from services.db import db, transaction
from services.models import ProviderEvent
from services.orders import find_order, lock_order
from services.providers.sbp import protocol as tbank
from services.http import request_json
from tests.conftest import AUTH
from tests.fakes.base import FakeServer, RecordedRequest, Response
from tests.helpers import assert_error, create, status

# 20 significant digits: a float keeps about 16 and would answer 0.1 here.
PRECISE = "0.10000000000000000001"


class RawJson(FakeServer):
    """Answers every request with the JSON text it is given, numbers written exactly as given."""

    def __init__(self, text: str, status: int = 200):
        super().__init__()
        self.text, self.status = text, status

    def handle(self, req: RecordedRequest) -> Response:
        return Response(self.status, self.text, {"Content-Type": "application/json"})


def test_provider_answers_keep_every_digit_of_a_fraction():
    with RawJson(f'{{"ok": true, "result": {{"amount": {PRECISE}, "count": 3}}}}') as server:
        _, body = request_json(requests.Session(), "GET", server.url, timeout=5, provider="Fake")
    assert body["result"] == {"amount": Decimal(PRECISE), "count": 3}
    assert isinstance(body["result"]["amount"], Decimal)


def test_a_fractional_retry_after_is_still_honoured():
    with RawJson('{"ok": false, "error_code": 429, "parameters": {"retry_after": 1.5}}', 429) as server:
        with pytest.raises(ProviderUnavailable) as raised:
            request_json(requests.Session(), "POST", server.url, timeout=5, provider="Fake")
    assert raised.value.retry_after == 1.5


@pytest.mark.parametrize("amount", [10000.5, True, "10000.0", "1e4", None])
def test_tbank_amount_must_be_whole_kopecks(amount):
    with pytest.raises(MalformedPayload):
        tbank.notice_from_notification({"PaymentId": 1, "Status": "CONFIRMED", "Success": True, "Amount": amount})


@pytest.mark.parametrize("amount", [10000, "10000"])
def test_tbank_amount_in_kopecks_is_exact(amount):
    notice = tbank.notice_from_notification({"PaymentId": 1, "Status": "CONFIRMED", "Success": True,
                                            "Amount": amount})
    assert notice.amount == Decimal("100")


def test_signed_notification_with_a_fractional_amount_settles_nothing(make_app, tbank, clock):
    """int() would have read 10000.5 kopecks as 10000, exactly the order's 100 RUB, and paid it."""
    app = make_app(SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key, TBANK_PASSWORD=tbank.password,
                   TBANK_API_URL=tbank.api_url)
    client = app.test_client()
    assert create(client, amount=100).status_code == 201
    body = tbank.notification(tbank.payment_by_order("order-1")["PaymentId"], Amount=10000.5)
    response = client.post("/webhook/sbp/tbank", data=json.dumps(body), content_type="application/json")
    assert_error(response, 400, "malformed_payload")
    assert status(client)["status"] == "pending"
    assert client.get("/api/status/order-1", headers=AUTH).get_json()["amount"] == 100


def stored_event(provider: str, body: str, verification: str = "valid") -> ProviderEvent:
    return ProviderEvent(id=1, provider=provider, event_key="key", event_type="type", body=body.encode(),
                         verification=verification, claimed_order_id="order-1")


# Within the bounds of an amount (8 places, at most 10**9), yet no float can hold it: 1e9 as a float.
PRECISE_AMOUNT = "999999999.99999999"


def test_a_stored_bmc_event_reads_back_with_its_exact_amount(app):
    body = (f'{{"type": "donation.created", "live_mode": true, "event_id": 7, '
            f'"data": {{"amount": {PRECISE_AMOUNT}, "currency": "USD", "message": "order-1"}}}}')
    notice = events.read_notice(stored_event("bmc", body), app.config["SETTINGS"])
    assert notice.amount == Decimal(PRECISE_AMOUNT) != Decimal(float(PRECISE_AMOUNT))


def test_a_stored_tbank_notification_with_a_fractional_amount_is_not_read_as_a_payment(app):
    body = '{"PaymentId": 1, "Status": "CONFIRMED", "Success": true, "Amount": 10000.5}'
    assert events.read_notice(stored_event("sbp", body), app.config["SETTINGS"]) is None


def test_a_json_column_reads_back_every_digit_of_a_decimal_through_the_orm_and_the_driver(app, client):
    assert create(client).status_code == 201
    with app.app_context():
        with transaction():
            find_order("order-1", lock=True).meta = {"price": Decimal(PRECISE_AMOUNT), "count": 3}
        db.session.remove()
        with transaction():
            meta = find_order("order-1").meta
            locked = lock_order("order-1").meta
    for read in (meta, locked):
        assert read == {"price": Decimal(PRECISE_AMOUNT), "count": 3}
        assert isinstance(read["price"], Decimal) and isinstance(read["count"], int)
