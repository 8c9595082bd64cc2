"""Buy Me a Coffee: payment instructions, and POST /bmc-webhook end to end with order matching."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

import pytest
import requests

from services.db import db
from services.models import Order, ProviderEvent
from services.providers.bmc import protocol as bmc
from tests.conftest import AUTH
from tests.support.admin import ADMIN, ADMIN_KEY
from tests.helpers import (assert_error, assert_processed_once, assert_settled_once, balance, create, post_concurrently,
                           status)
from tests.providers.bmc.test_protocol import LEGACY_BODY, SECRET, VECTOR_BODY, VECTOR_SIGNATURE

URL = "/bmc-webhook"
PAGE = "https://buymeacoffee.com/example"
PARALLEL = 30


@pytest.fixture
def bmc_env() -> dict[str, str]:
    return {"BMC_WEBHOOK_SECRET": SECRET, "BMC_PAGE_URL": PAGE, "ADMIN_API_KEY": ADMIN_KEY}


@pytest.fixture
def bmc_app(make_app, bmc_env, clock):
    app = make_app(**bmc_env)
    app.config["CLOCK"] = clock
    return app


@pytest.fixture
def bmc_client(bmc_app):
    return bmc_app.test_client()


def order(client, order_id: str = "order-43", amount="5", **body):
    response = create(client, provider="bmc", orderId=order_id, amount=amount, **body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def event_body(event_type: str = "donation.created", event_id: int = 1, live_mode=True, attempt: int = 1,
               **data) -> bytes:
    fields = {"id": 58, "amount": 5, "currency": "USD", "status": "succeeded", "message": "order-43 thanks!",
              "support_note": "order-43 thanks!", "supporter_name": "John", "supporter_email": "john@example.com",
              "transaction_id": f"pi_{event_id}", "coffee_count": 1, "coffee_price": "5.0000", "refunded": "false",
              **data}
    event = {"type": event_type, "live_mode": live_mode, "attempt": attempt, "created": 1763892000,
             "event_id": event_id, "data": fields}
    return json.dumps(event, separators=(",", ":")).encode()


def deliver(client, body: bytes, signature: str | None = "sign", headers: dict | None = None):
    sent = dict(headers or {})
    if signature is not None:
        sent["X-Signature-Sha256"] = bmc.signature(body, SECRET) if signature == "sign" else signature
    return client.post(URL, data=body, content_type="application/json", headers=sent)


def outcome(client, body: bytes) -> str:
    response = deliver(client, body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


def events(app) -> list[ProviderEvent]:
    with app.app_context():
        return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


# --- creating payments ---------------------------------------------------------------------------------------------


def test_create_returns_page_and_instructions_naming_the_order(bmc_client):
    body = order(bmc_client, "order-43", "5", telegramId=9, credit=50)
    assert (body["provider"], body["currency"], body["status"], body["payUrl"]) == ("bmc", "USD", "pending", PAGE)
    assert "order-43" in body["instructions"] and PAGE in body["instructions"] and "message" in body["instructions"]
    assert "invoiceId" not in body and "qr" not in body


def test_repeat_is_the_same_payment(bmc_client):
    first = order(bmc_client)
    repeat = create(bmc_client, provider="bmc", orderId="order-43", amount="5")
    assert repeat.status_code == 200 and repeat.get_json()["payUrl"] == first["payUrl"]


def test_currency_follows_bmc_currency(make_app, bmc_env):
    client = make_app(**bmc_env, BMC_CURRENCY="eur").test_client()
    assert order(client)["currency"] == "EUR"
    assert_error(create(client, provider="bmc", orderId="o-2", amount=5, currency="USD"), 422)


@pytest.mark.parametrize("missing", ["BMC_WEBHOOK_SECRET", "BMC_PAGE_URL"])
def test_unconfigured_bmc_is_503(make_app, bmc_env, missing):
    client = make_app(**{k: v for k, v in bmc_env.items() if k != missing}).test_client()
    assert_error(create(client, provider="bmc", orderId="o-1", amount=5), 503, "not_configured")


def test_webhook_without_secret_is_503(make_app):
    client = make_app(BMC_PAGE_URL=PAGE).test_client()
    assert_error(deliver(client, VECTOR_BODY, VECTOR_SIGNATURE), 503, "not_configured")


# --- the webhook ---------------------------------------------------------------------------------------------------


def test_vector_test_event_is_verified_stored_and_not_applied(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    response = deliver(bmc_client, VECTOR_BODY, VECTOR_SIGNATURE)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert status(bmc_client, "order-43")["status"] == "pending" and balance(bmc_client, 9) == 0
    [event] = events(bmc_app)
    assert (event.event_key, event.claimed_order_id, event.body) == ("event:77", "order-43", VECTOR_BODY)
    assert event.details["liveMode"] is False and "test event" in event.details["note"]


def test_live_donation_naming_the_order_pays_it(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    response = deliver(bmc_client, event_body())
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "processed" and response.get_json()["success"] is True
    assert status(bmc_client, "order-43")["status"] == "paid" and balance(bmc_client, 9) == 50
    [event] = events(bmc_app)
    assert (event.event_key, event.status, event.verification) == ("event:1", "processed", "valid")
    assert event.headers["X-Signature-Sha256"] == bmc.signature(event_body(), SECRET)


@pytest.mark.parametrize("event_type", ["extra_purchase.created", "commission_order.created",
                                        "wishlist_payment.created"])
def test_other_purchases_pay_too(bmc_client, event_type):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(event_type, extras=[{"title": "E-book", "amount": "5.00"}])) == "processed"
    assert balance(bmc_client, 9) == 50


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "bad"])
def test_bad_or_missing_signature_is_401_and_nothing_is_stored(bmc_client, bmc_app, signature):
    order(bmc_client, telegramId=9, credit=50)
    assert_error(deliver(bmc_client, event_body(), signature), 401, "invalid_signature")
    assert events(bmc_app) == [] and status(bmc_client, "order-43")["status"] == "pending"


def test_signature_with_another_secret_is_401(bmc_client, bmc_app):
    body = event_body()
    other = bmc.signature(body, SECRET + "-rolled")
    assert_error(deliver(bmc_client, body, other), 401)
    assert events(bmc_app) == []


def test_rejection_is_logged_without_the_secret(bmc_client, caplog):
    with caplog.at_level(logging.WARNING):
        deliver(bmc_client, event_body(), "0" * 64)
    assert any("rejected a Buy Me a Coffee webhook" in r.getMessage() for r in caplog.records)
    assert SECRET not in " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def test_signature_is_checked_before_parsing(bmc_client):
    assert_error(deliver(bmc_client, b"{not json", "0" * 64), 401)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"type":"donation.created"}', b'{"hello":1}'])
def test_malformed_body_with_a_valid_signature_is_400(bmc_client, bmc_app, body):
    assert_error(deliver(bmc_client, body), 400, "malformed_payload")
    assert events(bmc_app) == []


def test_oversize_body_is_413(bmc_client, bmc_app):
    assert_error(deliver(bmc_client, event_body(message="x" * 70000)), 413)
    assert events(bmc_app) == []


def test_unknown_event_type_is_stored_and_acknowledged(bmc_client, bmc_app):
    assert outcome(bmc_client, event_body("payout.created")) == "ignored"
    [event] = events(bmc_app)
    assert (event.event_type, event.status) == ("payout.created", "ignored")


@pytest.mark.parametrize("data, problem", [({"amount": "4.99"}, "amount"), ({"currency": "EUR"}, "currency")])
def test_wrong_amount_or_currency_is_held_as_mismatch(bmc_client, bmc_app, data, problem):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(**data)) == "mismatch"
    assert status(bmc_client, "order-43")["status"] == "pending" and balance(bmc_client, 9) == 0
    [event] = events(bmc_app)
    assert problem in event.error and event.claimed_order_id == "order-43"


def test_payment_without_a_known_order_is_kept_for_support(bmc_client, bmc_app):
    assert outcome(bmc_client, event_body(message="love your work", support_note="love your work",
                                          amount="3.00")) == "unmatched"
    [event] = events(bmc_app)
    assert event.status == "unmatched" and event.claimed_order_id is None
    assert (event.amount, event.currency) == (Decimal("3.00"), "USD")
    details = event.details
    assert (details["supporterName"], details["supporterEmail"], details["message"]) == (
        "John", "john@example.com", "love your work")
    assert details["orderMatch"] == "no existing order named in the message"


def test_duplicate_event_is_acknowledged_and_credits_once(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    first = deliver(bmc_client, event_body()).get_json()
    retry = deliver(bmc_client, event_body(attempt=2)).get_json()
    assert first["outcome"] == "processed"
    assert retry["duplicate"] is True and retry["eventId"] == first["eventId"]
    assert balance(bmc_client, 9) == 50 and len(events(bmc_app)) == 1


@pytest.mark.parametrize("message", ["Thanks! order-43,", "(order-43).", "order: order-43; cheers", "#order-43!!!"])
def test_order_id_is_found_through_punctuation(bmc_client, message):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(message=message, support_note=message)) == "processed"


def test_of_several_named_orders_the_pending_one_is_paid(bmc_client):
    order(bmc_client, "order-42", telegramId=9, credit=10)
    assert outcome(bmc_client, event_body(event_id=1, message="order-42", support_note=None)) == "processed"
    order(bmc_client, "order-43", telegramId=9, credit=50)
    text = "Paid order-42 last week, this one is order-43."
    assert outcome(bmc_client, event_body(event_id=2, message=text, support_note=None)) == "processed"
    assert status(bmc_client, "order-43")["status"] == "paid" and balance(bmc_client, 9) == 60


def test_of_several_pending_orders_the_one_with_the_paid_amount_wins(bmc_client):
    order(bmc_client, "order-43", amount="5", telegramId=9, credit=5)
    order(bmc_client, "order-44", amount="10", telegramId=9, credit=10)
    assert outcome(bmc_client, event_body(amount="10.00", message="order-43 or order-44?")) == "processed"
    assert status(bmc_client, "order-44")["status"] == "paid" and status(bmc_client, "order-43")["status"] == "pending"


def test_ambiguous_orders_are_left_to_support(bmc_client, bmc_app):
    order(bmc_client, "order-43", amount="5", telegramId=9, credit=5)
    order(bmc_client, "order-44", amount="5", telegramId=9, credit=5)
    assert outcome(bmc_client, event_body(message="order-43 order-44")) == "unmatched"
    assert balance(bmc_client, 9) == 0
    [event] = events(bmc_app)
    assert event.details["orderMatch"].startswith("ambiguous") and event.claimed_order_id is None


def test_refund_reverses_the_paid_order(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(event_id=1)) == "processed"
    refund = event_body("donation.refunded", event_id=2, transaction_id="pi_1", refunded="true",
                        message="", support_note="")
    assert outcome(bmc_client, refund) == "processed"
    assert status(bmc_client, "order-43")["status"] == "refunded" and balance(bmc_client, 9) == 0
    assert events(bmc_app)[-1].details["orderMatch"] == "the order this payment paid"


def test_membership_start_activates_the_named_subscription(bmc_client):
    order(bmc_client, "sub-1", amount="5", telegramId=9, subscription={"plan": "gold", "days": 30})
    started = event_body("membership.started", psp_id="sub_abc", membership_level_name="Gold",
                         message=None, support_note="sub-1")
    assert outcome(bmc_client, started) == "processed"
    body = status(bmc_client, "sub-1")
    assert body["status"] == "paid" and body["purchaseId"]


def test_membership_start_without_an_order_is_kept_for_support(bmc_client):
    started = event_body("membership.started", message=None, support_note=None, membership_level_name="Gold")
    assert outcome(bmc_client, started) == "unmatched"


def test_membership_cancel_is_stored_with_its_details(bmc_client, bmc_app):
    cancelled = event_body("membership.cancelled", status="canceled", membership_level_name="Gold",
                           psp_id="sub_abc", canceled_at=1763899999, message=None, support_note=None)
    assert outcome(bmc_client, cancelled) == "ignored"
    [event] = events(bmc_app)
    assert (event.details["membershipLevelName"], event.details["status"]) == ("Gold", "canceled")


def test_legacy_format_with_a_valid_signature_pays(bmc_client, bmc_app):
    order(bmc_client, "order-44", amount="10", telegramId=9, credit=20)
    response = deliver(bmc_client, LEGACY_BODY, headers={"X-Buymeacoffee-Event": "pledges:update"})
    assert response.status_code == 200 and response.get_json()["outcome"] == "processed"
    assert balance(bmc_client, 9) == 20
    [event] = events(bmc_app)
    assert event.event_type == bmc.LEGACY_EVENT and event.headers["X-Buymeacoffee-Event"] == "pledges:update"
    assert deliver(bmc_client, LEGACY_BODY).get_json()["outcome"] == "duplicate"


@pytest.mark.parametrize("signature", [None, "0" * 64])
def test_legacy_format_without_a_valid_signature_is_refused(bmc_client, bmc_app, signature):
    order(bmc_client, "order-44", amount="10", telegramId=9, credit=20)
    response = deliver(bmc_client, LEGACY_BODY, signature, headers={"X-Buymeacoffee-Event": "pledges:update"})
    assert_error(response, 401, "invalid_signature")
    assert events(bmc_app) == [] and balance(bmc_client, 9) == 0


def test_expired_order_is_still_paid_when_the_money_came(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    with bmc_app.app_context():
        db.session.execute(db.update(Order).values(status="expired"))
        db.session.commit()
    assert outcome(bmc_client, event_body()) == "processed"
    assert balance(bmc_client, 9) == 50


def test_database_down_is_503(make_app, bmc_env, tmp_path):
    app = make_app(**bmc_env, DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.db")
    assert_error(deliver(app.test_client(), event_body()), 503, "database_unavailable")


def test_concurrent_duplicate_deliveries_credit_once(app, base_env, bmc_env, tmp_path):
    from tests.support.live import LiveServer

    with LiveServer({**base_env, **bmc_env}, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        created = requests.post(f"{live.url}/api/payment", headers=AUTH, timeout=30, json={
            "amount": "5", "orderId": "order-43", "provider": "bmc", "telegramId": 77, "credit": 500})
        assert created.status_code == 201
        body = event_body()
        headers = {"Content-Type": "application/json", "X-Signature-Sha256": bmc.signature(body, SECRET)}
        assert_processed_once(post_concurrently(f"{live.url}{URL}", body, headers, PARALLEL))
        assert requests.get(f"{live.url}/api/balance/77", headers=AUTH, timeout=10).json()["balance"] == 500
    assert_settled_once(app)


def test_refund_of_another_payment_naming_the_order_reverses_nothing(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(event_id=1)) == "processed"
    # A refund of some other supporter's payment whose message happens to name the paid order.
    refund = event_body("donation.refunded", event_id=2, transaction_id="pi_other", refunded="true")
    assert outcome(bmc_client, refund) == "conflict"
    assert status(bmc_client, "order-43")["status"] == "paid" and balance(bmc_client, 9) == 50
    assert events(bmc_app)[-1].error == "the refunded payment pi_other did not pay for this order"


def assign(app, event_id: int, order_id: str):
    return app.test_client().post(f"/admin/events/{event_id}/assign", json={"orderId": order_id}, headers=ADMIN)


def test_refund_of_a_payment_support_assigned_reverses_the_order_once(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    # The buyer forgot the orderId: support assigns the payment, then the creator refunds it.
    assert outcome(bmc_client, event_body(event_id=1, message="thanks!", support_note="thanks!")) == "unmatched"
    assert assign(bmc_app, events(bmc_app)[0].id, "order-43").status_code == 200
    assert balance(bmc_client, 9) == 50
    refund = event_body("donation.refunded", event_id=2, transaction_id="pi_1", refunded="true",
                        message="", support_note="")
    assert outcome(bmc_client, refund) == "processed"
    assert deliver(bmc_client, refund).get_json()["outcome"] == "duplicate"
    assert status(bmc_client, "order-43")["status"] == "refunded" and balance(bmc_client, 9) == 0


def test_a_partial_refund_is_flagged_not_applied(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    assert outcome(bmc_client, event_body(event_id=1)) == "processed"
    refund = event_body("donation.refunded", event_id=2, transaction_id="pi_1", amount=2, refunded="true")
    assert outcome(bmc_client, refund) == "conflict"
    assert status(bmc_client, "order-43")["status"] == "paid" and balance(bmc_client, 9) == 50
    assert "2" in events(bmc_app)[-1].error and "5" in events(bmc_app)[-1].error


@pytest.mark.parametrize("amount", ["1e999999999", "-1e999999999", "1e-999999999", "12345678901234567890"])
def test_an_unusable_amount_is_stored_and_flagged_at_once(bmc_client, bmc_app, amount):
    order(bmc_client, telegramId=9, credit=50)
    body = event_body(event_id=1).replace(b'"amount":5', b'"amount":' + amount.encode())
    started = time.monotonic()
    assert outcome(bmc_client, body) == "mismatch"
    assert time.monotonic() - started < 1
    [event] = events(bmc_app)
    assert event.amount is None and event.body == body and "amount" in event.error
    assert status(bmc_client, "order-43")["status"] == "pending" and balance(bmc_client, 9) == 0


def test_a_lone_surrogate_in_the_message_is_stored_not_refused(bmc_client, bmc_app):
    order(bmc_client, telegramId=9, credit=50)
    body = event_body(event_id=1, message="order-43 \\ud800 thanks", support_note="x").replace(b"\\\\ud800", b"\\ud800")
    assert b"\\ud800" in body and b"\\\\" not in body
    assert outcome(bmc_client, body) == "processed"
    [event] = events(bmc_app)
    assert event.body == body and balance(bmc_client, 9) == 50
