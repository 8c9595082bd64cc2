"""Helpers for the Mini App tests: init data signed like Telegram signs it, and catalogue files."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

BOT_TOKEN = "123456:test-bot-token"

CATALOG_TOML = """
[[products]]
id = "vpn-30"
title = "VPN, 30 days"
description = "All locations, 3 devices"
subscription = { plan = "vpn", days = 30 }
credit = 100
[products.prices]
sbp = "199.00"
telegram = 100
cryptobot = { amount = "2.5", currency = "USDT" }

[[products]]
id = "credits-500"
title = "500 credits"
credit = 500
[products.prices]
sbp = "49.90"
"""


def write_catalog(directory: Path, text: str = CATALOG_TOML, name: str = "catalog.toml") -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def sign_init_data(bot_token: str, auth_date: int | None, user: dict[str, Any] | str | None = None,
                   **extra: str) -> str:
    """Init data as a Telegram client sends it for the bot with this token (HMAC only, no Ed25519 signature).

    `user` is an object (sent as JSON) or the raw text of the field; None leaves a field out.
    """
    fields = {"query_id": "AAHdF6IQAAAAAN0XohDhrOrc", **extra}
    if auth_date is not None:
        fields["auth_date"] = str(auth_date)
    if user is not None:
        fields["user"] = user if isinstance(user, str) else json.dumps(user, separators=(",", ":"),
                                                                          ensure_ascii=False)
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    key = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(key, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def buyer_init_data(telegram_id: int, auth_date: int, bot_token: str = BOT_TOKEN) -> str:
    return sign_init_data(bot_token, auth_date, {"id": telegram_id, "first_name": "Ivan", "language_code": "en"})
