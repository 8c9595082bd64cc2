"""Telegram Mini App init data (PROTOCOLS.md §10): who the buyer is, proven by Telegram.

`verify` is a pure function of the raw init data, the keys it may be signed with and the time:
our own bot's init data carries an HMAC keyed with TELEGRAM_BOT_TOKEN; a bot of MINIAPP_BOT_IDS,
whose token we do not hold, is checked by Telegram's Ed25519 signature instead.
https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.errors import GatewayError
from services.schemas import MAX_TELEGRAM_ID

# Telegram's production key for third-party validation (the test environment's bots are not sold through).
TELEGRAM_PUBLIC_KEY = Ed25519PublicKey.from_public_bytes(
    bytes.fromhex("e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d"))
# A phone's clock may run a little ahead of ours; more than this is not a clock, it is a forgery or a bug.
CLOCK_SKEW = timedelta(seconds=60)
# An Ed25519 signature is 64 bytes: 86 characters of unpadded base64url, nothing else.
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{86}")
# Unix seconds, at most 11 digits: datetime cannot hold years past 9999.
_UNIX_SECONDS = re.compile(r"[0-9]{1,11}")
# Telegram sends about ten fields; a thousand would only be someone making us parse.
MAX_FIELDS = 32


class InitDataInvalid(GatewayError):
    """Missing, malformed, forged or stale init data: the caller is not a buyer we can name."""

    status = 401
    code = "invalid_init_data"


@dataclass(frozen=True)
class Buyer:
    """The Telegram user the init data vouches for."""

    telegram_id: int
    auth_date: datetime
    # The MINIAPP_BOT_IDS bot whose Ed25519 signature matched; None when our own bot's hash did.
    bot_id: int | None


def verify(raw: str, bot_token: str, bot_ids: tuple[int, ...], max_age: int, now: datetime) -> Buyer:
    """The buyer named by `raw` (Telegram.WebApp.initData); InitDataInvalid unless it is signed and fresh."""
    fields = _fields(raw)
    if bot_token and _hash_matches(fields, bot_token):
        bot_id = None
    else:
        bot_id = next((candidate for candidate in bot_ids if _signed_by_telegram(fields, candidate)), None)
        if bot_id is None:
            raise InitDataInvalid("The init data's hash or signature does not match: reopen the Mini App.")
    auth_date = _auth_date(fields)
    if now - auth_date > timedelta(seconds=max_age):
        raise InitDataInvalid(f"The init data is older than {max_age} seconds: reopen the Mini App.")
    if auth_date - now > CLOCK_SKEW:
        raise InitDataInvalid("The init data's auth_date is in the future.")
    return Buyer(telegram_id=_user_id(fields), auth_date=auth_date, bot_id=bot_id)


def _fields(raw: str) -> dict[str, str]:
    """The URL-decoded fields; a repeated field is refused, as the hashed and the used value could differ."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True, errors="strict",
                          max_num_fields=MAX_FIELDS)
    except ValueError:  # also UnicodeDecodeError: percent-encoded bytes that are not UTF-8
        raise InitDataInvalid("The init data is not a query string.") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataInvalid("The init data repeats a field.")
    return fields


def _check_string(fields: dict[str, str], excluded: frozenset[str]) -> str:
    """The signed text: `key=value` lines sorted by key, without the excluded keys."""
    return "\n".join(f"{key}={value}" for key, value in sorted(fields.items()) if key not in excluded)


def _secret_key(bot_token: str) -> bytes:
    return hmac.digest(b"WebAppData", bot_token.encode(), hashlib.sha256)


def _hash_matches(fields: dict[str, str], bot_token: str) -> bool:
    # `signature`, when present, is hashed like any other field; only `hash` itself is left out.
    expected = hmac.digest(_secret_key(bot_token), _check_string(fields, frozenset({"hash"})).encode(),
                           hashlib.sha256).hex()
    return hmac.compare_digest(expected.encode(), fields.get("hash", "").encode())


def _signed_by_telegram(fields: dict[str, str], bot_id: int) -> bool:
    signature = fields.get("signature", "")
    if not _SIGNATURE.fullmatch(signature):
        return False
    message = f"{bot_id}:WebAppData\n" + _check_string(fields, frozenset({"hash", "signature"}))
    try:
        TELEGRAM_PUBLIC_KEY.verify(base64.urlsafe_b64decode(signature + "=="), message.encode())
    except InvalidSignature:
        return False
    return True


def _auth_date(fields: dict[str, str]) -> datetime:
    value = fields.get("auth_date", "")
    if not _UNIX_SECONDS.fullmatch(value):
        raise InitDataInvalid("The init data has no valid auth_date.")
    return datetime.fromtimestamp(int(value), timezone.utc)


def _user_id(fields: dict[str, str]) -> int:
    try:
        user = json.loads(fields.get("user", ""))
    except ValueError:
        user = None
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id <= MAX_TELEGRAM_ID:
        raise InitDataInvalid("The init data names no Telegram user.")
    return user_id
