"""Buy Me a Coffee: signature vector, both event formats with their type quirks, orderIds in messages."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest

from services.errors import MalformedPayload, NotConfigured, SignatureInvalid
from services.notices import IGNORE, PAID, REFUNDED
from services.providers.bmc import protocol as bmc

# PROTOCOLS.md §3 vector, exact bytes.
SECRET = "bmc_test_secret_0123456789abcdef0123456789"
VECTOR_BODY = (
    b'{"type":"donation.created","live_mode":false,"attempt":1,"created":1763892000,"event_id":77,"data":'
    b'{"id":58,"amount":5,"object":"payment","status":"succeeded","message":"order-43 thanks!","currency":"USD",'
    b'"refunded":"false","created_at":1763892000,"note_hidden":"true","refunded_at":null,'
    b'"support_note":"order-43 thanks!","support_type":"Supporter","supporter_name":"John",'
    b'"supporter_name_type":"default","transaction_id":"pi_3Mc51bJEtINljGAa0zVykgUE","application_fee":"0.25",'
    b'"supporter_id":2345,"supporter_email":"john@example.com","total_amount_charged":"5.45","coffee_count":1,'
    b'"coffee_price":5}}'
)
VECTOR_SIGNATURE = "9c20a524ee177c06474027ba65e36b531c8b2c67af4d7e9a8291bb82d7186ce7"
LEGACY_BODY = (
    b'{"response": {"supporter_name": "Ann", "supporter_email": "ann@example.com", "total_amount": "10.00", '
    b'"support_note": "for order-44.", "support_created_on": "2025-11-10 15:30:00", "number_of_coffees": "2"}}'
)


def event(event_type: str = "donation.created", live_mode=True, **data) -> dict:
    body = json.loads(VECTOR_BODY)
    body.update(type=event_type, live_mode=live_mode)
    body["data"].update(data)
    return body


def parse(body: dict | bytes, currency: str = "USD"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return bmc.notice_from_event(json.loads(raw), raw, currency)


def test_vector_signature_matches():
    assert bmc.signature(VECTOR_BODY, SECRET) == VECTOR_SIGNATURE
    bmc.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, SECRET)
    bmc.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE.upper(), SECRET)


@pytest.mark.parametrize("header", [None, "", "0" * 64, VECTOR_SIGNATURE[:-2], "sha256=" + VECTOR_SIGNATURE, "ü"])
def test_missing_or_wrong_signature_is_refused(header):
    with pytest.raises(SignatureInvalid):
        bmc.verify_signature(VECTOR_BODY, header, SECRET)


def test_signature_covers_the_exact_bytes_and_secret():
    with pytest.raises(SignatureInvalid):
        bmc.verify_signature(VECTOR_BODY + b" ", VECTOR_SIGNATURE, SECRET)
    with pytest.raises(SignatureInvalid):
        bmc.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, SECRET + "x")


def test_missing_secret_is_not_configured():
    with pytest.raises(NotConfigured):
        bmc.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, "")


def test_vector_is_a_test_event_stored_but_not_applied():
    notice = parse(VECTOR_BODY)
    assert (notice.event_key, notice.event_type, notice.action) == ("event:77", "donation.created", IGNORE)
    assert (notice.amount, notice.currency, notice.provider_payment_id) == (
        Decimal("5"), "USD", "pi_3Mc51bJEtINljGAa0zVykgUE")
    assert notice.order_id is None  # left to the matcher
    details = notice.details
    assert details["liveMode"] is False and "test event" in details["note"]
    assert (details["supporterName"], details["supporterEmail"]) == ("John", "john@example.com")
    assert details["message"] == "order-43 thanks!" and details["orderIdCandidates"] == ["order-43", "thanks"]


@pytest.mark.parametrize("live_mode, action", [(True, PAID), ("true", PAID), ("TRUE", PAID), (None, PAID),
                                               (False, IGNORE), ("false", IGNORE), ("False", IGNORE)])
def test_live_mode_as_bool_or_string(live_mode, action):
    assert parse(event(live_mode=live_mode)).action == action


@pytest.mark.parametrize("event_type, action", [
    ("donation.created", PAID), ("extra_purchase.created", PAID), ("commission_order.created", PAID),
    ("wishlist_payment.created", PAID), ("membership.started", PAID),
    ("donation.refunded", REFUNDED), ("extra_purchase.refunded", REFUNDED), ("commission_order.refunded", REFUNDED),
    ("wishlist_payment.refunded", REFUNDED),
    ("membership.updated", IGNORE), ("membership.cancelled", IGNORE), ("membership.paused", IGNORE),
    ("extra_purchase.updated", IGNORE), ("recurring_donation.started", IGNORE), ("payout.created", IGNORE),
])
def test_event_types_map_to_actions(event_type, action):
    assert parse(event(event_type)).action == action


@pytest.mark.parametrize("amount, expected", [(5, Decimal("5")), ("5.0000", Decimal("5")), ("5.00", Decimal("5")),
                                              ("12.5", Decimal("12.5")), (None, None), ("abc", None), (True, None)])
def test_amounts_parse_exactly_whatever_their_json_type(amount, expected):
    notice = parse(event(amount=amount))
    assert notice.amount == expected and (expected is None or isinstance(notice.amount, Decimal))


def test_total_amount_is_used_when_amount_is_absent():
    body = event()
    del body["data"]["amount"]
    body["data"]["total_amount"] = "7.50"
    assert parse(body).amount == Decimal("7.50")


def test_flags_and_prices_keep_their_sent_form_in_details():
    details = parse(event(coffee_price="5.0000", refunded=False)).details
    assert details["coffeePrice"] == "5.0000" and details["refunded"] is False


def test_retries_of_one_event_share_its_identity():
    first, retry = event(), event()
    retry["attempt"] = 2
    assert parse(first).event_key == parse(retry).event_key == "event:77"


def test_event_without_id_falls_back_to_the_body_hash():
    body = event()
    del body["event_id"]
    raw = json.dumps(body).encode()
    assert parse(raw).event_key == "body:" + hashlib.sha256(raw).hexdigest()


def test_unknown_event_without_data_is_still_stored():
    notice = parse({"type": "page.ping", "live_mode": True, "event_id": 9})
    assert (notice.action, notice.event_key, notice.amount) == (IGNORE, "event:9", None)


def test_missing_currency_is_not_guessed_for_the_current_format():
    body = event()
    del body["data"]["currency"]
    assert parse(body).currency is None


def test_membership_details_are_kept():
    notice = parse(event("membership.cancelled", membership_level_id=3, membership_level_name="Gold",
                         psp_id="sub_123", canceled_at=1763899999, status="canceled", current_period_end=1764000000))
    assert notice.action == IGNORE and "changes no order" in notice.details["note"]
    assert notice.details["membershipLevelName"] == "Gold" and notice.details["pspId"] == "sub_123"
    assert notice.details["status"] == "canceled" and notice.details["currentPeriodEnd"] == 1764000000


def test_legacy_format_is_a_payment_in_the_page_currency():
    notice = parse(LEGACY_BODY, currency="EUR")
    assert notice.event_key == "legacy:" + hashlib.sha256(LEGACY_BODY).hexdigest()
    assert (notice.event_type, notice.action, notice.amount, notice.currency) == (
        bmc.LEGACY_EVENT, PAID, Decimal("10.00"), "EUR")
    assert notice.details["supporterEmail"] == "ann@example.com" and notice.details["format"] == "legacy"
    assert notice.details["orderIdCandidates"] == ["for", "order-44.", "order-44"]


def test_legacy_identity_is_the_exact_bytes():
    assert parse(LEGACY_BODY).event_key == parse(LEGACY_BODY).event_key
    assert parse(LEGACY_BODY).event_key != parse(LEGACY_BODY.replace(b"10.00", b"11.00")).event_key


@pytest.mark.parametrize("body", [[], "x", {}, {"type": "donation.created"}, {"type": "donation.created", "data": []},
                                  {"response": "text"}, {"type": 5, "data": {}}])
def test_malformed_events_are_refused(body):
    with pytest.raises(MalformedPayload):
        bmc.notice_from_event(body, json.dumps(body).encode(), "USD")


@pytest.mark.parametrize("text, expected", [
    ("order-43", "order-43"),
    ("order-43, thanks", "order-43"),
    ("Thanks! order-43.", "order-43"),
    ("(order-43)", "order-43"),
    ("orderId=order-43;", "order-43"),
    ("#order-43!", "order-43"),
    ("Order: order-43:", "order-43"),
    ("заказ order-43 спасибо", "order-43"),
    ("https://shop.example/o/order-43?x=1", "order-43"),
    ("my.order_43:b-", "my.order_43:b"),
])
def test_order_ids_are_found_despite_punctuation(text, expected):
    assert expected in bmc.order_id_candidates(text)


def test_candidates_keep_message_order_without_repeats():
    assert bmc.order_id_candidates("a-1 then b-2", None, "b-2, a-1 c-3") == ("a-1", "then", "b-2", "c-3")


def test_candidates_never_exceed_the_order_id_length():
    assert all(len(c) <= 64 for c in bmc.order_id_candidates("x" * 65 + " " + "y" * 64))
    assert "y" * 64 in bmc.order_id_candidates("x" * 65 + " " + "y" * 64)


def test_candidates_are_bounded():
    text = " ".join(f"o{i}" for i in range(1000))
    assert len(bmc.order_id_candidates(text)) == bmc.MAX_CANDIDATES
