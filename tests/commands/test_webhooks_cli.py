"""`webhooks sample`: signed sample deliveries that the gateway itself accepts, for every provider."""

from __future__ import annotations

import pytest

from services.samples import SampleOrder, sample_request
from tests.conftest import AUTH
from tests.helpers import balance, create, status
from tests.support.live import LiveServer

SECRETS = {"TBANK_TERMINAL_KEY": "TinkoffBankTest", "TBANK_PASSWORD": "TinkoffBankTest",
           "TELEGRAM_WEBHOOK_SECRET": "tg-secret_0123456789", "BMC_WEBHOOK_SECRET": "bmc_test_secret",
           "BMC_PAGE_URL": "https://buymeacoffee.com/shop"}


@pytest.fixture
def sample_app(make_app, tbank, cryptopay, telegram, clock):
    app = make_app(**SECRETS, SBP_GATEWAY="tbank", TBANK_API_URL=tbank.api_url, CRYPTOBOT_TOKEN=cryptopay.token,
                   CRYPTOBOT_API_URL=cryptopay.api_url, TELEGRAM_BOT_TOKEN=telegram.bot_token,
                   TELEGRAM_API_URL=telegram.api_url)
    app.config["CLOCK"] = clock
    return app


@pytest.mark.parametrize("provider, order", [
    ("tbank", {"provider": "sbp", "amount": 150}),
    ("cryptobot", {"provider": "cryptobot", "amount": "1.5", "currency": "USDT"}),
    ("cryptobot", {"provider": "cryptobot", "amount": "10", "currency": "EUR"}),
    ("telegram", {"provider": "telegram", "amount": 50, "currency": "XTR"}),
    ("bmc", {"provider": "bmc", "amount": 5}),
])
def test_sample_delivery_pays_the_order(sample_app, clock, provider, order):
    client = sample_app.test_client()
    assert create(client, telegramId=9, credit=3, **order).status_code == 201
    with sample_app.app_context():
        from services.orders import find_order
        row = find_order("order-1")
        sample = sample_request(provider, SampleOrder(row.order_id, row.amount, row.currency, row.provider_ref),
                                sample_app.config["SETTINGS"], clock.now)
    response = client.post(sample.path, data=sample.body, headers=sample.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert status(client)["status"] == "paid"
    assert balance(client, 9) == 3


def test_sample_prints_a_curl_command(sample_app):
    result = sample_app.test_cli_runner().invoke(args=["webhooks", "sample", "--provider", "bmc", "--order", "x-1",
                                                       "--amount", "5", "--currency", "USD"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("curl -sS -X POST https://pay.example.test/bmc-webhook ")
    assert "X-Signature-Sha256: " in result.output and "x-1 thanks!" in result.output


def test_sample_without_secret_names_the_variable(make_app):
    result = make_app().test_cli_runner().invoke(args=["webhooks", "sample", "--provider", "cryptobot", "--order",
                                                       "x-1", "--amount", "1", "--currency", "TON"])
    assert result.exit_code != 0 and "CRYPTOBOT_TOKEN" in result.output


def test_sample_sent_to_a_running_gateway(base_env, make_app, tmp_path):
    env = {**base_env, "BMC_WEBHOOK_SECRET": SECRETS["BMC_WEBHOOK_SECRET"], "BMC_PAGE_URL": SECRETS["BMC_PAGE_URL"]}
    app = make_app(**{k: v for k, v in env.items() if k not in base_env})
    with LiveServer(env, workers=1, log_path=tmp_path / "gunicorn.log") as live:
        import requests
        requests.post(f"{live.url}/api/payment", json={"amount": 5, "orderId": "live-1", "provider": "bmc"},
                      headers=AUTH, timeout=10).raise_for_status()
        result = app.test_cli_runner().invoke(args=["webhooks", "sample", "--provider", "bmc", "--order", "live-1",
                                                    "--send", live.url])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("200 ")
        paid = requests.get(f"{live.url}/api/status/live-1", headers=AUTH, timeout=10).json()
        assert paid["status"] == "paid"
