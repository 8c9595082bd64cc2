"""Telegram provider units: the secret-token check, update parsing, pre-checkout decisions and the Bot API client."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services import notices
from services.providers.telegram import cli as telegram_cli
from services.providers.telegram import inbound as telegram
from services.errors import MalformedPayload, NotConfigured, ProviderRejected, ProviderUnavailable, SignatureInvalid
from services.models import Order
from services.providers.telegram import protocol as provider
from services.providers.base import PaymentDraft
from services.providers.telegram.client import TelegramClient, TelegramRejected, TelegramStars
from services.providers.telegram.protocol import PreCheckoutQuery
from tests.blueprints.test_telegram import PRE_CHECKOUT, REFUNDED_PAYMENT, SECRET, SUCCESSFUL_PAYMENT, changed
from webhook_config import Settings

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def settings(telegram) -> Settings:
    return Settings(telegram_bot_token=telegram.bot_token, telegram_api_url=telegram.api_url,
                    telegram_webhook_secret=SECRET, http_timeout=2.0)


@pytest.fixture
def client(settings) -> TelegramClient:
    return TelegramClient(settings)


# --- the secret-token header ------------------------------------------------------------------------

def test_matching_secret_token_passes():
    assert provider.verify_secret_token(SECRET, SECRET) is None


@pytest.mark.parametrize("header", [None, "", "wrong", SECRET.upper(), SECRET + " ", "сек", SECRET[:-1]])
def test_missing_or_wrong_secret_token_is_rejected(header):
    with pytest.raises(SignatureInvalid):
        provider.verify_secret_token(header, SECRET)


@pytest.mark.parametrize("header", [None, "", "anything"])
def test_without_configured_secret_nothing_is_accepted(header):
    with pytest.raises(NotConfigured):
        provider.verify_secret_token(header, "")


def test_rejection_is_logged_without_the_secret(caplog):
    settings = Settings(telegram_webhook_secret=SECRET)
    with caplog.at_level(logging.WARNING), pytest.raises(SignatureInvalid):
        telegram.authenticate(SECRET[:-1], settings)
    [record] = caplog.records
    assert "X-Telegram-Bot-Api-Secret-Token" in record.getMessage()
    assert SECRET[:-1] not in str(vars(record))


# --- parsing updates (PROTOCOLS.md §2) ---------------------------------------------------------------

def test_successful_payment_becomes_a_paid_notice():
    assert provider.payment_notice(SUCCESSFUL_PAYMENT) == notices.Notice(
        event_key="charge:stxAbCdEf0123456789", event_type="successful_payment", action=notices.PAID,
        order_id="order-45", provider_ref=None, amount=Decimal(50), currency="XTR",
        provider_payment_id="stxAbCdEf0123456789",
        details={"updateId": 900000002, "fromId": 5551234, "chatId": 5551234})


def test_refunded_payment_becomes_a_refunded_notice():
    notice = provider.payment_notice(REFUNDED_PAYMENT)
    assert (notice.event_key, notice.action, notice.order_id, notice.amount, notice.provider_ref) == (
        "refund:stxAbCdEf0123456789", notices.REFUNDED, "order-45", Decimal(50), None)


def test_pre_checkout_query_is_parsed():
    assert provider.pre_checkout_query(PRE_CHECKOUT) == PreCheckoutQuery(
        query_id="4382bfdwdsb323b2d9", order_id="order-45", currency="XTR", amount=Decimal(50), payer_id=5551234)
    assert provider.pre_checkout_query(SUCCESSFUL_PAYMENT) is None


@pytest.mark.parametrize("update", [
    {"update_id": 1, "message": {"message_id": 1, "text": "/start"}},
    {"update_id": 2, "callback_query": {"id": "1", "data": "buy"}},
    {"update_id": 3, "edited_message": {"successful_payment": {}}},
])
def test_other_updates_are_neither_payments_nor_queries(update):
    assert provider.payment_notice(update) is None and provider.pre_checkout_query(update) is None


@pytest.mark.parametrize("update", [
    changed(SUCCESSFUL_PAYMENT, "successful_payment", total_amount=True),
    changed(SUCCESSFUL_PAYMENT, "successful_payment", total_amount=50.0),
    changed(SUCCESSFUL_PAYMENT, "successful_payment", total_amount=-1),
    changed(SUCCESSFUL_PAYMENT, "successful_payment", telegram_payment_charge_id=""),
    changed(SUCCESSFUL_PAYMENT, "successful_payment", invoice_payload="x" * 129),
    changed(REFUNDED_PAYMENT, "refunded_payment", currency=None),
    changed(PRE_CHECKOUT, "pre_checkout_query", id=17),
    {"update_id": 1, "pre_checkout_query": "q"},
    {"update_id": 1, "message": {"successful_payment": []}},
])
def test_malformed_payment_fields_are_refused(update):
    with pytest.raises(MalformedPayload):
        provider.pre_checkout_query(update) or provider.payment_notice(update)


@pytest.mark.parametrize("update", [None, [], "x", {}, {"update_id": "1"}, {"update_id": True}])
def test_an_update_needs_an_integer_update_id(update):
    with pytest.raises(MalformedPayload):
        provider.update_id(update)


# --- pre-checkout decisions ---------------------------------------------------------------------------

def stars_order(**fields) -> Order:
    values = {"order_id": "order-45", "provider": "telegram", "status": "pending", "amount": Decimal(50),
              "currency": "XTR", "expires_at": NOW + timedelta(minutes=15), **fields}
    return Order(**values)


QUERY = PreCheckoutQuery(query_id="q", order_id="order-45", currency="XTR", amount=Decimal(50), payer_id=1)


def test_a_pending_order_awaiting_exactly_this_payment_is_ok():
    assert telegram.pre_checkout_problem(QUERY, stars_order(), NOW) is None


@pytest.mark.parametrize("order, query, reason", [
    (None, QUERY, "unknown_order"),
    (stars_order(provider="sbp", currency="RUB"), QUERY, "wrong_provider"),
    (stars_order(status="paid"), QUERY, "already_paid"),
    (stars_order(status="expired"), QUERY, "expired"),
    (stars_order(expires_at=NOW), QUERY, "expired"),
    (stars_order(status="cancelled"), QUERY, "not_payable"),
    (stars_order(status="refunded"), QUERY, "not_payable"),
    (stars_order(), PreCheckoutQuery("q", "order-45", "USD", Decimal(50), 1), "currency_mismatch"),
    (stars_order(), PreCheckoutQuery("q", "order-45", "XTR", Decimal(51), 1), "amount_mismatch"),
])
def test_pre_checkout_refusals_have_a_reason_and_a_message(order, query, reason):
    code, message = telegram.pre_checkout_problem(query, order, NOW)
    assert code == reason and message.endswith(".")


def test_webhook_answer_carries_the_bot_api_call():
    assert provider.webhook_answer("q1") == {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": "q1",
                                             "ok": True}
    assert provider.webhook_answer("q1", "Expired.") == {"method": "answerPreCheckoutQuery",
                                                         "pre_checkout_query_id": "q1", "ok": False,
                                                         "error_message": "Expired."}


# --- the Bot API client against the fake ---------------------------------------------------------------

def test_call_returns_the_result(client, telegram):
    assert client.call("getMe")["username"] == "fake_payments_bot"


def test_rate_limit_is_retryable_with_retry_after(client, telegram):
    telegram.rate_limit_next(1, retry_after=3, method="sendMessage")
    with pytest.raises(ProviderUnavailable) as caught:
        client.call("sendMessage", {"chat_id": 1, "text": "hi"})
    assert caught.value.retry_after == 3


def test_server_errors_and_outages_are_retryable(client, telegram):
    telegram.fail_next(1, 502)
    with pytest.raises(ProviderUnavailable):
        client.call("getMe")
    telegram.down()
    with pytest.raises(ProviderUnavailable) as caught:
        client.call("getMe")
    assert telegram.bot_token not in caught.value.message


def test_slow_api_times_out_as_retryable(telegram):
    slow = TelegramClient(Settings(telegram_bot_token=telegram.bot_token, telegram_api_url=telegram.api_url,
                                   http_timeout=0.2))
    telegram.delay_seconds = 0.6
    with pytest.raises(ProviderUnavailable, match="did not answer"):
        slow.call("getMe")


def test_blocked_user_is_permanent(client, telegram):
    telegram.block_chat(777)
    with pytest.raises(TelegramRejected) as caught:
        client.call("sendMessage", {"chat_id": 777, "text": "paid"})
    assert isinstance(caught.value, ProviderRejected)
    assert caught.value.blocked and caught.value.error_code == 403
    assert "bot was blocked by the user" in caught.value.description


@pytest.mark.parametrize("method, params, code", [
    ("sendMessage", {"chat_id": 1, "text": ""}, 400),
    ("noSuchMethod", {}, 404),
])
def test_other_refusals_are_permanent(client, method, params, code):
    with pytest.raises(TelegramRejected) as caught:
        client.call(method, params)
    assert caught.value.error_code == code and not caught.value.blocked


def test_wrong_bot_token_is_permanent(telegram):
    wrong = TelegramClient(Settings(telegram_bot_token="1:wrong", telegram_api_url=telegram.api_url))
    with pytest.raises(TelegramRejected) as caught:
        wrong.get_webhook_info()
    assert caught.value.error_code == 401 and "1:wrong" not in caught.value.message


def test_client_without_token_is_not_configured():
    with pytest.raises(NotConfigured):
        TelegramClient(Settings()).call("getMe")


def test_answer_pre_checkout_query_over_http(client, telegram):
    assert client.answer_pre_checkout_query("q1") is True
    assert client.answer_pre_checkout_query("q2", "Sold out.") is True
    assert telegram.pre_checkout_answers == [
        {"pre_checkout_query_id": "q1", "ok": True, "error_message": None},
        {"pre_checkout_query_id": "q2", "ok": False, "error_message": "Sold out."}]


# --- the payment provider -------------------------------------------------------------------------------

def draft(**fields) -> PaymentDraft:
    values = {"order_id": "order-45", "amount": Decimal(50), "currency": "XTR", "description": "500 credits",
              "expires_at": NOW, "telegram_id": None, **fields}
    return PaymentDraft(**values)


def test_provider_creates_an_invoice_link_per_order(settings, telegram):
    created = TelegramStars(settings).create(draft())
    assert created.provider_ref == "link:order-45"
    assert telegram.invoice_links[created.data["invoiceLink"]]["payload"] == "order-45"
    assert list(created.data) == ["invoiceLink"]


def test_provider_takes_xtr_only_and_needs_a_token(settings):
    stars = TelegramStars(settings)
    assert (stars.name, stars.local, stars.default_currency()) == ("telegram", False, "XTR")
    assert stars.currency_problem("XTR") is None and stars.currency_problem("RUB")
    with pytest.raises(NotConfigured):
        TelegramStars(Settings())


@pytest.mark.parametrize("text, limit, expected", [
    ("short", 32, "short"),
    ("x" * 32, 32, "x" * 32),
    ("x" * 33, 32, "x" * 31 + "…"),
    ("word " * 10, 12, "word word w…"),
    ("⭐" * 20, 10, "⭐" * 9 + "…"),
    ("😀" * 20, 10, "😀" * 4 + "…"),
])
def test_clip_counts_utf16_units_like_telegram(text, limit, expected):
    assert provider.clip(text, limit) == expected


# --- webhook registration settings --------------------------------------------------------------------------

def test_allowed_updates_always_include_payments():
    assert telegram_cli.allowed_updates(Settings()) == ["message", "pre_checkout_query"]
    forwarding = Settings(telegram_forward_url="https://bot.example.test/hook")
    assert "callback_query" in telegram_cli.allowed_updates(forwarding)
    assert telegram_cli.allowed_updates(forwarding, ("chat_member", "message")) == [
        "message", "pre_checkout_query", "chat_member"]
