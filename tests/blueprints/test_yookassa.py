"""POST /webhook/yookassa end to end against the fake YooKassa API: the source address, the object fetched back,
deduplication by (object, fetched status), cancel, refunds, the API down, concurrent repeats."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
import requests

from tests.conftest import AUTH
from tests.helpers import (assert_error, assert_processed_once, assert_settled_once, balance, post_concurrently,
                           scrape, status)
from tests.support.yookassa import (OUTSIDE_IP, URL, YOOKASSA_IP, create_payment, events, gets, notify,
                                    yookassa_env)

PARALLEL = 30


@pytest.fixture
def app(make_app, yookassa):
    return make_app(**yookassa_env(yookassa))


@pytest.fixture
def payment_id(client, yookassa) -> str:
    response = create_payment(client)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["paymentId"]


def refund_at_fake(yookassa, payment_id: str, value: str) -> str:
    """A refund made in YooKassa's merchant profile (not through the gateway)."""
    answer = requests.post(f"{yookassa.api_url}/refunds", auth=yookassa.auth, timeout=5,
                           headers={"Idempotence-Key": f"manual-{value}"},
                           json={"payment_id": payment_id, "amount": {"value": value, "currency": "RUB"}})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


# --- paid ------------------------------------------------------------------------------------------------------

def test_succeeded_payment_is_fetched_back_and_fulfils_once(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    response = notify(client, yookassa, "payment.succeeded", payment_id)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["outcome"], body["duplicate"]) == ("processed", False)
    assert status(client)["status"] == "paid" and balance(client, 42) == 500
    [lookup] = gets(yookassa)
    assert lookup.path == f"/v3/payments/{payment_id}" and lookup.headers["authorization"].startswith("Basic ")
    [event] = events(app)
    assert (event.event_key, event.event_type, event.status) == (f"payment:{payment_id}:succeeded",
                                                                 "payment.succeeded", "processed")
    assert (event.amount, event.currency, event.provider_payment_id) == (Decimal("100.00"), "RUB", payment_id)
    assert event.remote_addr == YOOKASSA_IP and event.verification.startswith("address allowed")
    assert json.loads(event.body) == yookassa.payment(payment_id)
    assert event.details["notified"] == "payment.succeeded"
    again = notify(client, yookassa, "payment.succeeded", payment_id).get_json()
    assert (again["outcome"], again["duplicate"], again["eventId"]) == ("duplicate", True, body["eventId"])
    assert balance(client, 42) == 500 and len(events(app)) == 1


def test_forged_notification_for_a_pending_payment_changes_nothing(client, app, yookassa, payment_id):
    forged = yookassa.notification("payment.succeeded", payment_id)
    forged["object"].update(status="succeeded", paid=True)
    response = notify(client, yookassa, "payment.succeeded", body=forged)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert status(client)["status"] == "pending" and balance(client, 42) == 0
    [event] = events(app)
    assert event.event_key == f"payment:{payment_id}:pending" and event.details["notified"] == "payment.succeeded"
    # The stored pending answer does not block the real payment that follows.
    yookassa.succeed(payment_id)
    assert notify(client, yookassa, "payment.succeeded", payment_id).get_json()["outcome"] == "processed"
    assert status(client)["status"] == "paid" and balance(client, 42) == 500


def test_amount_is_taken_from_the_api_not_the_notification(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    forged = yookassa.notification("payment.succeeded", payment_id)
    forged["object"]["amount"]["value"] = "1.00"
    forged["object"]["metadata"] = {"orderId": "someone-else"}
    assert notify(client, yookassa, "payment.succeeded", body=forged).get_json()["outcome"] == "processed"
    assert events(app)[0].amount == Decimal("100.00")


def test_payment_of_another_amount_is_held_as_mismatch(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    with yookassa._lock:
        yookassa.payments[payment_id]["amount"]["value"] = "99.00"
    assert notify(client, yookassa, "payment.succeeded", payment_id).get_json()["outcome"] == "mismatch"
    assert status(client)["status"] == "pending" and balance(client, 42) == 0
    assert "amount 99.00" in events(app)[0].error


def test_payment_of_an_unknown_order_is_stored_unmatched(client, app, yookassa):
    other = requests.post(f"{yookassa.api_url}/payments", auth=yookassa.auth, timeout=5,
                          headers={"Idempotence-Key": "elsewhere"},
                          json={"amount": {"value": "5.00", "currency": "RUB"}, "metadata": {"orderId": "nobody"}})
    yookassa.succeed(other.json()["id"])
    response = notify(client, yookassa, "payment.succeeded", other.json()["id"])
    assert response.status_code == 200 and response.get_json()["outcome"] == "unmatched"
    assert events(app)[0].claimed_order_id == "nobody"


# --- canceled and refunded ------------------------------------------------------------------------------------

def test_canceled_payment_cancels_the_order_with_its_reason(client, app, yookassa, payment_id):
    yookassa.cancel(payment_id, party="payment_network", reason="payment_expired")
    response = notify(client, yookassa, "payment.canceled", payment_id)
    assert response.get_json()["outcome"] == "processed"
    assert status(client)["status"] == "cancelled"
    [event] = events(app)
    assert event.details["cancellationReason"] == "payment_expired"
    assert event.details["cancellationParty"] == "payment_network"


def test_full_refund_reverses_once(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    notify(client, yookassa, "payment.succeeded", payment_id)
    refund_id = refund_at_fake(yookassa, payment_id, "100.00")
    response = notify(client, yookassa, "refund.succeeded", refund_id)
    assert response.get_json()["outcome"] == "processed"
    assert notify(client, yookassa, "refund.succeeded", refund_id).get_json()["outcome"] == "duplicate"
    assert status(client)["status"] == "refunded" and balance(client, 42) == 0
    refund_event = events(app)[-1]
    assert (refund_event.event_key, refund_event.provider_payment_id) == (f"refund:{refund_id}:succeeded",
                                                                          payment_id)
    assert gets(yookassa)[-1].path == f"/v3/refunds/{refund_id}"


def test_partial_refund_is_flagged_and_reverses_nothing(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    notify(client, yookassa, "payment.succeeded", payment_id)
    refund_id = refund_at_fake(yookassa, payment_id, "30.00")
    assert notify(client, yookassa, "refund.succeeded", refund_id).get_json()["outcome"] == "conflict"
    assert status(client)["status"] == "paid" and balance(client, 42) == 500
    refund_event = events(app)[-1]
    assert refund_event.amount == Decimal("30.00") and "30.00" in refund_event.error


def test_refund_of_an_unpaid_order_changes_nothing(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    refund_id = refund_at_fake(yookassa, payment_id, "100.00")
    assert notify(client, yookassa, "refund.succeeded", refund_id).get_json()["outcome"] == "conflict"
    assert status(client)["status"] == "pending"


# --- the source address ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", [OUTSIDE_IP, "127.0.0.1", "185.71.76.32", "2a02:5181::1"])
def test_notification_from_another_address_is_403_and_changes_nothing(client, app, yookassa, payment_id,
                                                                       address, caplog):
    yookassa.succeed(payment_id)
    counted = (("outcome", "forbidden"), ("provider", "yookassa"))
    before = scrape(client).get(("webhook_events_total", counted), 0)
    with caplog.at_level(logging.WARNING):
        response = notify(client, yookassa, "payment.succeeded", payment_id, address=address)
    assert_error(response, 403, "forbidden")
    assert scrape(client)[("webhook_events_total", counted)] == before + 1
    assert events(app) == [] and gets(yookassa) == [] and status(client)["status"] == "pending"
    assert balance(client, 42) == 0
    [logged] = [r for r in caplog.records if "outside YOOKASSA_ALLOWED_IPS" in r.getMessage()]
    assert logged.remote_addr == address


def test_behind_our_proxy_the_forwarded_address_counts(make_app, yookassa, payment_id):
    client = make_app(**yookassa_env(yookassa), PROXY_HOPS="1").test_client()
    yookassa.succeed(payment_id)
    spoofed = {"X-Forwarded-For": f"{YOOKASSA_IP}, {OUTSIDE_IP}"}  # nginx appends the real peer last
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id, address="127.0.0.1", headers=spoofed),
                 403)
    forwarded = {"X-Forwarded-For": f"{OUTSIDE_IP}, {YOOKASSA_IP}"}
    response = notify(client, yookassa, "payment.succeeded", payment_id, address="127.0.0.1", headers=forwarded)
    assert response.get_json()["outcome"] == "processed"


def test_without_a_proxy_a_forwarded_header_is_ignored(client, yookassa, payment_id):
    headers = {"X-Forwarded-For": YOOKASSA_IP}
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id, address=OUTSIDE_IP, headers=headers),
                 403)


def test_configured_addresses_replace_the_published_ones(make_app, yookassa, payment_id):
    client = make_app(**yookassa_env(yookassa), YOOKASSA_ALLOWED_IPS=f"{OUTSIDE_IP}/32").test_client()
    yookassa.succeed(payment_id)
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id), 403)
    assert notify(client, yookassa, "payment.succeeded", payment_id, address=OUTSIDE_IP).status_code == 200


# --- the API down, refusing, or the body malformed -----------------------------------------------------------

def test_api_down_is_503_and_the_redelivery_settles(client, app, yookassa, payment_id):
    yookassa.succeed(payment_id)
    yookassa.down()
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id), 503, "provider_unavailable")
    assert events(app) == [] and status(client)["status"] == "pending"
    yookassa.up()
    assert notify(client, yookassa, "payment.succeeded", payment_id).get_json()["outcome"] == "processed"


@pytest.mark.parametrize("status_code, answer, code", [
    (500, 503, "provider_unavailable"), (429, 503, "provider_unavailable"),
    (401, 503, "not_configured"), (404, 502, "provider_error"),
])
def test_api_errors_are_answered_so_yookassa_redelivers(client, app, yookassa, payment_id, status_code, answer,
                                                         code):
    yookassa.succeed(payment_id)
    yookassa.error_next(status_code, path=f"/payments/{payment_id}")
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id), answer, code)
    assert events(app) == [] and status(client)["status"] == "pending"


def test_unreadable_answer_of_the_api_is_502_not_400(client, app, yookassa, payment_id):
    with yookassa._lock:
        yookassa.payments[payment_id]["status"] = None
    assert_error(notify(client, yookassa, "payment.succeeded", payment_id), 502, "provider_error")
    assert events(app) == []


def test_wrong_credentials_are_never_echoed_or_logged(make_app, yookassa, payment_id, caplog):
    client = make_app(**yookassa_env(yookassa, YOOKASSA_SECRET_KEY="live_wrong-secret-value")).test_client()
    with caplog.at_level(logging.DEBUG):
        response = notify(client, yookassa, "payment.succeeded", payment_id)
    error = assert_error(response, 503, "not_configured")
    assert "YOOKASSA_SECRET_KEY" in error["message"]
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "wrong-secret-value" not in logged + response.get_data(as_text=True) and "Basic " not in logged


def test_other_events_are_stored_without_a_lookup(client, app, yookassa):
    body = {"type": "notification", "event": "payout.succeeded", "object": {"id": "po-1", "status": "succeeded"}}
    response = notify(client, yookassa, "payout.succeeded", body=body)
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert gets(yookassa) == [] and events(app)[0].event_type == "payout.succeeded"


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"type": "notification"}',
                                 b'{"type":"notification","event":"payment.succeeded","object":{"id":"../x"}}'])
def test_malformed_notification_is_400(client, app, yookassa, raw):
    response = client.post(URL, data=raw, content_type="application/json", environ_base={"REMOTE_ADDR": YOOKASSA_IP})
    assert_error(response, 400, "malformed_payload")
    assert events(app) == [] and gets(yookassa) == []


def test_without_credentials_the_webhook_is_503(make_app, yookassa):
    client = make_app().test_client()
    assert_error(notify(client, yookassa, "payment.succeeded", body={"type": "notification"}), 503, "not_configured")


def test_database_down_is_503(make_app, yookassa, payment_id, tmp_path):
    yookassa.succeed(payment_id)
    broken = make_app(**yookassa_env(yookassa), DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.db")
    response = notify(broken.test_client(), yookassa, "payment.succeeded", payment_id)
    assert_error(response, 503, "database_unavailable")


# --- concurrency against a real server -----------------------------------------------------------------------

def test_concurrent_repeats_fulfil_once(app, base_env, yookassa, tmp_path):
    from tests.support.live import LiveServer

    env = {**base_env, **yookassa_env(yookassa), "PROXY_HOPS": "1"}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        order = {"amount": 100, "orderId": "race-y", "provider": "yookassa", "telegramId": 77, "credit": 500}
        created = requests.post(f"{live.url}/api/payment", json=order, headers=AUTH, timeout=30)
        payment_id = created.json()["paymentId"]
        yookassa.succeed(payment_id)
        body = json.dumps(yookassa.notification("payment.succeeded", payment_id)).encode()
        headers = {"Content-Type": "application/json", "X-Forwarded-For": YOOKASSA_IP}
        assert_processed_once(post_concurrently(f"{live.url}{URL}", body, headers, PARALLEL))
        assert requests.get(f"{live.url}/api/balance/77", headers=AUTH, timeout=10).json()["balance"] == 500
    assert_settled_once(app)
    assert len([r for r in yookassa.requests if r.method == "POST"]) == 1

