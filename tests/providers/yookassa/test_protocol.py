"""YooKassa wire format: source addresses, notifications, payment and refund objects as Notices, request bodies,
idempotence keys and the API's error bodies (PROTOCOLS.md §7)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from services.errors import MalformedPayload, NotConfigured, ProviderRejected, ProviderUnavailable
from services.notices import CANCELLED, IGNORE, PAID, REFUNDED
from services.providers.base import PaymentDraft
from services.providers.yookassa import protocol as yookassa
from webhook_config import YOOKASSA_PUBLISHED_IPS

PUBLISHED = tuple(ipaddress.ip_network(network) for network in YOOKASSA_PUBLISHED_IPS)
PAYMENT_ID = "2d8f0e8d-000f-5000-8000-18db351245c7"
# PROTOCOLS.md §7's sample, with our orderId key in the metadata.
SUCCEEDED = {"id": PAYMENT_ID, "status": "succeeded", "paid": True, "amount": {"value": "100.00", "currency": "RUB"},
             "description": "VPN 30 days", "payment_method": {"type": "sbp", "id": PAYMENT_ID, "saved": False},
             "created_at": "2026-01-07T12:00:02.000Z", "captured_at": "2026-01-07T12:01:10.000Z", "test": False,
             "refundable": True, "metadata": {"orderId": "42"}}
REFUND = {"id": "2d8f1a2b-0015-5000-9000-1c2f3a4b5c6d", "payment_id": PAYMENT_ID, "status": "succeeded",
          "amount": {"value": "30.00", "currency": "RUB"}, "created_at": "2026-01-08T09:00:00.000Z"}


@pytest.mark.parametrize("address", ["185.71.76.0", "185.71.76.31", "185.71.77.17", "77.75.153.127",
                                     "77.75.154.128", "77.75.154.255", "77.75.156.11", "77.75.156.35",
                                     "2a02:5180::1", "2a02:5180:0:1509::2", "::ffff:185.71.76.5"])
def test_published_addresses_are_allowed(address):
    assert yookassa.address_allowed(address, PUBLISHED)


@pytest.mark.parametrize("address", ["185.71.76.32", "185.71.75.255", "77.75.153.128", "77.75.154.127",
                                     "77.75.156.12", "2a02:5181::1", "127.0.0.1", "::1", "::ffff:127.0.0.1",
                                     "", None, "not-an-ip", "185.71.76.1, 1.2.3.4", "185.71.76.0/27"])
def test_other_addresses_are_refused(address):
    assert not yookassa.address_allowed(address, PUBLISHED)


def test_a_configured_list_replaces_the_published_one():
    assert yookassa.address_allowed("10.1.2.3", (ipaddress.ip_network("10.0.0.0/8"),))
    assert not yookassa.address_allowed("185.71.76.1", (ipaddress.ip_network("10.0.0.0/8"),))


def test_notification_names_its_object():
    note = yookassa.parse_notification({"type": "notification", "event": "payment.succeeded", "object": SUCCEEDED})
    assert note == yookassa.Notification("payment.succeeded", "payment", PAYMENT_ID, "succeeded")


def test_refund_notification_names_the_refund():
    note = yookassa.parse_notification({"type": "notification", "event": "refund.succeeded", "object": REFUND})
    assert (note.kind, note.object_id) == ("refund", REFUND["id"])


def test_other_events_are_kept_but_never_fetched():
    note = yookassa.parse_notification({"type": "notification", "event": "payout.succeeded",
                                        "object": {"id": "po-1", "status": "succeeded"}})
    assert note.kind is None
    notice = yookassa.unhandled_notice(note)
    assert (notice.action, notice.event_key, notice.event_type) == (IGNORE, "payout.succeeded:po-1", "payout.succeeded")


@pytest.mark.parametrize("payload", [
    None, [], "notification", {}, {"type": "event", "event": "payment.succeeded", "object": SUCCEEDED},
    {"type": "notification", "object": SUCCEEDED},
    {"type": "notification", "event": "payment.succeeded"},
    {"type": "notification", "event": "payment.succeeded", "object": []},
    {"type": "notification", "event": "payment succeeded", "object": SUCCEEDED},
    {"type": "notification", "event": "payment.succeeded", "object": {**SUCCEEDED, "id": None}},
    {"type": "notification", "event": "payment.succeeded", "object": {**SUCCEEDED, "id": "../refunds/x"}},
    {"type": "notification", "event": "payment.succeeded", "object": {**SUCCEEDED, "id": "a" * 65}},
    {"type": "notification", "event": "refund.succeeded", "object": {**SUCCEEDED, "id": "x/y"}},
])
def test_malformed_notifications_are_refused(payload):
    with pytest.raises(MalformedPayload):
        yookassa.parse_notification(payload)


def test_succeeded_payment_pays_its_order():
    notice = yookassa.notice_from_payment(SUCCEEDED, "payment.succeeded")
    assert (notice.action, notice.event_key, notice.event_type) == (PAID, f"payment:{PAYMENT_ID}:succeeded",
                                                                    "payment.succeeded")
    assert (notice.order_id, notice.provider_ref, notice.provider_payment_id) == ("42", PAYMENT_ID, PAYMENT_ID)
    assert (notice.amount, notice.currency) == (Decimal("100.00"), "RUB")
    assert notice.details == {"status": "succeeded", "paid": True, "test": False, "paymentMethod": "sbp",
                              "capturedAt": "2026-01-07T12:01:10.000Z", "notified": "payment.succeeded"}


@pytest.mark.parametrize("status", ["pending", "waiting_for_capture"])
def test_unfinished_payment_is_kept_under_its_own_key_and_settles_nothing(status):
    notice = yookassa.notice_from_payment({**SUCCEEDED, "status": status, "paid": False})
    assert (notice.action, notice.event_key) == (IGNORE, f"payment:{PAYMENT_ID}:{status}")


def test_canceled_payment_cancels_with_its_reason():
    canceled = {**SUCCEEDED, "status": "canceled", "paid": False,
                "cancellation_details": {"party": "yoo_money", "reason": "expired_on_confirmation"}}
    notice = yookassa.notice_from_payment(canceled, "payment.canceled")
    assert (notice.action, notice.event_type) == (CANCELLED, "payment.canceled")
    assert notice.details["cancellationReason"] == "expired_on_confirmation"
    assert notice.details["cancellationParty"] == "yoo_money"


@pytest.mark.parametrize("metadata", [{}, {"order_id": "42"}, {"orderId": 42}, {"orderId": "bad id"}, None, "x"])
def test_only_a_valid_order_id_under_our_key_names_an_order(metadata):
    assert yookassa.notice_from_payment({**SUCCEEDED, "metadata": metadata}).order_id is None


@pytest.mark.parametrize("change", [{"id": 5}, {"status": None}, {"status": "Succeeded!"}])
def test_payment_without_id_or_status_is_malformed(change):
    with pytest.raises(MalformedPayload):
        yookassa.notice_from_payment({**SUCCEEDED, **change})


@pytest.mark.parametrize("amount", ["100", {"value": "lots", "currency": "RUB"}, {"value": True}, None])
def test_unreadable_amount_is_none(amount):
    assert yookassa.notice_from_payment({**SUCCEEDED, "amount": amount}).amount is None


def test_refund_belongs_to_its_payment_with_its_own_amount():
    notice = yookassa.notice_from_refund(REFUND, "refund.succeeded")
    assert (notice.action, notice.event_key) == (REFUNDED, f"refund:{REFUND['id']}:succeeded")
    assert (notice.provider_ref, notice.provider_payment_id, notice.order_id) == (PAYMENT_ID, PAYMENT_ID, None)
    assert (notice.amount, notice.currency) == (Decimal("30.00"), "RUB")
    assert notice.details["refundId"] == REFUND["id"]


@pytest.mark.parametrize("status", ["pending", "canceled"])
def test_unfinished_or_canceled_refund_reverses_nothing(status):
    notice = yookassa.notice_from_refund({**REFUND, "status": status})
    assert (notice.action, notice.event_key) == (IGNORE, f"refund:{REFUND['id']}:{status}")


def test_refund_without_payment_is_malformed():
    with pytest.raises(MalformedPayload):
        yookassa.notice_from_refund({**REFUND, "payment_id": None})


def test_idempotence_keys_are_stable_per_operation_and_order():
    key = yookassa.idempotence_key("payment", "order-1")
    assert key == yookassa.idempotence_key("payment", "order-1") and len(key) <= 64
    others = {yookassa.idempotence_key("payment", "order-2"), yookassa.idempotence_key("refund.0", "order-1"),
              yookassa.idempotence_key("refund.1", "order-1")}
    assert key not in others and len(others) == 3
    assert len(yookassa.idempotence_key("refund.0", "x" * 64)) <= 64


def draft(**change) -> PaymentDraft:
    fields = {"order_id": "order-1", "amount": Decimal("100"), "currency": "RUB", "description": "VPN",
              "expires_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "telegram_id": None, **change}
    return PaymentDraft(**fields)


def test_payment_request_is_one_stage_with_a_redirect_and_our_order_id():
    body = yookassa.payment_request(draft(amount=Decimal("99.5")), "https://pay.example/paid")
    assert body == {"amount": {"value": "99.50", "currency": "RUB"}, "capture": True,
                    "confirmation": {"type": "redirect", "return_url": "https://pay.example/paid"},
                    "description": "VPN", "metadata": {"orderId": "order-1"}}


@pytest.mark.parametrize("method", ["bank_card", "sbp"])
def test_a_chosen_payment_method_is_asked_for(method):
    body = yookassa.payment_request(draft(payment_method=method), "https://pay.example/paid")
    assert body["payment_method_data"] == {"type": method}


def test_long_description_is_cut_to_128():
    assert len(yookassa.payment_request(draft(description="x" * 500), "https://r")["description"]) == 128


@pytest.mark.parametrize("status, body, error", [
    (401, {"type": "error", "code": "invalid_credentials", "description": "Error in shopId or secret key"},
     NotConfigured),
    (429, {"type": "error", "code": "too_many_requests", "description": "slow down"}, ProviderUnavailable),
    (500, {"type": "error", "code": "internal_server_error", "description": "retry"}, ProviderUnavailable),
    (400, {"type": "error", "code": "invalid_request", "description": "Idempotence key duplicated"},
     ProviderRejected),
    (403, {"type": "error", "code": "forbidden", "description": "no rights"}, ProviderRejected),
    (404, {"type": "error", "code": "not_found", "description": "no such payment"}, ProviderRejected),
    (415, None, ProviderRejected),
])
def test_api_errors_map_to_the_gateways(status, body, error):
    mapped = yookassa.api_error(status, body)
    assert type(mapped) is error
    if body and error is ProviderRejected:
        assert body["code"] in mapped.message and body["description"] in mapped.message
