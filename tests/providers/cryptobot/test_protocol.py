"""Crypto Pay webhook signatures and update parsing: PROTOCOLS.md vectors, aiocryptopay as an oracle."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiocryptopay import AioCryptoPay

from services.errors import MalformedPayload, NotConfigured, SignatureInvalid
from services.notices import EXPIRED, IGNORE, PAID
from services.providers.cryptobot import protocol as cryptobot

# PROTOCOLS.md §1 vector, exact bytes.
TOKEN = "1234:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
KEY_HEX = "61b726e9c0b7a7381d4265b93c97402958e9f6dbb5b306c77835a2e194341315"
VECTOR_BODY = (
    b'{"update_id":1001,"update_type":"invoice_paid","request_date":"2026-11-23T10:00:00.000Z","payload":'
    b'{"invoice_id":528890,"hash":"IVXzFd0hcBdr","currency_type":"crypto","asset":"USDT","amount":"1.5",'
    b'"paid_asset":"USDT","paid_amount":"1.5","fee_asset":"USDT","fee_amount":"0.045",'
    b'"bot_invoice_url":"https://t.me/CryptoTestnetBot?start=IVXzFd0hcBdr","status":"paid",'
    b'"created_at":"2026-11-23T09:58:00.000Z","paid_at":"2026-11-23T09:59:59.000Z","paid_anonymously":false,'
    b'"allow_comments":true,"allow_anonymous":true,"payload":"order-42","paid_usd_rate":"1.00"}}'
)
VECTOR_SIGNATURE = "a1019e81250d9bbce623545eced0342bf38abd994124d101a6a02d2c39b66fde"


def update(**payload) -> dict:
    invoice = {"invoice_id": 7, "status": "paid", "currency_type": "crypto", "asset": "TON", "amount": "2.5",
               "payload": "order-7", **payload}
    return {"update_id": 1, "update_type": "invoice_paid", "request_date": "2026-11-23T10:00:00.000Z",
            "payload": invoice}


def test_key_is_sha256_digest_of_token():
    assert hashlib.sha256(TOKEN.encode()).hexdigest() == KEY_HEX


def test_vector_signature_matches():
    assert cryptobot.signature(VECTOR_BODY, TOKEN) == VECTOR_SIGNATURE
    cryptobot.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, TOKEN)


def test_header_case_and_surrounding_space_do_not_matter():
    cryptobot.verify_signature(VECTOR_BODY, f" {VECTOR_SIGNATURE.upper()} ", TOKEN)


@pytest.mark.parametrize("header", [None, "", "   ", "0" * 64, VECTOR_SIGNATURE[:-1], VECTOR_SIGNATURE + "0",
                                    "sha256=" + VECTOR_SIGNATURE, "é" * 64, VECTOR_SIGNATURE[::-1]])
def test_missing_or_wrong_signature_is_refused(header):
    with pytest.raises(SignatureInvalid):
        cryptobot.verify_signature(VECTOR_BODY, header, TOKEN)


@pytest.mark.parametrize("body", [
    VECTOR_BODY + b"\n",
    VECTOR_BODY.replace(b'"amount":"1.5"', b'"amount":"15"'),
    json.dumps(json.loads(VECTOR_BODY)).encode(),  # same JSON, other bytes: the raw body is what is signed
])
def test_any_change_to_the_bytes_breaks_the_signature(body):
    with pytest.raises(SignatureInvalid):
        cryptobot.verify_signature(body, VECTOR_SIGNATURE, TOKEN)


def test_another_token_does_not_verify():
    with pytest.raises(SignatureInvalid):
        cryptobot.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, "1234:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")


def test_missing_token_is_not_configured_never_open():
    with pytest.raises(NotConfigured):
        cryptobot.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, "")


@pytest.mark.parametrize("body", [
    VECTOR_BODY,
    '{"update_type":"invoice_paid","payload":{"comment":"спасибо ☕","invoice_id":1}}'.encode(),
    b"{}",
    b"",
])
def test_signature_agrees_with_aiocryptopay(body):
    oracle = AioCryptoPay(TOKEN)
    ours = cryptobot.signature(body, TOKEN)
    assert oracle.check_signature(body.decode("utf-8"), ours) is True
    assert oracle.check_signature(body.decode("utf-8"), cryptobot.signature(body, TOKEN + "x")) is False


def test_vector_update_becomes_a_paid_notice_keyed_by_invoice():
    notice = cryptobot.notice_from_update(json.loads(VECTOR_BODY))
    assert notice.event_key == "invoice:528890:paid"
    assert (notice.event_type, notice.action, notice.order_id) == ("invoice_paid", PAID, "order-42")
    assert (notice.provider_ref, notice.provider_payment_id) == ("528890", "528890")
    assert (notice.amount, notice.currency) == (Decimal("1.5"), "USDT")
    assert notice.details["feeAmount"] == "0.045" and notice.details["hash"] == "IVXzFd0hcBdr"


def test_update_id_does_not_change_the_identity():
    first, second = update(), {**update(), "update_id": 99}
    assert cryptobot.notice_from_update(first).event_key == cryptobot.notice_from_update(second).event_key


def test_reconciled_invoice_has_the_webhooks_identity():
    from_webhook = cryptobot.notice_from_update(json.loads(VECTOR_BODY))
    from_poll = cryptobot.notice_from_invoice(json.loads(VECTOR_BODY)["payload"], "getInvoices")
    assert from_poll.event_key == from_webhook.event_key
    assert (from_poll.action, from_poll.amount, from_poll.currency) == (PAID, Decimal("1.5"), "USDT")


def test_crypto_invoice_reports_what_was_actually_paid():
    notice = cryptobot.notice_from_update(update(paid_asset="USDT", paid_amount="2.4"))
    assert (notice.amount, notice.currency) == (Decimal("2.4"), "USDT")


def test_fiat_invoice_is_compared_in_its_fiat():
    notice = cryptobot.notice_from_update(update(currency_type="fiat", asset=None, fiat="USD", amount="10.00",
                                                 paid_asset="USDT", paid_amount="9.98"))
    assert (notice.amount, notice.currency) == (Decimal("10.00"), "USD")
    assert notice.details["paidAsset"] == "USDT" and notice.details["paidAmount"] == "9.98"


def test_invoice_statuses_map_to_actions():
    assert cryptobot.notice_from_invoice({"invoice_id": 1, "status": "expired"}).action == EXPIRED
    assert cryptobot.notice_from_invoice({"invoice_id": 1, "status": "active"}).action == IGNORE


def test_invoice_paid_update_for_an_unpaid_invoice_is_ignored():
    notice = cryptobot.notice_from_update(update(status="active"))
    assert notice.action == IGNORE and notice.event_key == "invoice:7:active"
    assert "active" in notice.details["note"]


def test_unknown_update_type_is_ignored_with_a_stable_key():
    body = {"update_id": 5, "update_type": "check_activated", "payload": {"check_id": 3}}
    notice = cryptobot.notice_from_update(body)
    assert (notice.action, notice.event_type) == (IGNORE, "check_activated")
    assert notice.event_key == cryptobot.notice_from_update({**body, "update_id": 6}).event_key
    assert notice.event_key != cryptobot.notice_from_update({**body, "payload": {"check_id": 4}}).event_key


@pytest.mark.parametrize("payload", ["order 7", "x" * 65, 42, None])
def test_payload_that_is_no_order_id_claims_no_order(payload):
    notice = cryptobot.notice_from_update(update(payload=payload))
    assert notice.order_id is None and notice.provider_ref == "7"


@pytest.mark.parametrize("body", [
    [], "x", {}, {"update_type": 3}, {"update_type": "invoice_paid"},
    {"update_type": "invoice_paid", "payload": {"invoice_id": "7"}},
    {"update_type": "invoice_paid", "payload": {"invoice_id": True}},
])
def test_malformed_updates_are_refused(body):
    with pytest.raises(MalformedPayload):
        cryptobot.notice_from_update(body)


def test_request_date_is_read_as_utc():
    assert cryptobot.request_date(update()) == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    assert cryptobot.request_date({"request_date": "yesterday"}) is None
    assert cryptobot.request_date({"request_date": "2026-11-23T10:00:00"}) is None


@pytest.mark.parametrize("seconds, expected", [(900, 900), (0.2, 1), (-50, 1), (10**8, 2_678_400)])
def test_expires_in_is_clamped_to_what_the_api_takes(seconds, expected):
    now = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    assert cryptobot.expires_in(now + timedelta(seconds=seconds), now) == expected


@pytest.mark.parametrize("currency, terms", [
    ("USDT", {"currency_type": "crypto", "asset": "USDT"}),
    ("TON", {"currency_type": "crypto", "asset": "TON"}),
    ("USD", {"currency_type": "fiat", "fiat": "USD"}),
    ("RUB", {"currency_type": "fiat", "fiat": "RUB"}),
])
def test_invoice_terms_pick_asset_or_fiat(currency, terms):
    assert cryptobot.invoice_terms(currency) == terms
