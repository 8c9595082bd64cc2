"""Golden test: a fixed script through the real app, its HTTP answers and outbound calls compared byte for byte.

The script creates, pays, repeats, refunds and fails payments through every provider (SBP sandbox,
SBP via T-Bank, CryptoBot, Telegram Stars, Buy Me a Coffee), calls the admin API, then runs the
merchant and Telegram workers once. It talks to the gateway only through HTTP (the Flask test
client), the CLI runner and the fake provider servers of tests/fakes, on a frozen clock, so it
records behaviour, not module layout: a refactor that keeps behaviour keeps this file green.

Recorded for each step: the request; the response's status, headers (all but X-Request-ID and
Content-Length) and body; and every request the fakes received meanwhile (provider API calls,
merchant webhooks with webhook-id, webhook-timestamp and the exact body text, Telegram sendMessage
calls). A JSON body is kept parsed together with the encoding that reproduces its bytes exactly.

Values that differ between runs are replaced by placeholders numbered in order of first appearance
(`BD<qrcId#1>`, `<eventId#3>`, `msg_<outboxId#2>`), the same everywhere, merchant webhook bodies
included: random qrcIds (their two-letter prefix kept), Crypto Pay invoice hashes and Telegram
invoice links minted by the fakes, and database row ids (which differ between SQLite and
PostgreSQL, where sequences are not reset between tests). An NSPK link's crc is checked
and recorded as `<valid crc>`. A merchant webhook's signature is checked with the standardwebhooks
package against the real id and body, and recorded recomputed over the normalised id and body.

The SBP sandbox is paid through POST /sandbox/sbp/{qrcId}/pay, which has no signed body: a wrong
bearer token and an unknown qrcId stand in for the bad signature and the unknown order, and it has
no malformed-JSON or amount-mismatch case. CryptoBot and the sandbox have no refunds.

The comparison is exact; a failure lists the steps that differ and shows a diff whose `?` lines
point at the characters that changed.

To rewrite the golden file after an intended change (review its diff before committing):

    UPDATE_GOLDEN=1 python -m pytest tests/golden
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.conftest import AUTH, FrozenClock
from tests.fakes import FakeCryptoPay, FakeMerchant, FakeTBank, FakeTelegram, crypto_pay_signature, tbank_token
from tests.golden.recording import Recorder, check_golden

GOLDEN = Path(__file__).with_name("scripted_run.json")

ADMIN_KEY = "golden-admin-key-0123456789abcdef0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TELEGRAM_SECRET = "golden_telegram_secret_0123456789abcdef"
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BMC_SECRET = "golden_bmc_secret_0123456789abcdef0123456789"
BMC_PAGE = "https://buymeacoffee.com/golden"

# Buyers, one per provider so each balance tells its own story.
SBP_BUYER, TBANK_BUYER, CRYPTO_BUYER, STARS_BUYER, BMC_BUYER = 1001, 1002, 1003, 5551234, 1005


@dataclass
class Run:
    rec: Recorder
    clock: FrozenClock
    sandbox: Any  # test client of the app with SBP_GATEWAY=sandbox (and every other provider)
    tbank_client: Any  # test client of the app with SBP_GATEWAY=tbank (same database)
    tbank: FakeTBank
    cryptopay: FakeCryptoPay

    def api(self, step: str, method: str, path: str, body: Any = None, client: Any = None, headers=AUTH):
        return self.rec.http(client or self.sandbox, step, method, path, json_body=body, headers=headers)

    def create(self, step: str, client: Any = None, **body: Any):
        response = self.api(step, "POST", "/api/payment", body, client)
        if response.is_json and isinstance(response.get_json(), dict) and response.get_json().get("qrcId"):
            self.rec.note_token(response.get_json()["qrcId"], "qrcId", keep=2)
        return response

    def settled(self, label: str, order_id: str, buyer: int, client: Any = None) -> None:
        """GET /api/status and /api/balance, as after every settlement."""
        self.api(f"{label}: status", "GET", f"/api/status/{order_id}", client=client)
        self.api(f"{label}: balance", "GET", f"/api/balance/{buyer}", client=client)

    def stamp(self, seconds: int = 0) -> str:
        """An ISO time as Crypto Pay writes it, on the frozen clock."""
        moment = self.clock.now + timedelta(seconds=seconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def compact(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --- the providers' webhooks, signed as each provider signs them ----------------------------------------------

def cryptobot_post(run: Run, step: str, body: bytes, signature: str | None = None):
    sig = crypto_pay_signature(run.cryptopay.token, body) if signature is None else signature
    return run.rec.http(run.sandbox, step, "POST", "/webhook/cryptobot", raw=body, content_type="application/json",
                        headers={"crypto-pay-api-signature": sig})


def paid_invoice(run: Run, order_id: str, **paid: str) -> dict[str, Any]:
    """The fake's invoice for the order, marked paid, its times set from the frozen clock."""
    invoice_id = next(i for i, inv in run.cryptopay.invoices.items() if inv.get("payload") == order_id)
    invoice = run.cryptopay.mark_paid(invoice_id, **paid)
    invoice.update(created_at=run.stamp(-60), paid_at=run.stamp(), expiration_date=run.stamp(840))
    return invoice


def invoice_update(run: Run, update_id: int, invoice: dict[str, Any]) -> bytes:
    return compact({"update_id": update_id, "update_type": "invoice_paid", "request_date": run.stamp(),
                    "payload": invoice})


def bmc_signature(body: bytes) -> str:
    return hmac.new(BMC_SECRET.encode(), body, hashlib.sha256).hexdigest()


def bmc_post(run: Run, step: str, body: bytes, signature: str | None = None):
    sig = bmc_signature(body) if signature is None else signature
    return run.rec.http(run.sandbox, step, "POST", "/bmc-webhook", raw=body, content_type="application/json",
                        headers={"X-Signature-Sha256": sig})


def bmc_event(event_type: str, event_id: int, attempt: int = 1, **data: Any) -> bytes:
    fields = {"id": event_id, "amount": 5, "currency": "USD", "status": "succeeded", "message": "",
              "support_note": "", "supporter_name": "John", "supporter_email": "john@example.com",
              "transaction_id": f"pi_golden_{event_id}", "coffee_count": 1, "coffee_price": "5.0000",
              "refunded": "false", **data}
    return compact({"type": event_type, "live_mode": True, "attempt": attempt, "created": 1763892000,
                    "event_id": event_id, "data": fields})


def telegram_post(run: Run, step: str, body: bytes, secret: str | None = TELEGRAM_SECRET):
    headers = {TELEGRAM_SECRET_HEADER: secret} if secret is not None else {}
    return run.rec.http(run.sandbox, step, "POST", "/webhook/telegram", raw=body, content_type="application/json",
                        headers=headers)


def stars_message(run: Run, update_id: int, section: str, fields: dict[str, Any]) -> bytes:
    user = {"id": STARS_BUYER, "is_bot": False, "first_name": "Ivan", "language_code": "ru"}
    return compact({"update_id": update_id, "message": {
        "message_id": update_id % 1000, "date": int(run.clock.now.timestamp()),
        "chat": {"id": STARS_BUYER, "type": "private", "first_name": "Ivan"}, "from": user, section: fields}})


def stars_payment(run: Run, update_id: int, order_id: str, stars: int, charge_id: str) -> bytes:
    return stars_message(run, update_id, "successful_payment", {
        "currency": "XTR", "total_amount": stars, "invoice_payload": order_id,
        "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""})


def pre_checkout(update_id: int, query_id: str, order_id: str, stars: int) -> bytes:
    return compact({"update_id": update_id, "pre_checkout_query": {
        "id": query_id, "from": {"id": STARS_BUYER, "is_bot": False, "first_name": "Ivan"},
        "currency": "XTR", "total_amount": stars, "invoice_payload": order_id}})


def tbank_post(run: Run, step: str, body: dict[str, Any] | bytes):
    raw = body if isinstance(body, bytes) else compact(body)
    return run.rec.http(run.tbank_client, step, "POST", "/webhook/sbp/tbank", raw=raw, content_type="application/json")


# --- the script -------------------------------------------------------------------------------------------------

def sbp_sandbox(run: Run) -> None:
    run.api("api: no bearer token is 401", "POST", "/api/payment", {"amount": 100, "orderId": "sbp-1"}, headers={})
    body = {"amount": 100, "orderId": "sbp-1", "telegramId": SBP_BUYER, "credit": 100,
            "description": "VPN month", "metadata": {"zeta": 1, "alpha": "первый"}}
    qrc_id = run.create("sbp sandbox: create", **body).get_json()["qrcId"]
    run.create("sbp sandbox: identical repeat", **body)
    run.create("sbp sandbox: conflicting repeat", **{**body, "amount": 150})
    run.create("sbp sandbox: validation error (USD)", **{**body, "orderId": "sbp-usd", "currency": "USD"})
    run.api("sbp sandbox: pay with a wrong bearer token", "POST", f"/sandbox/sbp/{qrc_id}/pay",
            headers={"Authorization": "Bearer wrong"})
    run.api("sbp sandbox: pay", "POST", f"/sandbox/sbp/{qrc_id}/pay")
    run.api("sbp sandbox: pay again (duplicate)", "POST", f"/sandbox/sbp/{qrc_id}/pay")
    run.api("sbp sandbox: pay an unknown qrcId", "POST", "/sandbox/sbp/BDUNKNOWN/pay")
    run.settled("sbp sandbox: after payment", "sbp-1", SBP_BUYER)
    sub = run.create("sbp sandbox: create a subscription order", amount="99.90", orderId="sbp-sub",
                     telegramId=SBP_BUYER, subscription={"plan": "pro", "days": 30}).get_json()
    run.api("sbp sandbox: pay the subscription", "POST", f"/sandbox/sbp/{sub['qrcId']}/pay")
    run.settled("sbp sandbox: after the subscription", "sbp-sub", SBP_BUYER)


def sbp_tbank(run: Run) -> None:
    client = run.tbank_client
    body = {"amount": "250.50", "orderId": "tbank-1", "telegramId": TBANK_BUYER, "credit": 250}
    run.create("tbank: create (Init + GetQr)", client, **body)
    run.create("tbank: identical repeat", client, **body)
    run.create("tbank: conflicting repeat", client, **{**body, "credit": 300})
    run.create("tbank: validation error (EUR)", client, **{**body, "orderId": "tbank-eur", "currency": "EUR"})
    payment_id = run.tbank.payment_by_order("tbank-1")["PaymentId"]
    confirmed = run.tbank.notification(payment_id, "CONFIRMED")
    tbank_post(run, "tbank: CONFIRMED with a bad Token", {**confirmed, "Token": "0" * 64})
    tbank_post(run, "tbank: malformed JSON", b"{oops")
    tbank_post(run, "tbank: CONFIRMED", confirmed)
    tbank_post(run, "tbank: CONFIRMED again (duplicate)", confirmed)
    run.settled("tbank: after payment", "tbank-1", TBANK_BUYER, client)
    unknown = {"TerminalKey": run.tbank.terminal_key, "OrderId": "tbank-unknown", "Success": True,
               "Status": "CONFIRMED", "PaymentId": 999, "ErrorCode": "0", "Amount": 10000}
    unknown["Token"] = tbank_token(unknown, run.tbank.password)
    tbank_post(run, "tbank: CONFIRMED for an unknown order", unknown)
    run.create("tbank: create a second order", client, amount=120, orderId="tbank-2", telegramId=TBANK_BUYER,
               credit=120)
    second = run.tbank.payment_by_order("tbank-2")["PaymentId"]
    tbank_post(run, "tbank: CONFIRMED with the wrong amount", run.tbank.notification(second, "CONFIRMED", Amount=100))
    run.settled("tbank: after the amount mismatch", "tbank-2", TBANK_BUYER, client)
    tbank_post(run, "tbank: REFUNDED", run.tbank.notification(payment_id, "REFUNDED"))
    run.settled("tbank: after the refund", "tbank-1", TBANK_BUYER, client)


def cryptobot(run: Run) -> int:
    """Returns the event id of the payment for an unknown order, for the admin to assign."""
    body = {"amount": "1.5", "orderId": "cb-1", "provider": "cryptobot", "currency": "USDT",
            "telegramId": CRYPTO_BUYER, "credit": 150, "description": "Crypto credits"}
    # createInvoice's expires_in is 1 in the golden file: the provider measures it against the wall clock,
    # not app.config["CLOCK"], and the frozen clock is in the past (the real one only moves away from it).
    run.create("cryptobot: create (createInvoice)", **body)
    run.create("cryptobot: identical repeat", **body)
    run.create("cryptobot: conflicting repeat", **{**body, "currency": "TON"})
    run.create("cryptobot: validation error (XTR)", **{**body, "orderId": "cb-xtr", "currency": "XTR"})
    paid = invoice_update(run, 2001, paid_invoice(run, "cb-1"))
    cryptobot_post(run, "cryptobot: invoice_paid with a bad signature", paid, "0" * 64)
    cryptobot_post(run, "cryptobot: malformed JSON, validly signed", b"{not json")
    cryptobot_post(run, "cryptobot: invoice_paid", paid)
    cryptobot_post(run, "cryptobot: invoice_paid again (duplicate)", paid)
    run.settled("cryptobot: after payment", "cb-1", CRYPTO_BUYER)
    unknown = {"invoice_id": 777, "hash": "IVgolden0777", "currency_type": "crypto", "asset": "USDT", "amount": "5",
               "status": "paid", "paid_asset": "USDT", "paid_amount": "5", "payload": "cb-unknown",
               "created_at": run.stamp(-60), "paid_at": run.stamp()}
    unmatched = cryptobot_post(run, "cryptobot: invoice_paid for an unknown order",
                               invoice_update(run, 2002, unknown)).get_json()["eventId"]
    run.create("cryptobot: create a second order", amount=2, orderId="cb-2", provider="cryptobot", currency="USDT",
               telegramId=CRYPTO_BUYER, credit=200)
    cryptobot_post(run, "cryptobot: invoice_paid with the wrong amount",
                   invoice_update(run, 2003, paid_invoice(run, "cb-2", paid_amount="1.9")))
    run.settled("cryptobot: after the amount mismatch", "cb-2", CRYPTO_BUYER)
    run.create("cryptobot: create a subscription order", amount=10, orderId="cb-sub", provider="cryptobot",
               currency="USD", telegramId=CRYPTO_BUYER, subscription={"plan": "gold", "days": 90})
    cryptobot_post(run, "cryptobot: the subscription's invoice_paid (fiat, paid in TON)",
                   invoice_update(run, 2004, paid_invoice(run, "cb-sub", paid_asset="TON", paid_amount="3.1")))
    run.settled("cryptobot: after the subscription", "cb-sub", CRYPTO_BUYER)
    return unmatched


def telegram_stars(run: Run) -> None:
    body = {"amount": 50, "orderId": "tg-1", "provider": "telegram", "currency": "XTR",
            "telegramId": STARS_BUYER, "credit": 500, "description": "500 credits"}
    run.create("telegram: create (createInvoiceLink)", **body)
    run.create("telegram: identical repeat", **body)
    run.create("telegram: conflicting repeat", **{**body, "amount": 60})
    run.create("telegram: validation error (fractional Stars)", **{**body, "orderId": "tg-frac", "amount": "50.5"})
    telegram_post(run, "telegram: pre_checkout_query, ok", pre_checkout(900000101, "golden-pcq-1", "tg-1", 50))
    telegram_post(run, "telegram: pre_checkout_query, wrong amount (not ok)",
                  pre_checkout(900000102, "golden-pcq-2", "tg-1", 49))
    payment = stars_payment(run, 900000103, "tg-1", 50, "stxGoldenCharge1")
    telegram_post(run, "telegram: successful_payment with a wrong secret", payment, "wrong-secret")
    telegram_post(run, "telegram: malformed JSON", b"{not json")
    telegram_post(run, "telegram: successful_payment", payment)
    telegram_post(run, "telegram: successful_payment again (duplicate)", payment)
    run.settled("telegram: after payment", "tg-1", STARS_BUYER)
    telegram_post(run, "telegram: successful_payment for an unknown order",
                  stars_payment(run, 900000104, "tg-unknown", 25, "stxGoldenUnknown"))
    run.create("telegram: create a second order", amount=30, orderId="tg-2", provider="telegram", currency="XTR",
               telegramId=STARS_BUYER, credit=300)
    telegram_post(run, "telegram: successful_payment with the wrong amount",
                  stars_payment(run, 900000105, "tg-2", 5, "stxGoldenCharge2"))
    run.settled("telegram: after the amount mismatch", "tg-2", STARS_BUYER)
    refund = stars_message(run, 900000106, "refunded_payment", {
        "currency": "XTR", "total_amount": 50, "invoice_payload": "tg-1",
        "telegram_payment_charge_id": "stxGoldenCharge1"})
    telegram_post(run, "telegram: refunded_payment", refund)
    telegram_post(run, "telegram: refunded_payment again (duplicate)", refund)
    run.settled("telegram: after the refund", "tg-1", STARS_BUYER)


def buy_me_a_coffee(run: Run) -> int:
    """Returns the event id of a donation that names no order, for the admin to assign."""
    body = {"amount": 5, "orderId": "bmc-1", "provider": "bmc", "telegramId": BMC_BUYER, "credit": 50}
    run.create("bmc: create (instructions)", **body)
    run.create("bmc: identical repeat", **body)
    run.create("bmc: conflicting repeat", **{**body, "amount": 6})
    run.create("bmc: validation error (EUR)", **{**body, "orderId": "bmc-eur", "currency": "EUR"})
    donation = bmc_event("donation.created", 101, message="bmc-1 thanks!", support_note="bmc-1 thanks!")
    bmc_post(run, "bmc: donation with a bad signature", donation, "0" * 64)
    bmc_post(run, "bmc: malformed JSON, validly signed", b"{not json")
    bmc_post(run, "bmc: donation naming the order", donation)
    bmc_post(run, "bmc: the same event retried (duplicate)", bmc_event(
        "donation.created", 101, attempt=2, message="bmc-1 thanks!", support_note="bmc-1 thanks!"))
    run.settled("bmc: after payment", "bmc-1", BMC_BUYER)
    unmatched = bmc_post(run, "bmc: donation naming no order", bmc_event(
        "donation.created", 102, amount="3.00", message="love your work", support_note="love your work")
    ).get_json()["eventId"]
    run.create("bmc: create a second order", amount=10, orderId="bmc-2", provider="bmc", telegramId=BMC_BUYER,
               credit=100)
    bmc_post(run, "bmc: donation with the wrong amount", bmc_event(
        "donation.created", 103, amount="9.99", message="for bmc-2", support_note="for bmc-2"))
    run.settled("bmc: after the amount mismatch", "bmc-2", BMC_BUYER)
    bmc_post(run, "bmc: donation.refunded", bmc_event(
        "donation.refunded", 104, transaction_id="pi_golden_101", refunded="true"))
    run.settled("bmc: after the refund", "bmc-1", BMC_BUYER)
    return unmatched


def admin(run: Run, crypto_unmatched: int, bmc_unmatched: int, processed_event: int) -> None:
    run.api("admin: replay without the admin key", "POST", "/admin/orders/cb-1/replay")
    run.api("admin: replay a paid order", "POST", "/admin/orders/cb-1/replay", headers=ADMIN)
    run.api("admin: replay a refunded order", "POST", "/admin/orders/tg-1/replay", headers=ADMIN)
    run.api("admin: replay an unknown order", "POST", "/admin/orders/no-such-order/replay", headers=ADMIN)
    run.create("admin: create the order the unknown crypto payment was for", amount=5, orderId="cb-assign",
               provider="cryptobot", currency="USDT", telegramId=CRYPTO_BUYER, credit=5)
    path = f"/admin/events/{crypto_unmatched}/assign"
    run.api("admin: assign the unmatched crypto payment", "POST", path, {"orderId": "cb-assign"}, headers=ADMIN)
    run.api("admin: assign it again (already assigned)", "POST", path, {"orderId": "cb-assign"}, headers=ADMIN)
    run.settled("admin: after the assignment", "cb-assign", CRYPTO_BUYER)
    run.create("admin: create the order the anonymous donation was for", amount=3, orderId="bmc-assign",
               provider="bmc", telegramId=BMC_BUYER, credit=30)
    run.api("admin: assign the unmatched donation", "POST", f"/admin/events/{bmc_unmatched}/assign",
            {"orderId": "bmc-assign"}, headers=ADMIN)
    run.settled("admin: after the donation's assignment", "bmc-assign", BMC_BUYER)
    run.api("admin: assign a processed payment (conflict)", "POST", f"/admin/events/{processed_event}/assign",
            {"orderId": "cb-2"}, headers=ADMIN)
    run.api("admin: assign with a malformed body", "POST", f"/admin/events/{crypto_unmatched}/assign",
            {"orderId": "bad id!"}, headers=ADMIN)


def workers(run: Run, app) -> None:
    run.rec.cli(app, "merchant worker, once", ["worker", "run", "--provider", "merchant", "--once"])
    run.rec.cli(app, "telegram worker, once", ["worker", "run", "--provider", "telegram", "--once"])
    run.rec.cli(app, "merchant worker again: nothing left to send",
                ["worker", "run", "--provider", "merchant", "--once"])


def test_scripted_run_matches_the_golden_file(make_app, cryptopay: FakeCryptoPay, telegram: FakeTelegram,
                                              tbank: FakeTBank, merchant: FakeMerchant):
    merchant.tolerance_seconds = None  # webhook-timestamp comes from the frozen clock, not the real one
    env = {"CRYPTOBOT_TOKEN": cryptopay.token, "CRYPTOBOT_API_URL": cryptopay.api_url,
           "TELEGRAM_BOT_TOKEN": telegram.bot_token, "TELEGRAM_API_URL": telegram.api_url,
           "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET, "BMC_WEBHOOK_SECRET": BMC_SECRET, "BMC_PAGE_URL": BMC_PAGE,
           "MERCHANT_WEBHOOK_URL": merchant.hook_url, "MERCHANT_WEBHOOK_SECRET": merchant.secret,
           "ADMIN_API_KEY": ADMIN_KEY}
    sandbox_app = make_app(**env)
    tbank_app = make_app(**env, SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key,
                         TBANK_PASSWORD=tbank.password, TBANK_API_URL=tbank.api_url)
    clock = FrozenClock()
    sandbox_app.config["CLOCK"] = tbank_app.config["CLOCK"] = clock
    fakes = {"tbank": tbank, "cryptopay": cryptopay, "telegram": telegram, "merchant": merchant}
    rec = Recorder(clock, fakes, merchant.secret)
    run = Run(rec, clock, sandbox_app.test_client(), tbank_app.test_client(), tbank, cryptopay)

    sbp_sandbox(run)
    sbp_tbank(run)
    crypto_unmatched = cryptobot(run)
    telegram_stars(run)
    bmc_unmatched = buy_me_a_coffee(run)
    processed = next(step["response"]["json"]["eventId"] for step in rec.steps
                     if step["step"] == "cryptobot: invoice_paid")
    admin(run, crypto_unmatched, bmc_unmatched, processed)
    workers(run, sandbox_app)

    for invoice in cryptopay.invoices.values():
        rec.note_token(invoice["hash"], "cryptoInvoiceHash")
    for link in telegram.invoice_links:
        rec.note_token(link.rsplit("$", 1)[1], "starsInvoiceLink")
    for payment in tbank.payments.values():
        rec.note_token(payment["QrcId"] or "", "qrcId", keep=2)
    check_golden(GOLDEN, rec.normalised())
