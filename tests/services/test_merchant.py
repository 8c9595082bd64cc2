"""Merchant webhooks: Standard Webhooks signatures (PROTOCOLS.md §6), exact bodies, failures retried."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from standardwebhooks.webhooks import Webhook

from services import outbox
from services.db import transaction
from services.merchant import serialize, signed_headers
from tests.support.worker import attempts, frozen_now, run_worker, wired_env
from tests.support.worker import outbox as outbox_rows

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_vector():
    moment = datetime.fromtimestamp(1614265330, timezone.utc)
    headers = signed_headers(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", moment, '{"test": 2432232314}')
    assert headers == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_serialized_amounts_stay_exact():
    assert serialize({"amount": Decimal("0.10000001"), "text": "№"}) == '{"amount":0.10000001,"text":"№"}'


@pytest.fixture
def app(make_app, merchant):
    app = make_app(**wired_env(merchant))
    frozen_now(app)
    return app


def queue(app, payload, key="merchant:o:paid"):
    with app.app_context(), transaction():
        return outbox.enqueue("merchant", "order.paid", key, payload, app.config["CLOCK"].now)


def test_delivery_is_signed_verifiable_and_byte_exact(app, merchant):
    row_id = queue(app, {"type": "order.paid", "timestamp": 1, "data": {"amount": Decimal("1.50")}})
    run_worker(app, "merchant")
    [delivery] = merchant.deliveries()
    assert delivery.valid and delivery.status == 204 and delivery.msg_id == f"msg_{row_id}"
    assert delivery.body == b'{"type":"order.paid","timestamp":1,"data":{"amount":1.50}}'
    headers = {"webhook-id": delivery.msg_id, "webhook-timestamp": delivery.timestamp,
               "webhook-signature": delivery.signature}
    assert Webhook(SECRET).verify(delivery.body, headers)["data"]["amount"] == 1.5


def test_unreachable_receiver_is_retried(app, merchant):
    queue(app, {"type": "order.paid"})
    merchant.down()
    run_worker(app, "merchant")
    [row] = outbox_rows(app)
    assert row.status == "pending" and "unreachable" in row.last_error
    assert row.next_attempt_at > app.config["CLOCK"].now


@pytest.mark.parametrize("status", [400, 401, 404, 429, 503])
def test_every_non_2xx_answer_is_retried(app, merchant, status):
    queue(app, {"type": "order.paid"})
    merchant.fail_next(1, status=status)
    run_worker(app, "merchant")
    [row] = outbox_rows(app)
    assert row.status == "pending" and row.last_error.endswith(f"HTTP {status}")
    assert [a.status_code for a in attempts(app, row.id)] == [status]


def test_rows_left_when_merchant_webhooks_are_switched_off_wait_for_the_setting(make_app, merchant):
    wired = make_app(**wired_env(merchant))
    queue_clock = frozen_now(wired)
    queue(wired, {"type": "order.paid"})
    app = make_app()
    app.config["CLOCK"] = queue_clock
    run_worker(app, "merchant")
    [row] = outbox_rows(app)
    assert row.status == "pending" and row.last_error.startswith("not configured:")
