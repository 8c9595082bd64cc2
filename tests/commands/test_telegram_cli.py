"""`flask --app wsgi telegram set-webhook` / `webhook-info` against the fake Bot API."""

from __future__ import annotations

import pytest

SECRET = "tg_webhook_secret_0123456789abcdef-XYZ"


@pytest.fixture
def telegram_env(telegram) -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": telegram.bot_token, "TELEGRAM_API_URL": telegram.api_url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def cli(make_app, telegram_env):
    """Invoke `flask telegram …` on an app built with the Telegram settings plus `overrides`."""
    def invoke(*args: str, **overrides: str):
        return make_app(**{**telegram_env, **overrides}).test_cli_runner().invoke(args=["telegram", *args])
    return invoke


def test_set_webhook_registers_server_url_with_secret_token(cli, telegram):
    result = cli("set-webhook")
    assert result.exit_code == 0, result.output
    assert telegram.webhook == {"url": "https://pay.example.test/webhook/telegram", "secret_token": SECRET,
                                "max_connections": 40, "allowed_updates": ["message", "pre_checkout_query"],
                                "drop_pending_updates": False}
    assert "Webhook set: https://pay.example.test/webhook/telegram" in result.output
    assert "message, pre_checkout_query" in result.output
    assert SECRET not in result.output


def test_set_webhook_takes_url_and_drops_pending_updates(cli, telegram):
    result = cli("set-webhook", "--url", "https://gw.example.test/webhook/telegram", "--drop-pending-updates")
    assert result.exit_code == 0, result.output
    assert telegram.webhook["url"] == "https://gw.example.test/webhook/telegram"
    assert telegram.webhook["drop_pending_updates"] is True
    assert "Pending updates were dropped." in result.output


def test_forwarding_asks_for_the_updates_a_bot_reads(cli, telegram):
    assert cli("set-webhook", TELEGRAM_FORWARD_URL="https://bot.example.test/hook").exit_code == 0
    assert {"message", "pre_checkout_query", "callback_query", "inline_query"} <= set(
        telegram.webhook["allowed_updates"])


def test_allowed_updates_are_added_to_the_payment_updates(cli, telegram):
    assert cli("set-webhook", "--allowed-updates", "callback_query, chat_member").exit_code == 0
    assert telegram.webhook["allowed_updates"] == ["message", "pre_checkout_query", "callback_query", "chat_member"]


@pytest.mark.parametrize("missing", ["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"])
def test_set_webhook_names_the_missing_setting(cli, telegram, missing):
    result = cli("set-webhook", **{missing: ""})
    assert result.exit_code == 1 and missing in result.output
    assert telegram.webhook is None


def test_set_webhook_reports_telegram_refusing_a_plain_http_url(cli, telegram):
    result = cli("set-webhook", SERVER_URL="http://127.0.0.1:8080")
    assert result.exit_code == 1 and "HTTPS URL must be provided" in result.output
    assert telegram.bot_token not in result.output and telegram.webhook is None


def test_set_webhook_reports_an_unreachable_api(cli, telegram):
    telegram.down()
    result = cli("set-webhook")
    assert result.exit_code == 1 and "unreachable" in result.output


def test_webhook_info_shows_the_registration(cli):
    cli("set-webhook")
    result = cli("webhook-info")
    assert result.exit_code == 0, result.output
    assert "URL: https://pay.example.test/webhook/telegram" in result.output
    assert "Pending updates: 0" in result.output
    assert "Update types: message, pre_checkout_query" in result.output
