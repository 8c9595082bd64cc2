"""Telegram Stars end to end: invoice links from the fake Bot API, and signed updates to /webhook/telegram."""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.db import db
from services.models import Fulfilment, LedgerEntry, Order, OutboxMessage, ProviderEvent
from tests.conftest import AUTH
from tests.helpers import assert_error, balance, create, status

SECRET = "tg_webhook_secret_0123456789abcdef-XYZ"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BUYER = 5551234

# PROTOCOLS.md §2, exactly.
PRE_CHECKOUT = {"update_id": 900000001,
                "pre_checkout_query": {"id": "4382bfdwdsb323b2d9",
                                       "from": {"id": 5551234, "is_bot": False, "first_name": "Ivan"},
                                       "currency": "XTR", "total_amount": 50, "invoice_payload": "order-45"}}
SUCCESSFUL_PAYMENT = {"update_id": 900000002,
                      "message": {"message_id": 77, "date": 1763892000,
                                  "chat": {"id": 5551234, "type": "private", "first_name": "Ivan"},
                                  "from": {"id": 5551234, "is_bot": False, "first_name": "Ivan"},
                                  "successful_payment": {"currency": "XTR", "total_amount": 50,
                                                         "invoice_payload": "order-45",
                                                         "telegram_payment_charge_id": "stxAbCdEf0123456789",
                                                         "provider_payment_charge_id": ""}}}
REFUNDED_PAYMENT = {"update_id": 900000003,
                    "message": {"message_id": 78, "date": 1763895600,
                                "chat": {"id": 5551234, "type": "private", "first_name": "Ivan"},
                                "from": {"id": 5551234, "is_bot": False, "first_name": "Ivan"},
                                "refunded_payment": {"currency": "XTR", "total_amount": 50,
                                                     "invoice_payload": "order-45",
                                                     "telegram_payment_charge_id": "stxAbCdEf0123456789"}}}


@pytest.fixture
def app(make_app, telegram):
    return make_app(TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url,
                    TELEGRAM_WEBHOOK_SECRET=SECRET)


def create_stars(client, **body):
    """The order PROTOCOLS.md's updates pay for: order-45, 50 Stars, crediting the buyer 500."""
    fields = {"orderId": "order-45", "amount": 50, "provider": "telegram", "currency": "XTR",
              "telegramId": BUYER, "credit": 500, **body}
    return create(client, **fields)


def send(client, update, secret: str | None = SECRET):
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return client.post("/webhook/telegram", data=json.dumps(update), content_type="application/json",
                       headers=headers)


def changed(update: dict, section: str, **fields) -> dict:
    """A copy of the update with fields of its payment section (pre_checkout_query or a message part) changed."""
    result = copy.deepcopy(update)
    target = result["pre_checkout_query"] if section == "pre_checkout_query" else result["message"][section]
    target.update(fields)
    return result


def rows(app, model) -> list:
    with app.app_context():
        return db.session.execute(db.select(model).order_by(model.id)).scalars().all()


def event(app, key: str) -> ProviderEvent:
    with app.app_context():
        return db.session.execute(db.select(ProviderEvent).where(ProviderEvent.event_key == key)).scalar_one()


# --- creating Stars payments through the fake Bot API ---------------------------------------------

def test_create_returns_invoice_link_for_the_order(client, telegram):
    response = create_stars(client, description="500 NDN credits")
    assert response.status_code == 201
    body = response.get_json()
    assert (body["provider"], body["currency"], body["amount"], body["status"]) == ("telegram", "XTR", 50, "pending")
    assert body["invoiceLink"] in telegram.invoice_links
    assert telegram.invoice_links[body["invoiceLink"]] == {
        "title": "500 NDN credits", "description": "500 NDN credits", "payload": "order-45", "amount": 50,
        "subscription_period": None}
    sent = telegram.requests[-1].json
    assert sent["currency"] == "XTR" and "provider_token" not in sent
    assert sent["prices"] == [{"label": "500 NDN credits", "amount": 50}]
    repeat = create_stars(client, description="500 NDN credits")
    assert repeat.status_code == 200 and repeat.get_json()["invoiceLink"] == body["invoiceLink"]
    assert len(telegram.invoice_links) == 1


def test_long_description_is_clipped_to_telegram_limits(client, telegram):
    create_stars(client, description="Premium access " * 30)
    invoice = next(iter(telegram.invoice_links.values()))
    assert len(invoice["title"]) == 32 and invoice["title"].endswith("…")
    assert len(invoice["description"]) <= 255 and invoice["description"].startswith("Premium access Premium")


def test_create_when_bot_api_is_down_is_503_and_a_retry_succeeds(client, telegram):
    telegram.down()
    assert_error(create_stars(client), 503, "provider_unavailable")
    assert status(client, "order-45")["status"] == "pending"
    telegram.up()
    retry = create_stars(client)
    assert retry.status_code == 200 and retry.get_json()["invoiceLink"].startswith("https://t.me/$")


def test_create_rate_limited_is_503_with_retry_after(client, telegram):
    telegram.rate_limit_next(1, retry_after=7, method="createInvoiceLink")
    response = create_stars(client)
    assert_error(response, 503, "provider_unavailable")
    assert response.headers["Retry-After"] == "7"


def test_create_rejected_by_bot_api_is_502(client, telegram):
    telegram.fail_next(1, 400, {"ok": False, "error_code": 400, "description": "Bad Request: STARS_INVOICE_INVALID"})
    error = assert_error(create_stars(client), 502, "provider_error")
    assert "STARS_INVOICE_INVALID" in error["message"] and telegram.bot_token not in error["message"]


def test_create_without_bot_token_is_503(make_app):
    assert_error(create_stars(make_app().test_client()), 503, "not_configured")


@pytest.mark.parametrize("update", [PRE_CHECKOUT, SUCCESSFUL_PAYMENT, {"update_id": 1, "message": {"text": "hi"}}])
def test_database_down_is_503_so_telegram_redelivers(make_app, update):
    app = make_app(TELEGRAM_WEBHOOK_SECRET=SECRET, TELEGRAM_FORWARD_URL="https://bot.example.test/hook",
                   DATABASE_URL="sqlite:////nonexistent-dir/x.db")
    assert_error(send(app.test_client(), update), 503, "database_unavailable")


@pytest.mark.parametrize("body, field", [({"currency": "RUB"}, "currency"), ({"amount": "50.5"}, "amount")])
def test_stars_payment_needs_whole_xtr(client, telegram, body, field):
    assert field in assert_error(create_stars(client, **body), 422, "validation_error")["fields"]
    assert telegram.requests == []


# --- authentication and malformed bodies -----------------------------------------------------------

@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", SECRET[:-1]])
def test_missing_or_wrong_secret_is_401_and_nothing_is_stored(client, app, secret):
    create_stars(client)
    for update in (PRE_CHECKOUT, SUCCESSFUL_PAYMENT, {"update_id": 1, "message": {"text": "hi"}}):
        assert_error(send(client, update, secret), 401, "invalid_signature")
    assert rows(app, ProviderEvent) == [] and rows(app, OutboxMessage) == []
    assert status(client, "order-45")["status"] == "pending" and balance(client, BUYER) == 0


def test_without_configured_secret_updates_are_refused_with_503(make_app):
    client = make_app(TELEGRAM_BOT_TOKEN="123:abc").test_client()
    assert_error(send(client, SUCCESSFUL_PAYMENT, "anything"), 503, "not_configured")


STRING_AMOUNT = json.dumps(changed(SUCCESSFUL_PAYMENT, "successful_payment", total_amount="50")).encode()
NO_CHARGE_ID = json.dumps(changed(SUCCESSFUL_PAYMENT, "successful_payment", telegram_payment_charge_id=None)).encode()


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"message": {}}', b'{"update_id": "1"}',
                                  STRING_AMOUNT, NO_CHARGE_ID])
def test_malformed_update_with_correct_secret_is_400(client, app, body):
    response = client.post("/webhook/telegram", data=body, content_type="application/json",
                           headers={SECRET_HEADER: SECRET})
    assert_error(response, 400, "malformed_payload")
    assert rows(app, ProviderEvent) == []


# --- pre-checkout queries: answered in the webhook response itself ----------------------------------

def test_pre_checkout_is_answered_ok_in_the_webhook_response(client, app, telegram, clock):
    create_stars(client)
    started = time.perf_counter()
    response = send(client, PRE_CHECKOUT)
    elapsed_ms = (time.perf_counter() - started) * 1000
    # Recorded for the report only: timing assertions are not allowed.
    backend = app.config["SETTINGS"].database_url.split(":")[0]
    print(f"pre_checkout_query answered in {elapsed_ms:.1f} ms (test client, {backend})")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": "4382bfdwdsb323b2d9",
                                   "ok": True}
    assert not any(r.path.endswith("/answerPreCheckoutQuery") for r in telegram.requests)
    stored = event(app, "precheckout:4382bfdwdsb323b2d9")
    assert (stored.status, stored.claimed_order_id, stored.details) == (
        "ignored", "order-45", {"ok": True, "reason": None, "fromId": BUYER})
    assert status(client, "order-45")["status"] == "pending"


@pytest.mark.parametrize("update, prepare, reason", [
    (changed(PRE_CHECKOUT, "pre_checkout_query", invoice_payload="no-such-order"), None, "unknown_order"),
    (changed(PRE_CHECKOUT, "pre_checkout_query", total_amount=49), None, "amount_mismatch"),
    (changed(PRE_CHECKOUT, "pre_checkout_query", currency="USD"), None, "currency_mismatch"),
    (PRE_CHECKOUT, "paid", "already_paid"),
    (PRE_CHECKOUT, "expired", "expired"),
])
def test_pre_checkout_is_refused_with_a_reason(client, app, clock, update, prepare, reason):
    create_stars(client)
    if prepare == "paid":
        send(client, SUCCESSFUL_PAYMENT)
    elif prepare == "expired":
        clock.advance(seconds=900)
    response = send(client, update)
    assert response.status_code == 200 and response.mimetype == "application/json"
    answer = response.get_json()
    assert answer.pop("error_message")
    assert answer == {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": "4382bfdwdsb323b2d9", "ok": False}
    assert event(app, "precheckout:4382bfdwdsb323b2d9").details["reason"] == reason


def test_pre_checkout_for_an_order_of_another_provider_is_refused(client):
    create(client, orderId="order-45", amount=50)
    answer = send(client, PRE_CHECKOUT).get_json()
    assert answer["ok"] is False and "Telegram Stars" in answer["error_message"]


def test_repeated_pre_checkout_is_answered_again_and_stored_once(client, app):
    create_stars(client)
    assert send(client, PRE_CHECKOUT).get_json()["ok"] is True
    assert send(client, PRE_CHECKOUT).get_json()["ok"] is True
    assert len(rows(app, ProviderEvent)) == 1


# --- successful and refunded payments --------------------------------------------------------------

def test_successful_payment_fulfils_once(client, app, clock):
    create_stars(client)
    first = send(client, SUCCESSFUL_PAYMENT)
    assert first.status_code == 200
    assert first.get_json() == {"success": True, "eventId": first.get_json()["eventId"], "outcome": "processed",
                                "duplicate": False}
    second = send(client, SUCCESSFUL_PAYMENT).get_json()
    assert (second["outcome"], second["duplicate"]) == ("duplicate", True)
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    assert len(rows(app, LedgerEntry)) == 1
    stored = event(app, "charge:stxAbCdEf0123456789")
    assert (stored.provider_payment_id, stored.amount, stored.currency) == ("stxAbCdEf0123456789", 50, "XTR")


def test_payment_by_another_user_credits_the_buyer_the_order_names(client, app):
    create_stars(client, telegramId=42)
    assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "processed"
    assert balance(client, 42) == 500 and balance(client, BUYER) == 0
    assert event(app, "charge:stxAbCdEf0123456789").details == {"updateId": 900000002, "fromId": BUYER,
                                                                 "chatId": BUYER}


def test_payment_of_wrong_amount_is_held_as_mismatch(client, app):
    create_stars(client)
    update = changed(SUCCESSFUL_PAYMENT, "successful_payment", total_amount=5)
    assert send(client, update).get_json()["outcome"] == "mismatch"
    assert status(client, "order-45")["status"] == "pending" and balance(client, BUYER) == 0
    assert "amount 5" in event(app, "charge:stxAbCdEf0123456789").error


def test_payment_for_unknown_order_is_stored_unmatched(client, app):
    response = send(client, SUCCESSFUL_PAYMENT)
    assert response.status_code == 200 and response.get_json()["outcome"] == "unmatched"
    stored = event(app, "charge:stxAbCdEf0123456789")
    assert (stored.status, stored.claimed_order_id, stored.order_pk) == ("unmatched", "order-45", None)


def test_refund_reverses_the_credit_once(client, app):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    assert send(client, REFUNDED_PAYMENT).get_json()["outcome"] == "processed"
    assert send(client, REFUNDED_PAYMENT).get_json()["outcome"] == "duplicate"
    assert status(client, "order-45")["status"] == "refunded" and balance(client, BUYER) == 0
    assert sorted(e.amount for e in rows(app, LedgerEntry)) == [-500, 500]
    assert {f.kind for f in rows(app, Fulfilment)} == {"credit", "credit_reversal"}


def test_refund_of_a_second_charge_leaves_the_order_paid(client, app):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    second = changed(SUCCESSFUL_PAYMENT, "successful_payment", telegram_payment_charge_id="stxSecondCharge")
    assert send(client, second).get_json()["outcome"] == "conflict"
    refund = changed(REFUNDED_PAYMENT, "refunded_payment", telegram_payment_charge_id="stxSecondCharge")
    assert send(client, refund).get_json()["outcome"] == "ignored"
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    assert event(app, "refund:stxSecondCharge").details["reason"]


def test_refund_of_an_unknown_charge_changes_nothing(client, app):
    create_stars(client)
    assert send(client, REFUNDED_PAYMENT).get_json()["outcome"] == "ignored"
    assert status(client, "order-45")["status"] == "pending"


# --- other updates: acknowledged, forwarded to the bot's backend through the outbox -----------------

CALLBACK_BODY = ('{"update_id":900000010,"callback_query":{"id":"4382","from":{"id":5551234,"is_bot":false,'
                 '"first_name":"Иван"},"chat_instance":"-1","data":"menu:buy"}}').encode()


def test_other_updates_are_acknowledged_without_forward_url(client, app):
    response = client.post("/webhook/telegram", data=CALLBACK_BODY, content_type="application/json",
                           headers={SECRET_HEADER: SECRET})
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    assert rows(app, OutboxMessage) == [] and rows(app, ProviderEvent) == []


def test_other_updates_are_queued_for_the_bot_backend_byte_for_byte(make_app, telegram):
    app = make_app(TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_WEBHOOK_SECRET=SECRET,
                   TELEGRAM_FORWARD_URL="https://bot.example.test/telegram")
    client = app.test_client()
    for _ in range(2):
        response = client.post("/webhook/telegram", data=CALLBACK_BODY, content_type="application/json",
                               headers={SECRET_HEADER: SECRET})
        assert response.status_code == 200 and response.get_json() == {"ok": True}
    [message] = rows(app, OutboxMessage)
    assert (message.channel, message.kind, message.status) == ("telegram", "forward.update", "pending")
    assert message.payload == {"url": "https://bot.example.test/telegram", "body": CALLBACK_BODY.decode()}
    assert message.payload["body"].encode() == CALLBACK_BODY
    assert telegram.requests == [] and rows(app, ProviderEvent) == []


# --- concurrency: a real gunicorn with 2 workers ------------------------------------------------------

def test_concurrent_duplicate_payments_credit_once(app, client, base_env, telegram, tmp_path):
    from tests.support.live import LiveServer

    create_stars(client, orderId="order-live")
    update = telegram.successful_payment_update("order-live", 50, user_id=BUYER, charge_id="stxLiveCharge")
    env = {**base_env, "TELEGRAM_WEBHOOK_SECRET": SECRET}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        url = f"{live.url}/webhook/telegram"
        query = telegram.pre_checkout_update("order-live", 50, user_id=BUYER)
        started = time.perf_counter()
        answer = telegram.send_update(url, query, SECRET)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"pre_checkout_query answered over HTTP by gunicorn in {elapsed_ms:.1f} ms")
        query_id = query["pre_checkout_query"]["id"]
        assert answer.json() == {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": query_id, "ok": True}
        with ThreadPoolExecutor(max_workers=30) as pool:
            responses = list(pool.map(lambda _: telegram.send_update(url, update, SECRET, timeout=30), range(30)))
        assert [r.status_code for r in responses] == [200] * 30
        assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * 29 + ["processed"]
        assert requests.get(f"{live.url}/api/balance/{BUYER}", headers=AUTH, timeout=10).json()["balance"] == 500
    assert status(client, "order-live")["status"] == "paid"
    assert len(rows(app, LedgerEntry)) == 1
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(ProviderEvent)
                                  .where(ProviderEvent.event_key.like("charge:%"))).scalar_one() == 1
        assert db.session.execute(db.select(Order.status).where(Order.order_id == "order-live")).scalar_one() == "paid"


def test_a_refund_of_part_of_the_stars_is_flagged_not_a_full_reversal(client, app):
    create_stars(client)
    send(client, SUCCESSFUL_PAYMENT)
    partial = changed(REFUNDED_PAYMENT, "refunded_payment", total_amount=1)
    assert send(client, partial).get_json()["outcome"] == "conflict"
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    assert "1" in event(app, "refund:stxAbCdEf0123456789").error
