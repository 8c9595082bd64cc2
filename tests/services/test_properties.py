"""Property tests (hypothesis): amounts, signature checks and the order state machine hold for any input."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services import orders
from services.db import db
from services.errors import SignatureInvalid
from services.money import CRYPTO_ASSETS, MAX_AMOUNT, STARS, check_amount, normalized, parse_decimal, to_minor_units
from services.providers.bmc import protocol as bmc
from services.providers.cryptobot import protocol as cryptobot
from services.providers.sbp import protocol as tbank
from services.providers.telegram import protocol as telegram
from services.merchant import signed_headers
from tests.helpers import create

# Derandomized, no example database, no deadline: the same cases on every run and machine, never flaky under load.
DETERMINISTIC = settings(derandomize=True, database=None, deadline=None)
PASSWORD = "TinkoffBankTest"
TERMINAL = "TinkoffBankTest"

# Amounts as an integer coefficient and a number of decimal places: every Decimal a JSON body can carry.
amounts = st.builds(lambda coefficient, places: Decimal(coefficient).scaleb(-places),
                    st.integers(min_value=-10**14, max_value=10**14), st.integers(min_value=0, max_value=12))
positive_amounts = amounts.filter(lambda amount: 0 < amount <= MAX_AMOUNT)


def significant_places(amount: Decimal) -> int:
    """Decimal places the value really has: 1.50 has one, 100 has none."""
    return max(0, -normalized(amount).as_tuple().exponent)


# --- amounts -------------------------------------------------------------------------------------------

@DETERMINISTIC
@given(positive_amounts)
@example(Decimal("0.001")).via("a third of a kopeck")
@example(Decimal("1.000")).via("trailing zeros are not extra places")
def test_rub_amount_is_accepted_exactly_when_it_has_at_most_two_places(amount):
    accepted = check_amount(amount, "RUB") is None
    assert accepted == (significant_places(amount) <= 2)
    if accepted:
        assert Decimal(to_minor_units(amount)) / 100 == amount


@DETERMINISTIC
@given(positive_amounts)
def test_stars_are_whole_and_crypto_assets_take_eight_places(amount):
    assert (check_amount(amount, STARS) is None) == (significant_places(amount) == 0)
    for asset in sorted(CRYPTO_ASSETS)[:3]:
        assert (check_amount(amount, asset) is None) == (significant_places(amount) <= 8)


@DETERMINISTIC
@given(amounts)
def test_zero_negative_and_too_large_amounts_are_refused(amount):
    assume(not 0 < amount <= MAX_AMOUNT)
    assert check_amount(amount, "RUB") is not None


@pytest.mark.parametrize("text", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_amounts_are_refused(text):
    assert check_amount(Decimal(text), "RUB") is not None


@DETERMINISTIC
@given(positive_amounts)
def test_normalized_round_trips_without_exponent_or_trailing_zeros(amount):
    text = str(normalized(amount))
    # Below 10**-6 a Decimal's str() is always scientific (5E-7): still exact JSON, reported as a known limit.
    if amount >= Decimal("0.000001"):
        assert "E" not in text and "e" not in text
        assert not ("." in text and text.endswith("0"))
    assert Decimal(text) == amount
    assert normalized(normalized(amount)) == normalized(amount)
    assert str(normalized(Decimal(text))) == text


def _usable(value: Decimal) -> bool:
    """Within the bounds every amount keeps: at most MAX_AMOUNT, at most 8 decimal places."""
    return value.is_finite() and (value.is_zero() or -9 <= value.adjusted() <= 9 and abs(value) <= MAX_AMOUNT
                                  and value == value.quantize(Decimal("1e-8")) and len(str(value)) <= 40)


@DETERMINISTIC
@given(st.one_of(amounts, st.integers(), st.text(), st.booleans(), st.none(), st.floats(allow_nan=True)))
def test_parse_decimal_never_raises_and_keeps_numbers_exact(value):
    parsed = parse_decimal(value)
    if isinstance(value, Decimal) and _usable(value):
        assert parsed == value
    assert parsed is None or not isinstance(value, Decimal) or parsed == value
    assert parsed is None or (abs(parsed) <= MAX_AMOUNT and parsed == parsed.quantize(Decimal("1e-8")))
    if isinstance(value, bool) or value is None:
        assert parsed is None
    assert parsed is None or parsed.is_finite()


# --- T-Bank Token ----------------------------------------------------------------------------------------

scalars = st.one_of(st.text(max_size=20), st.integers(min_value=-10**12, max_value=10**12), st.booleans())
# "Password" is where the Token puts the secret itself: a payload's own Password field is overwritten, not signed.
extra_keys = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Nd"]), min_size=1, max_size=12).filter(
    lambda key: key not in ("Token", "Password"))


@st.composite
def notifications(draw) -> dict:
    payload = {"TerminalKey": TERMINAL, "OrderId": draw(st.text(min_size=1, max_size=36)),
               "Success": draw(st.booleans()), "Status": draw(st.sampled_from(sorted(tbank.STATUS_ACTIONS))),
               "PaymentId": draw(st.integers(min_value=1, max_value=10**12)), "ErrorCode": "0",
               "Amount": draw(st.integers(min_value=1, max_value=10**11))}
    payload.update(draw(st.dictionaries(extra_keys.filter(lambda key: key not in payload), scalars, max_size=4)))
    payload["Token"] = tbank.token(payload, PASSWORD)
    return payload


def signed_view(payload: dict) -> dict[str, str]:
    """What the Token covers: each root scalar, as T-Bank writes it into the string (an empty one adds nothing)."""
    return {key: tbank._token_value(value) for key, value in payload.items()
            if key != "Token" and value is not None and not isinstance(value, (dict, list))
            and tbank._token_value(value) != ""}


@DETERMINISTIC
@given(notifications())
def test_a_signed_notification_verifies(payload):
    tbank.verify_notification(payload, TERMINAL, PASSWORD)
    tbank.verify_notification({**payload, "Token": payload["Token"].upper()}, TERMINAL, PASSWORD)


@DETERMINISTIC
@given(notifications(), st.data())
def test_changing_any_signed_field_is_rejected(payload, data):
    key = data.draw(st.sampled_from(sorted(set(payload) - {"Token"})))
    replacement = data.draw(st.one_of(scalars, st.none(), st.just({"nested": 1}), st.just([1])))
    mutated = {**payload, key: replacement}
    assume(signed_view(mutated) != signed_view(payload))
    with pytest.raises(SignatureInvalid):
        tbank.verify_notification(mutated, TERMINAL, PASSWORD)


@DETERMINISTIC
@given(notifications(), extra_keys, scalars)
def test_adding_a_signed_field_is_rejected(payload, key, value):
    assume(key not in payload and tbank._token_value(value) != "")
    with pytest.raises(SignatureInvalid):
        tbank.verify_notification({**payload, key: value}, TERMINAL, PASSWORD)


@DETERMINISTIC
@given(notifications(), st.text(min_size=1, max_size=20))
def test_another_password_or_terminal_is_rejected(payload, other):
    assume(other != PASSWORD)
    with pytest.raises(SignatureInvalid):
        tbank.verify_notification(payload, TERMINAL, other)
    assume(other != TERMINAL)
    with pytest.raises(SignatureInvalid):
        tbank.verify_notification(payload, other, PASSWORD)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
                           lambda children: st.one_of(st.lists(children, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), children, max_size=3)),
                           max_leaves=10)


@DETERMINISTIC
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["Token", "TerminalKey", "Amount", "OrderId"]),
                                              json_values)))
@example({"Token": "é", "TerminalKey": TERMINAL}).via("a non-ASCII Token")
def test_verify_notification_refuses_any_junk_with_signature_invalid(payload):
    with pytest.raises(SignatureInvalid):
        tbank.verify_notification(payload, TERMINAL, PASSWORD)


# --- HMAC over the raw body (Crypto Pay, Buy Me a Coffee) and Telegram's secret token ----------------------

HMAC_VERIFIERS = [
    pytest.param(cryptobot.signature, cryptobot.verify_signature, id="cryptobot"),
    pytest.param(bmc.signature, bmc.verify_signature, id="bmc"),
]
secrets_ = st.text(min_size=1, max_size=40)


@pytest.mark.parametrize("sign, verify", HMAC_VERIFIERS)
@DETERMINISTIC
@given(body=st.binary(max_size=200), secret=secrets_)
def test_body_signature_verifies_in_any_hex_case(sign, verify, body, secret):
    verify(body, sign(body, secret), secret)
    verify(body, f" {sign(body, secret).upper()} ", secret)


@pytest.mark.parametrize("sign, verify", HMAC_VERIFIERS)
@DETERMINISTIC
@given(body=st.binary(max_size=200), secret=secrets_, data=st.data())
def test_any_change_to_the_body_is_rejected(sign, verify, body, secret, data):
    mutated = data.draw(st.binary(max_size=201).filter(lambda other: other != body))
    with pytest.raises(SignatureInvalid):
        verify(mutated, sign(body, secret), secret)


@pytest.mark.parametrize("sign, verify", HMAC_VERIFIERS)
@DETERMINISTIC
@given(body=st.binary(max_size=100), secret=secrets_, presented=st.one_of(st.none(), st.text(max_size=70)))
def test_a_wrong_or_missing_signature_is_rejected(sign, verify, body, secret, presented):
    assume(presented is None or presented.strip().lower() != sign(body, secret))
    with pytest.raises(SignatureInvalid):
        verify(body, presented, secret)


@DETERMINISTIC
@given(secret=secrets_, presented=st.one_of(st.none(), st.text(max_size=60)))
def test_telegram_accepts_only_its_exact_secret(secret, presented):
    telegram.verify_secret_token(secret, secret)
    assume(presented != secret)
    with pytest.raises(SignatureInvalid):
        telegram.verify_secret_token(presented, secret)


MERCHANT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@DETERMINISTIC
@given(body=st.text(max_size=200), msg_id=st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=20),
       data=st.data())
def test_merchant_webhooks_verify_and_any_change_to_the_body_fails(body, msg_id, data):
    headers = signed_headers(MERCHANT_SECRET, msg_id, datetime.now(timezone.utc), body)
    Webhook(MERCHANT_SECRET).verify(body, headers, json_parse=False)
    mutated = data.draw(st.text(max_size=201).filter(lambda other: other != body))
    with pytest.raises(WebhookVerificationError):
        Webhook(MERCHANT_SECRET).verify(mutated, headers, json_parse=False)


# --- the order state machine -------------------------------------------------------------------------

STATUSES = sorted(orders.TRANSITIONS)
TERMINAL_STATUSES = {status for status, targets in orders.TRANSITIONS.items() if not targets}


def walk(attempts: list[str]) -> list[str]:
    """The statuses an order goes through when each attempted change is applied only if allowed."""
    path = [orders.PENDING]
    for target in attempts:
        if orders.can_transition(path[-1], target):
            path.append(target)
    return path


@DETERMINISTIC
@given(st.lists(st.sampled_from(STATUSES + ["unknown"]), max_size=30))
def test_random_changes_follow_the_transition_table(attempts):
    path = walk(attempts)
    for before, after in itertools.pairwise(path):
        assert before not in TERMINAL_STATUSES
        if after == orders.PAID:
            assert before in (orders.PENDING, orders.EXPIRED)
        if after == orders.REFUNDED:
            assert before == orders.PAID
    assert path.count(orders.PAID) <= 1 and path.count(orders.REFUNDED) <= 1


def test_terminal_states_are_cancelled_failed_and_refunded():
    assert TERMINAL_STATUSES == {orders.CANCELLED, orders.FAILED, orders.REFUNDED}
    assert all(orders.can_transition(status, target) is False for status in ["unknown", *STATUSES]
               for target in ["unknown", orders.PENDING])


_ORDER_NUMBERS = itertools.count()


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=st.lists(st.sampled_from(STATUSES), max_size=8))
def test_change_status_on_a_stored_order_matches_the_table(app, attempts):
    """The real change_status on a stored order ends where the table says, and paid_at is set iff it was paid."""
    order_id = f"prop-{next(_ORDER_NUMBERS)}"
    assert create(app.test_client(), orderId=order_id).status_code == 201
    settings_, now = app.config["SETTINGS"], datetime(2026, 11, 23, tzinfo=timezone.utc)
    with app.app_context():
        order = orders.find_order(order_id, lock=True)
        changed = [orders.change_status(order, target, settings_, now) for target in attempts]
        db.session.commit()
        stored = orders.get_order(order_id)
        path = walk(attempts)
        assert stored.status == path[-1]
        assert sum(changed) == len(path) - 1
        assert (stored.paid_at is not None) == (orders.PAID in path)


def test_json_numbers_reach_check_amount_exactly():
    """A JSON body's 0.1 is Decimal("0.1"), never the float 0.1000000000000000055…"""
    amount = json.loads('{"amount": 0.1}', parse_float=Decimal)["amount"]
    assert check_amount(amount, "RUB") is None and to_minor_units(amount) == 10
