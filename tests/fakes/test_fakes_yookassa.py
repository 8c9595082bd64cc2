"""The YooKassa fake speaks API v3 as PROTOCOLS.md §7 describes it."""

from __future__ import annotations

import uuid

import pytest
import requests

PAYMENT = {"amount": {"value": "100.00", "currency": "RUB"}, "capture": True,
           "confirmation": {"type": "redirect", "return_url": "https://shop.example/return"},
           "description": "VPN 30 days", "metadata": {"order_id": "42"}, "payment_method_data": {"type": "sbp"}}


def _post(yookassa, what, body, key=None, auth=None):
    return requests.post(f"{yookassa.api_url}/{what}", json=body, auth=auth or yookassa.auth, timeout=5,
                         headers={"Idempotence-Key": key or str(uuid.uuid4())})


def _get(yookassa, what):
    return requests.get(f"{yookassa.api_url}/{what}", auth=yookassa.auth, timeout=5)


def _paid(yookassa, value="100.00"):
    payment = _post(yookassa, "payments", {**PAYMENT, "amount": {"value": value, "currency": "RUB"}}).json()
    yookassa.succeed(payment["id"])
    return payment


def test_payment_is_created_pending_with_redirect_and_echoes(yookassa):
    resp = _post(yookassa, "payments", PAYMENT, key="key-1")
    assert resp.status_code == 200
    payment = resp.json()
    assert len(payment["id"]) == 36 and payment["status"] == "pending" and payment["paid"] is False
    assert payment["amount"] == {"value": "100.00", "currency": "RUB"}
    assert payment["description"] == "VPN 30 days" and payment["metadata"] == {"order_id": "42"}
    assert payment["payment_method"]["type"] == "sbp"
    assert payment["confirmation"]["type"] == "redirect"
    assert payment["confirmation"]["confirmation_url"].startswith("https://yoomoney.ru/checkout/")
    assert _get(yookassa, f"payments/{payment['id']}").json() == payment
    recorded = yookassa.requests[0]
    assert recorded.headers["idempotence-key"] == "key-1"
    assert recorded.headers["authorization"].startswith("Basic ") and recorded.json == PAYMENT
    assert yookassa.payments_created == 1


def test_qr_confirmation_carries_data_to_render(yookassa):
    confirmation = _post(yookassa, "payments", {**PAYMENT, "confirmation": {"type": "qr"}}).json()["confirmation"]
    assert confirmation["confirmation_data"].startswith("https://qr.nspk.ru/")


def test_same_key_same_body_replays_the_first_payment(yookassa):
    first = _post(yookassa, "payments", PAYMENT, key="k").json()
    yookassa.succeed(first["id"])
    again = _post(yookassa, "payments", PAYMENT, key="k").json()
    assert again == first and again["status"] == "pending"
    assert yookassa.payments_created == 1
    assert _post(yookassa, "payments", PAYMENT, key="other").json()["id"] != first["id"]
    assert yookassa.payments_created == 2


def test_same_key_different_body_is_rejected(yookassa):
    _post(yookassa, "payments", PAYMENT, key="k")
    resp = _post(yookassa, "payments", {**PAYMENT, "description": "changed"}, key="k")
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["code"] == "invalid_request"
    assert error["description"] == "Idempotence key duplicated" and error["parameter"] == "Idempotence-Key"
    assert yookassa.payments_created == 1


@pytest.mark.parametrize("headers", [{}, {"Idempotence-Key": "x" * 65}])
def test_idempotence_key_is_required_and_bounded(yookassa, headers):
    resp = requests.post(f"{yookassa.api_url}/payments", json=PAYMENT, auth=yookassa.auth, headers=headers,
                         timeout=5)
    assert resp.status_code == 400 and resp.json()["parameter"] == "Idempotence-Key"


@pytest.mark.parametrize("auth", [("123456", "wrong"), ("999", "test_secret_key"), None])
def test_bad_credentials_answer_401(yookassa, auth):
    resp = requests.get(f"{yookassa.api_url}/payments/x", auth=auth, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["code"] == "invalid_credentials" and resp.json()["type"] == "error"


@pytest.mark.parametrize(("change", "parameter"), [
    ({"amount": {"value": 100, "currency": "RUB"}}, "amount.value"),
    ({"amount": {"value": "100.001", "currency": "RUB"}}, "amount.value"),
    ({"amount": {"value": "0.00", "currency": "RUB"}}, "amount.value"),
    ({"amount": {"value": "1.00", "currency": "rub"}}, "amount.currency"),
    ({"amount": None}, "amount"),
    ({"description": "x" * 129}, "description"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"order_id": 42}}, "metadata"),
    ({"confirmation": {"type": "redirect"}}, "confirmation.return_url"),
    ({"confirmation": {"type": "popup"}}, "confirmation.type"),
])
def test_payment_validation(yookassa, change, parameter):
    resp = _post(yookassa, "payments", {**PAYMENT, **change})
    assert resp.status_code == 400 and resp.json()["parameter"] == parameter
    assert yookassa.payments_created == 0


def test_wrong_method_and_content_type_carry_no_code(yookassa):
    assert requests.delete(f"{yookassa.api_url}/payments", auth=yookassa.auth, timeout=5).status_code == 405
    resp = requests.post(f"{yookassa.api_url}/payments", data="amount=1", auth=yookassa.auth, timeout=5,
                         headers={"Idempotence-Key": "k", "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415 and resp.content == b""


def test_unknown_payment_is_404(yookassa):
    resp = _get(yookassa, "payments/2d8f0e8d-000f-5000-8000-18db351245c7")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"


def test_succeed_and_cancel(yookassa):
    paid = yookassa.succeed(_post(yookassa, "payments", PAYMENT).json()["id"])
    assert paid["status"] == "succeeded" and paid["paid"] is True and paid["refundable"] is True
    assert paid["income_amount"] == {"value": "96.50", "currency": "RUB"} and paid["captured_at"]
    pending = _post(yookassa, "payments", PAYMENT).json()
    yookassa.cancel(pending["id"], party="payment_network", reason="payment_expired")
    canceled = _get(yookassa, f"payments/{pending['id']}").json()
    assert canceled["status"] == "canceled"
    assert canceled["cancellation_details"] == {"party": "payment_network", "reason": "payment_expired"}
    with pytest.raises(ValueError):
        yookassa.succeed(pending["id"])


def test_partial_then_full_refund(yookassa):
    payment = _paid(yookassa)
    refund = {"payment_id": payment["id"], "amount": {"value": "30.00", "currency": "RUB"}}
    first = _post(yookassa, "refunds", refund, key="r1").json()
    assert first["status"] == "succeeded" and first["payment_id"] == payment["id"]
    assert _post(yookassa, "refunds", refund, key="r1").json() == first
    assert _get(yookassa, f"refunds/{first['id']}").json() == first
    assert yookassa.payment(payment["id"])["refunded_amount"]["value"] == "30.00"
    too_much = _post(yookassa, "refunds", {**refund, "amount": {"value": "70.01", "currency": "RUB"}})
    assert too_much.status_code == 400 and too_much.json()["parameter"] == "amount.value"
    _post(yookassa, "refunds", {**refund, "amount": {"value": "70.00", "currency": "RUB"}})
    assert yookassa.payment(payment["id"])["refunded_amount"]["value"] == "100.00"
    assert yookassa.payment(payment["id"])["refundable"] is False
    assert yookassa.refunds_created == 2


def test_pending_refund_settles_later(yookassa):
    payment = _paid(yookassa)
    yookassa.refund_status = "pending"
    body = {"payment_id": payment["id"], "amount": {"value": "100.00", "currency": "RUB"}}
    refund = _post(yookassa, "refunds", body).json()
    assert refund["status"] == "pending"
    assert yookassa.payment(payment["id"])["refunded_amount"]["value"] == "0.00"
    assert _post(yookassa, "refunds", body).status_code == 400
    yookassa.set_refund_status(refund["id"], "canceled")
    assert _get(yookassa, f"refunds/{refund['id']}").json()["cancellation_details"]["party"] == "yoo_money"
    second = _post(yookassa, "refunds", body).json()
    yookassa.set_refund_status(second["id"], "succeeded")
    assert yookassa.payment(payment["id"])["refunded_amount"]["value"] == "100.00"


@pytest.mark.parametrize("payment_id", ["missing", "pending"])
def test_refund_needs_a_succeeded_payment(yookassa, payment_id):
    if payment_id == "pending":
        payment_id = _post(yookassa, "payments", PAYMENT).json()["id"]
    resp = _post(yookassa, "refunds", {"payment_id": payment_id, "amount": {"value": "1.00", "currency": "RUB"}})
    assert resp.status_code == 400 and resp.json()["parameter"] == "payment_id"


def test_notification_bodies_and_sender(yookassa, sink):
    payment = _paid(yookassa)
    note = yookassa.notification("payment.succeeded", payment["id"])
    assert note["type"] == "notification" and note["event"] == "payment.succeeded"
    assert note["object"]["status"] == "succeeded" and note["object"]["metadata"] == {"order_id": "42"}
    refund = _post(yookassa, "refunds", {"payment_id": payment["id"],
                                         "amount": {"value": "5.00", "currency": "RUB"}}).json()
    assert yookassa.notification("refund.succeeded", refund["id"])["object"]["id"] == refund["id"]
    resp = yookassa.send_notification(f"{sink.url}/webhook/yookassa", "payment.succeeded", payment["id"],
                                      headers={"X-Forwarded-For": "185.71.76.1"})
    assert resp.status_code == 200
    received = sink.wait_for()[0]
    assert received.json == yookassa.notification("payment.succeeded", payment["id"])
    assert received.json["object"]["refunded_amount"]["value"] == "5.00"
    assert "authorization" not in received.headers


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (401, "invalid_credentials"),
                                              (403, "forbidden"), (404, "not_found"),
                                              (429, "too_many_requests"), (500, "internal_server_error")])
def test_injected_errors_use_yookassa_bodies(yookassa, status, code):
    yookassa.error_next(status, path="/payments", parameter="amount" if status == 400 else None)
    resp = _post(yookassa, "payments", PAYMENT, key="k")
    assert resp.status_code == status
    assert resp.json()["type"] == "error" and resp.json()["code"] == code and resp.json()["id"]
    assert yookassa.payments_created == 0
    assert _post(yookassa, "payments", PAYMENT, key="k").status_code == 200


def test_default_failure_is_500_and_retry_with_same_key_creates_once(yookassa):
    yookassa.fail_next()
    failed = _post(yookassa, "payments", PAYMENT, key="k")
    assert failed.status_code == 500 and failed.json()["code"] == "internal_server_error"
    ids = {_post(yookassa, "payments", PAYMENT, key="k").json()["id"] for _ in range(2)}
    assert len(ids) == 1 and yookassa.payments_created == 1


def test_slow_and_down(yookassa):
    yookassa.delay_seconds = 5
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{yookassa.api_url}/payments", json=PAYMENT, auth=yookassa.auth, timeout=(5, 0.2),
                      headers={"Idempotence-Key": "slow"})
    # The payment exists though the client never saw it: the retry with the same key must find it.
    yookassa.delay_seconds = 0
    assert _post(yookassa, "payments", PAYMENT, key="slow").json()["status"] == "pending"
    assert yookassa.payments_created == 1
    yookassa.down()
    with pytest.raises(requests.ConnectionError):
        _get(yookassa, "payments/x")
    yookassa.up()
    assert _get(yookassa, "payments/x").status_code == 404
