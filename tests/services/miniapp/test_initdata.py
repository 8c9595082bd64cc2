"""Init data verification: every PROTOCOLS.md §10 vector, tampered copies, age, other bots; init-data-py as oracle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

import init_data_py
import pytest

from services.miniapp.initdata import CLOCK_SKEW, InitDataInvalid, verify
from tests.services.miniapp.vectors import (ED25519_VECTORS, HMAC_VECTORS, OURS, TELEGRAM_BOT_ID, TELEGRAM_BOT_TOKEN,
                                            TELEGRAM_SIGNED, Vector)
from tests.support.miniapp import BOT_TOKEN, sign_init_data

DAY = 86400
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def at(vector: Vector, seconds_later: float = 60) -> datetime:
    return datetime.fromtimestamp(vector.auth_date, timezone.utc) + timedelta(seconds=seconds_later)


def by_hash(raw: str, token: str, now: datetime, max_age: int = DAY):
    return verify(raw, token, (), max_age, now)


def by_signature(raw: str, now: datetime, bot_ids: tuple[int, ...] = (TELEGRAM_BOT_ID,)):
    return verify(raw, "", bot_ids, DAY, now)


def fields_of(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def changed(value: str) -> str:
    """One character of the value replaced by another of the same alphabet (hex, base64url, digits, JSON)."""
    middle = len(value) // 2
    return value[:middle] + ("B" if value[middle] == "A" else "A" if value[middle].isalpha() else
                             "1" if value[middle] == "2" else "2") + value[middle + 1:]


def tampered(raw: str, key: str) -> str:
    return urlencode([(name, changed(value) if name == key else value) for name, value in fields_of(raw)])


def without(raw: str, key: str) -> str:
    return urlencode([(name, value) for name, value in fields_of(raw) if name != key])


def each_field(vectors, skip: frozenset[str] = frozenset()):
    return [pytest.param(vector, key, id=f"{vector.name}-{key}")
            for vector in vectors for key, _ in fields_of(vector.raw) if key not in skip]


@pytest.mark.parametrize("vector", HMAC_VECTORS, ids=lambda v: v.name)
def test_hash_vector_names_the_buyer(vector):
    buyer = by_hash(vector.raw, vector.bot_token, at(vector))
    assert (buyer.telegram_id, buyer.bot_id) == (vector.telegram_id, None)
    assert buyer.auth_date == datetime.fromtimestamp(vector.auth_date, timezone.utc)


@pytest.mark.parametrize("vector", ED25519_VECTORS, ids=lambda v: v.name)
def test_signature_vector_names_the_buyer_without_a_token(vector):
    buyer = by_signature(vector.raw, at(vector))
    assert (buyer.telegram_id, buyer.bot_id) == (vector.telegram_id, TELEGRAM_BOT_ID)


@pytest.mark.parametrize("vector", HMAC_VECTORS + ED25519_VECTORS, ids=lambda v: v.name)
def test_reencoded_vector_still_verifies(vector):
    # The tampering below re-encodes the query string; unchanged fields must survive that.
    raw = urlencode(fields_of(vector.raw))
    assert verify(raw, vector.bot_token, (TELEGRAM_BOT_ID,), DAY, at(vector)).telegram_id == vector.telegram_id


@pytest.mark.parametrize("vector, key", each_field(HMAC_VECTORS))
def test_hash_rejects_a_changed_field(vector, key):
    with pytest.raises(InitDataInvalid):
        by_hash(tampered(vector.raw, key), vector.bot_token, at(vector))


@pytest.mark.parametrize("vector, key", each_field(HMAC_VECTORS))
def test_hash_rejects_a_removed_field(vector, key):
    with pytest.raises(InitDataInvalid):
        by_hash(without(vector.raw, key), vector.bot_token, at(vector))


@pytest.mark.parametrize("vector, key", each_field(ED25519_VECTORS, skip=frozenset({"hash"})))
def test_signature_rejects_a_changed_field(vector, key):
    with pytest.raises(InitDataInvalid):
        by_signature(tampered(vector.raw, key), at(vector))


@pytest.mark.parametrize("vector, key", each_field(ED25519_VECTORS, skip=frozenset({"hash"})))
def test_signature_rejects_a_removed_field(vector, key):
    with pytest.raises(InitDataInvalid):
        by_signature(without(vector.raw, key), at(vector))


@pytest.mark.parametrize("vector", ED25519_VECTORS, ids=lambda v: v.name)
def test_signature_does_not_cover_the_hash(vector):
    # Telegram signs every field but hash and signature: a third party cannot check the hash anyway.
    assert by_signature(tampered(vector.raw, "hash"), at(vector)).telegram_id == vector.telegram_id


def test_signature_is_part_of_the_hash():
    # Telegram hashes the signature field too (PROTOCOLS.md §10): leaving it out of the check string fails.
    with pytest.raises(InitDataInvalid):
        by_hash(without(TELEGRAM_SIGNED.raw, "signature"), TELEGRAM_BOT_TOKEN, at(TELEGRAM_SIGNED))


@pytest.mark.parametrize("token", [BOT_TOKEN, TELEGRAM_BOT_TOKEN.replace("AAHI", "AAHJ"), ""])
def test_init_data_of_another_bot_is_rejected(token):
    with pytest.raises(InitDataInvalid):
        by_hash(OURS.raw, token, at(OURS))


def test_signature_for_a_bot_not_listed_is_rejected():
    with pytest.raises(InitDataInvalid):
        by_signature(TELEGRAM_SIGNED.raw, at(TELEGRAM_SIGNED), bot_ids=(TELEGRAM_BOT_ID + 1, 1))


def test_listed_bot_is_checked_by_signature_when_our_token_does_not_match():
    buyer = verify(TELEGRAM_SIGNED.raw, BOT_TOKEN, (1, TELEGRAM_BOT_ID), DAY, at(TELEGRAM_SIGNED))
    assert (buyer.telegram_id, buyer.bot_id) == (TELEGRAM_SIGNED.telegram_id, TELEGRAM_BOT_ID)


@pytest.mark.parametrize("vector, token, bot_ids", [
    (OURS, OURS.bot_token, ()), (TELEGRAM_SIGNED, "", (TELEGRAM_BOT_ID,))], ids=["hash", "signature"])
def test_init_data_older_than_the_window_is_rejected(vector, token, bot_ids):
    assert verify(vector.raw, token, bot_ids, 3600, at(vector, 3600)).telegram_id == vector.telegram_id
    with pytest.raises(InitDataInvalid, match="older than 3600 seconds"):
        verify(vector.raw, token, bot_ids, 3600, at(vector, 3601))


@pytest.mark.parametrize("vector", [OURS, TELEGRAM_SIGNED], ids=lambda v: v.name)
def test_auth_date_in_the_future_is_rejected_beyond_the_skew(vector):
    skew = CLOCK_SKEW.total_seconds()
    assert verify(vector.raw, vector.bot_token, (), DAY, at(vector, -skew)).telegram_id == vector.telegram_id
    with pytest.raises(InitDataInvalid, match="future"):
        verify(vector.raw, vector.bot_token, (), DAY, at(vector, -skew - 1))


def signed(**overrides) -> str:
    arguments = {"auth_date": int(NOW.timestamp()), "user": {"id": 4242, "first_name": "Ann"}, **overrides}
    return sign_init_data(BOT_TOKEN, **arguments)


def test_freshly_signed_init_data_names_its_user():
    assert by_hash(signed(), BOT_TOKEN, NOW).telegram_id == 4242


@pytest.mark.parametrize("raw", [
    pytest.param("", id="empty"),
    pytest.param("here comes something wrong;", id="not-a-query-string"),
    pytest.param("user=%ff&hash=00", id="not-utf8"),
    pytest.param(signed() + "&auth_date=1", id="repeated-field"),
    pytest.param(signed() + "&x=1" * 40, id="too-many-fields"),
    pytest.param(without(signed(), "hash"), id="no-hash"),
    pytest.param(signed(auth_date=None), id="no-auth-date"),
    pytest.param(signed(auth_date="soon"), id="auth-date-not-a-number"),
    pytest.param(signed(auth_date=10**12), id="auth-date-beyond-datetime"),
    pytest.param(signed(user=None), id="no-user"),
    pytest.param(signed(user="not json"), id="user-not-json"),
    pytest.param(signed(user={"first_name": "Ann"}), id="user-without-id"),
    pytest.param(signed(user={"id": "4242"}), id="user-id-a-string"),
    pytest.param(signed(user={"id": True}), id="user-id-a-boolean"),
    pytest.param(signed(user={"id": 0}), id="user-id-zero"),
    pytest.param(signed(user={"id": 2**53 + 1}), id="user-id-too-large"),
    pytest.param(signed(user=[4242]), id="user-not-an-object"),
])
def test_malformed_init_data_is_rejected(raw):
    with pytest.raises(InitDataInvalid) as caught:
        by_hash(raw, BOT_TOKEN, NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize("signature", ["", "not base64!", "A" * 86, "A" * 85, "A" * 87 + "=="])
def test_malformed_signature_is_rejected(signature):
    raw = urlencode([(k, signature if k == "signature" else v) for k, v in fields_of(TELEGRAM_SIGNED.raw)])
    with pytest.raises(InitDataInvalid):
        by_signature(raw, at(TELEGRAM_SIGNED))


# init-data-py (requirements-oracle.txt) agrees on every vector and every tampered copy.
@pytest.mark.parametrize("vector, key", each_field(HMAC_VECTORS) + [
    pytest.param(vector, None, id=vector.name) for vector in HMAC_VECTORS])
def test_init_data_py_agrees_on_the_hash(vector, key):
    raw = vector.raw if key is None else tampered(vector.raw, key)
    ours = _accepts(lambda: by_hash(raw, vector.bot_token, at(vector)))
    assert ours is (key is None)
    assert init_data_py.is_valid_by_hash(raw, vector.bot_token, now=at(vector)) is ours


@pytest.mark.parametrize("vector, key", each_field(ED25519_VECTORS, skip=frozenset({"hash"})) + [
    pytest.param(vector, None, id=vector.name) for vector in ED25519_VECTORS])
def test_init_data_py_agrees_on_the_signature(vector, key):
    raw = vector.raw if key is None else tampered(vector.raw, key)
    ours = _accepts(lambda: by_signature(raw, at(vector)))
    assert ours is (key is None)
    assert init_data_py.is_valid_by_signature(raw, TELEGRAM_BOT_ID, now=at(vector)) is ours


def _accepts(check) -> bool:
    try:
        check()
    except InitDataInvalid:
        return False
    return True
