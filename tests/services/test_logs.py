"""Secrets stay out of the logs, even at LOG_LEVEL=debug."""

from __future__ import annotations

import logging

from services.panels import marzban as adapter
from services.panels.marzban import MarzbanPanel
from services.providers.telegram.client import TelegramClient


def test_debug_logging_does_not_reveal_the_bot_token(make_app, telegram, caplog):
    """urllib3 logs each request's path at debug level, and a Bot API path holds the token."""
    app = make_app(LOG_LEVEL="debug", TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url)
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        TelegramClient(app.config["SETTINGS"]).call("getMe")
    assert [r.path for r in telegram.requests] == [f"/bot{telegram.bot_token}/getMe"]
    assert telegram.bot_token not in caplog.text
    assert telegram.bot_token.split(":")[1] not in caplog.text


def test_marzban_login_logs_the_panel_host_without_credentials(make_app, marzban, caplog):
    url = marzban.url.replace("http://", "http://operator:url-password@")
    app = make_app(PANEL_TYPE="marzban", MARZBAN_URL=url, MARZBAN_USERNAME=marzban.username,
                   MARZBAN_PASSWORD=marzban.password)
    caplog.set_level(logging.INFO, logger=adapter.__name__)
    adapter.forget_tokens()
    try:
        MarzbanPanel(app.config["SETTINGS"])._token()
    finally:
        adapter.forget_tokens()
    [login] = [r for r in caplog.records if r.getMessage() == "logged in to Marzban"]
    assert login.panel == "127.0.0.1"
    assert "url-password" not in caplog.text and marzban.password not in caplog.text
