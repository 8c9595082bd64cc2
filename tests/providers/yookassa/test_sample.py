"""The yookassa sample notification: it only makes the gateway look, so it pays nothing YooKassa has not."""

from __future__ import annotations

import pytest

from services.orders import find_order
from services.samples import SampleOrder, sample_request
from tests.helpers import status
from tests.support.yookassa import YOOKASSA_IP, create_payment, yookassa_env


@pytest.fixture
def app(make_app, yookassa):
    return make_app(**yookassa_env(yookassa))


def sample_for(app, clock, order_id: str = "order-1"):
    with app.app_context():
        row = find_order(order_id)
        order = SampleOrder(row.order_id, row.amount, row.currency, row.provider_ref)
        return sample_request("yookassa", order, app.config["SETTINGS"], clock.now)


def test_sample_settles_only_what_yookassa_says(app, client, yookassa, clock):
    payment_id = create_payment(client).get_json()["paymentId"]
    sample = sample_for(app, clock)

    def deliver():
        return client.post(sample.path, data=sample.body, headers=sample.headers,
                           environ_base={"REMOTE_ADDR": YOOKASSA_IP})

    assert deliver().get_json()["outcome"] == "ignored" and status(client)["status"] == "pending"
    yookassa.succeed(payment_id)
    assert deliver().get_json()["outcome"] == "processed" and status(client)["status"] == "paid"


def test_sample_prints_a_curl_command(app, client):
    create_payment(client)
    result = app.test_cli_runner().invoke(args=["webhooks", "sample", "--provider", "yookassa", "--order", "order-1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("curl -sS -X POST https://pay.example.test/webhook/yookassa ")
    assert '"event":"payment.succeeded"' in result.output


def test_sample_needs_a_created_payment(app):
    result = app.test_cli_runner().invoke(args=["webhooks", "sample", "--provider", "yookassa", "--order", "x-1",
                                                "--amount", "5", "--currency", "RUB"])
    assert result.exit_code != 0 and "has no YooKassa payment" in result.output
