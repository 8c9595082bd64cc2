"""Init data vectors of PROTOCOLS.md §10: each signed by Telegram (or computed), with what it must yield."""

from __future__ import annotations

from typing import NamedTuple


class Vector(NamedTuple):
    name: str
    raw: str
    bot_token: str
    telegram_id: int
    auth_date: int


TELEGRAM_BOT_ID = 7342037359
TELEGRAM_BOT_TOKEN = "7342037359:AAHI25ES9xCOMPokpYoz-p8XVrZUdygo2J4"

# Ours (computed in PROTOCOLS.md): token 123456:TEST-TOKEN.
OURS = Vector(
    "ours",
    "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A111222333%2C%22first_name%22%3A%22Ivan%22%2C%22"
    "last_name%22%3A%22%22%2C%22username%22%3A%22ivan_test%22%2C%22language_code%22%3A%22ru%22%2C%22"
    "allows_write_to_pm%22%3Atrue%7D&auth_date=1735689600"
    "&hash=9a14ce0d42542e9d029d77f7cc5e70d251592b0a9e6a773e85f54dc550f62809",
    "123456:TEST-TOKEN", 111222333, 1735689600)

# Signed by Telegram: the hash with the bot's token AND the Ed25519 signature with the production key.
TELEGRAM_SIGNED = Vector(
    "telegram-signed",
    "user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%20%2B%20-%20%3F%20%5C%2F%22%2C%22"
    "last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22"
    "is_premium%22%3Atrue%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2F"
    "t.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg%22%7D"
    "&chat_instance=8134722200314281151&chat_type=private&auth_date=1733509682"
    "&signature=TYJxVcisqbWjtodPepiJ6ghziUL94-KNpG8Pau-X7oNNLNBM72APCpi_RKiUlBvcqo5L-LAxIc3dnTzcZX_PDg"
    "&hash=a433d8f9847bd6addcc563bff7cc82c89e97ea0d90c11fe5729cae6796a36d73",
    TELEGRAM_BOT_TOKEN, 279058397, 1733509682)

# init-data-golang validate_test.go.
GOLANG = Vector(
    "init-data-golang",
    "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%22%2C%22"
    "last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22"
    "is_premium%22%3Atrue%7D&auth_date=1662771648"
    "&hash=c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2",
    "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8", 279058397, 1662771648)

# init-data-py tests/vectors.py: PLAIN, UTF8 (non-ASCII names), ESCAPED_SLASH (photo_url with \/).
INIT_DATA_PY_PLAIN = Vector(
    "init-data-py-plain",
    "query_id=AAF03wc0AgAAAHTfBzROOCVW&user=%7B%22id%22%3A5167898484%2C%22first_name%22%3A%22xin%22%2C%22"
    "last_name%22%3A%22%22%2C%22username%22%3A%22pvnimaxin%22%2C%22language_code%22%3A%22en%22%2C%22"
    "allows_write_to_pm%22%3Atrue%7D&auth_date=1722938610"
    "&hash=8654c8c617c143abf656f4f159be2539880a56f58c2d9be622f90c0346aa162b",
    "7244657541:AAEgqk0HDC3WD5cdbnGMdd6L0TJ74FDp97Y", 5167898484, 1722938610)
INIT_DATA_PY_UTF8 = Vector(
    "init-data-py-utf8",
    "query_id=AAF2GVE4AwAAAHYZUTgHczdc&user=%7B%22id%22%3A7387289974%2C%22first_name%22%3A%22"
    "%D0%90%D1%80%D1%82%D1%91%D0%BC%22%2C%22last_name%22%3A%22%D0%9E%D0%BD%D1%83%D1%84%D1%80%D0%B8%D0%B9%22"
    "%2C%22username%22%3A%22typexin%22%2C%22language_code%22%3A%22en%22%2C%22allows_write_to_pm%22%3Atrue%7D"
    "&auth_date=1724048856&hash=53b22bc70a748dae613a5aa91890b387b9cc0356c5dcffca173816b6e40a17e5",
    "7244657541:AAHAJP25XehV6N02kiLLAEi2el-xLsSw29w", 7387289974, 1724048856)
INIT_DATA_PY_ESCAPED_SLASH = Vector(
    "init-data-py-escaped-slash",
    "query_id=AAF03wc0AgAAAHTfBzTtHPDB&user=%7B%22id%22%3A5167898484%2C%22first_name%22%3A%22xin%22%2C%22"
    "last_name%22%3A%22%22%2C%22username%22%3A%22pvnimaxin%22%2C%22language_code%22%3A%22en%22%2C%22"
    "allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2Ft.me%5C%2Fi%5C%2Fuserpic%5C%2F"
    "320%5C%2FYpcdHFmoxukmQ537mOZhe-Woot_k2xrmbdAIrGK1zFgIVth6Wzacz7P2nGNCcp9j.svg%22%7D"
    "&auth_date=1731441609&hash=f4bac82fe8f20abdc03126af489751752e830227b58241ec2f9dd67913909ee0",
    "7244657541:AAFMjYH4kc3U9zG0GWnxYfW-QKICVzDwvEw", 5167898484, 1731441609)

# init-data-golang validate_third_party_test.go: Ed25519 only (its hash is for another token of the bot).
GOLANG_THIRD_PARTY = Vector(
    "init-data-golang-third-party",
    "user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%20%2B%20-%20%3F%20%5C%2F%22%2C%22"
    "last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22"
    "is_premium%22%3Atrue%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2F"
    "t.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg%22%7D"
    "&chat_instance=8134722200314281151&chat_type=private&auth_date=1733584787"
    "&hash=2174df5b000556d044f3f020384e879c8efcab55ddea2ced4eb752e93e7080d6"
    "&signature=zL-ucjNyREiHDE8aihFwpfR9aggP2xiAo3NSpfe-p7IbCisNlDKlo7Kb6G4D0Ao2mBrSgEk4maLSdv6MLIlADQ",
    "", 279058397, 1733584787)

HMAC_VECTORS = (OURS, TELEGRAM_SIGNED, GOLANG, INIT_DATA_PY_PLAIN, INIT_DATA_PY_UTF8, INIT_DATA_PY_ESCAPED_SLASH)
ED25519_VECTORS = (TELEGRAM_SIGNED, GOLANG_THIRD_PARTY)
