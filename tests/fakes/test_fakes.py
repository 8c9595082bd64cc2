"""The fakes agree with the PROTOCOLS.md vectors and behave like their providers."""

from __future__ import annotations

import hashlib
import re
import threading
import time

import pytest
import requests

from .cryptopay import crypto_pay_signature
from .marzban import FakeMarzban
from .merchant import standard_webhook_signature
from .tbank import crc16_ccitt_false, tbank_token

CP_TOKEN = "1234:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
CP_BODY = (
    b'{"update_id":1001,"update_type":"invoice_paid","request_date":"2026-11-23T10:00:00.000Z","payload":'
    b'{"invoice_id":528890,"hash":"IVXzFd0hcBdr","currency_type":"crypto","asset":"USDT","amount":"1.5",'
    b'"paid_asset":"USDT","paid_amount":"1.5","fee_asset":"USDT","fee_amount":"0.045",'
    b'"bot_invoice_url":"https://t.me/CryptoTestnetBot?start=IVXzFd0hcBdr","status":"paid",'
    b'"created_at":"2026-11-23T09:58:00.000Z","paid_at":"2026-11-23T09:59:59.000Z","paid_anonymously":false,'
    b'"allow_comments":true,"allow_anonymous":true,"payload":"order-42","paid_usd_rate":"1.00"}}'
)


@pytest.mark.parametrize(("params", "password", "expected"), [
    ({"TerminalKey": "MerchantTerminalKey", "Amount": 19200, "OrderId": "21090",
      "Description": "Подарочная карта на 1000 рублей"}, "usaf8fw8fsw21g",
     "0024a00af7c350a3a67ca168ce06502aa72772456662e38696d48b56ee9c97d9"),
    ({"TerminalKey": "1321054611234DEMO", "OrderId": "201709", "Success": True, "Status": "AUTHORIZED",
      "PaymentId": 8742591, "ErrorCode": "0", "Amount": 9855, "CardId": 322264, "Pan": "430000******0777",
      "ExpDate": "1122", "RebillId": 101709}, "Dfsfh56dgKl",
     "b906d28e76c6428e37b25fcf86c0adc52c63d503013fdd632e300593d165766b"),
    ({"TerminalKey": "TinkoffBankTest", "Amount": 10000, "OrderId": "order-44", "Description": "Test",
      "DATA": {"QR": "true"}}, "TinkoffBankTest",
     "6fddb7474d4c8744530074d0101effd6019e5c8964c65815baea489eda686dfd"),
    ({"TerminalKey": "TinkoffBankTest", "OrderId": "order-44", "Success": True, "Status": "CONFIRMED",
      "PaymentId": 13660, "ErrorCode": "0", "Amount": 10000, "CardId": 31, "Pan": "200000******0016",
      "ExpDate": "1130", "Token": "ignored"}, "TinkoffBankTest",
     "3fd40193d78a0e23c379220d2271cab27d7238354a1560a1996172e7e7ff1423"),
])
def test_tbank_token_vectors(params, password, expected):
    assert tbank_token(params, password) == expected


def test_crc16_vectors():
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    link = b"https://qr.nspk.ru/BD10003PNOIEHROP87BQ88PETSL1UAOE?type=02&bank=100000000004&sum=12300&cur=RUB"
    assert f"{crc16_ccitt_false(link):04X}" == "A72B"


def test_crypto_pay_signature_vector(cryptopay):
    assert hashlib.sha256(CP_TOKEN.encode()).hexdigest() == (
        "61b726e9c0b7a7381d4265b93c97402958e9f6dbb5b306c77835a2e194341315")
    expected = "a1019e81250d9bbce623545eced0342bf38abd994124d101a6a02d2c39b66fde"
    assert crypto_pay_signature(CP_TOKEN, CP_BODY) == expected
    assert cryptopay.sign(CP_BODY) == expected


def test_standard_webhook_signature_vector():
    assert standard_webhook_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                      1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


def _tb(tbank, method, **params):
    params = {"TerminalKey": tbank.terminal_key, **params}
    params["Token"] = tbank_token(params, tbank.password)
    return requests.post(f"{tbank.api_url}{method}", json=params, timeout=5)


def test_tbank_payment_flow(tbank, sink):
    init = _tb(tbank, "Init", Amount=10000, OrderId="order-44", Description="Test", DATA={"QR": "true"}).json()
    assert init["Success"] is True and init["Status"] == "NEW" and init["ErrorCode"] == "0"
    payment_id = init["PaymentId"]
    qr = _tb(tbank, "GetQr", PaymentId=payment_id, DataType="PAYLOAD").json()
    link = qr["Data"]
    m = re.fullmatch(r"https://qr\.nspk\.ru/([A-Z0-9]{32})\?type=02&bank=100000000004&sum=10000&cur=RUB&crc=([0-9A-F]{4})",
                     link)
    assert m and int(m.group(2), 16) == crc16_ccitt_false(link.split("&crc=")[0].encode())
    assert _tb(tbank, "GetQr", PaymentId=payment_id, DataType="IMAGE").json()["Data"].startswith("<svg")
    assert _tb(tbank, "GetState", PaymentId=payment_id).json()["Status"] == "NEW"
    resp = tbank.send_notification(f"{sink.url}/webhook/sbp/tbank", payment_id, "CONFIRMED")
    assert resp.status_code == 200 and resp.text == "OK"
    body = sink.wait_for(lambda r: r.path == "/webhook/sbp/tbank")[0].json
    assert body["Status"] == "CONFIRMED" and body["PaymentId"] == int(payment_id) and body["Success"] is True
    assert body["Token"] == tbank_token(body, "TinkoffBankTest")
    assert _tb(tbank, "GetState", PaymentId=payment_id).json()["Status"] == "CONFIRMED"


def test_tbank_rejects_bad_token_and_injects_failures(tbank):
    params = {"TerminalKey": tbank.terminal_key, "Amount": 10000, "OrderId": "o-1", "Token": "0" * 64}
    resp = requests.post(f"{tbank.api_url}Init", json=params, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["Success"] is False and resp.json()["ErrorCode"] == "204"
    assert not tbank.payments
    tbank.fail_next(1)
    assert _tb(tbank, "Init", Amount=10000, OrderId="o-1").status_code == 503
    assert _tb(tbank, "Init", Amount=10000, OrderId="o-1").json()["Success"] is True


def _cp(cryptopay, method, token=CP_TOKEN, **params):
    return requests.post(f"{cryptopay.api_url}{method}", json=params, timeout=5,
                         headers={"Crypto-Pay-API-Token": token})


def test_cryptopay_invoices_and_webhook(cryptopay, sink):
    inv = _cp(cryptopay, "createInvoice", asset="USDT", amount="1.5", payload="order-42", expires_in=900).json()
    assert inv["ok"] is True
    invoice = inv["result"]
    assert invoice["status"] == "active" and invoice["amount"] == "1.5" and invoice["payload"] == "order-42"
    assert invoice["bot_invoice_url"].startswith("https://t.me/")
    second = requests.get(f"{cryptopay.api_url}createInvoice", timeout=5,
                          params={"currency_type": "fiat", "fiat": "RUB", "amount": "100"},
                          headers={"Crypto-Pay-API-Token": CP_TOKEN}).json()["result"]
    assert second["invoice_id"] > invoice["invoice_id"] and second["fiat"] == "RUB"
    cryptopay.mark_paid(invoice["invoice_id"])
    items = _cp(cryptopay, "getInvoices", invoice_ids=f"{invoice['invoice_id']},{second['invoice_id']}",
                status="paid").json()["result"]["items"]
    assert [i["invoice_id"] for i in items] == [invoice["invoice_id"]]
    assert _cp(cryptopay, "getInvoices", status="expired").json()["error"]["code"] == 400
    resp = cryptopay.send_webhook(f"{sink.url}/webhook/cryptobot", invoice["invoice_id"])
    assert resp.status_code == 200
    received = sink.wait_for()[0]
    assert received.headers["crypto-pay-api-signature"] == crypto_pay_signature(CP_TOKEN, received.body)
    assert received.json["update_type"] == "invoice_paid"
    assert received.json["payload"]["status"] == "paid" and received.json["payload"]["payload"] == "order-42"


@pytest.mark.parametrize("params", [
    {"asset": "USDT", "amount": 1.5}, {"asset": "USDT", "amount": "-1"}, {"asset": "XYZ", "amount": "1"},
    {"currency_type": "fiat", "amount": "1"}, {"asset": "USDT", "amount": "1", "payload": "x" * 4097},
    {"asset": "USDT", "amount": "1", "expires_in": 0}, {"asset": "USDT", "amount": "1", "expires_in": 2678401},
])
def test_cryptopay_validates_create_invoice(cryptopay, params):
    resp = _cp(cryptopay, "createInvoice", **params)
    assert resp.status_code == 400 and resp.json()["ok"] is False


def test_cryptopay_rejects_wrong_token(cryptopay):
    resp = _cp(cryptopay, "getMe", token="1234:wrong")
    assert resp.status_code == 401
    assert resp.json() == {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}


def _tg(telegram, method, token=None, **params):
    return requests.post(f"{telegram.api_url}/bot{token or telegram.bot_token}/{method}", json=params, timeout=5)


def test_telegram_invoice_link_and_webhook(telegram, sink):
    prices = [{"label": "50 Stars", "amount": 50}]
    link = _tg(telegram, "createInvoiceLink", title="Credits", description="50 credits", payload="order-45",
               currency="XTR", prices=prices, provider_token="").json()["result"]
    assert link.startswith("https://t.me/$") and telegram.invoice_links[link]["payload"] == "order-45"
    for bad in ({"currency": "USD"}, {"prices": prices * 2}, {"payload": "x" * 129}, {"provider_token": "123:x"}):
        params = {"title": "T", "description": "D", "payload": "p", "currency": "XTR", "prices": prices, **bad}
        assert _tg(telegram, "createInvoiceLink", **params).status_code == 400
    assert _tg(telegram, "setWebhook", url="https://gw.example/webhook/telegram",
               secret_token="bad secret!").status_code == 400
    form = requests.post(f"{telegram.api_url}/bot{telegram.bot_token}/setWebhook", timeout=5,
                         data={"url": "https://gw.example/webhook/telegram", "secret_token": "s3cr3t_-X",
                               "allowed_updates": '["message","pre_checkout_query"]'})
    assert form.json()["ok"] is True and telegram.webhook["allowed_updates"] == ["message", "pre_checkout_query"]
    telegram.send_update(f"{sink.url}/webhook/telegram", telegram.pre_checkout_update("order-45", 50))
    assert sink.wait_for()[0].headers["x-telegram-bot-api-secret-token"] == "s3cr3t_-X"
    assert _tg(telegram, "answerPreCheckoutQuery", pre_checkout_query_id="q1", ok=True).json()["ok"] is True
    assert _tg(telegram, "refundStarPayment", user_id=1, telegram_payment_charge_id="stx1").json()["ok"]
    assert _tg(telegram, "refundStarPayment", user_id=1, telegram_payment_charge_id="stx1").status_code == 400


def test_telegram_messages_rate_limit_block_and_bad_token(telegram):
    assert _tg(telegram, "getMe", token="1:wrong").json() == {
        "ok": False, "error_code": 401, "description": "Unauthorized"}
    telegram.rate_limit_next(1, retry_after=3, method="sendMessage")
    limited = _tg(telegram, "sendMessage", chat_id=5551234, text="paid")
    assert limited.status_code == 429 and limited.json()["parameters"]["retry_after"] == 3
    first = _tg(telegram, "sendMessage", chat_id=5551234, text="paid").json()["result"]
    second = _tg(telegram, "sendMessage", chat_id="5551234", text="again").json()["result"]
    assert second["message_id"] > first["message_id"]
    assert [m["text"] for m in telegram.sent_messages(5551234)] == ["paid", "again"]
    telegram.block_chat(777)
    blocked = _tg(telegram, "sendMessage", chat_id=777, text="hi")
    assert blocked.status_code == 403 and blocked.json()["description"] == "Forbidden: bot was blocked by the user"
    assert telegram.sent_messages(777) == []


class _PanelClient:
    """Minimal client that re-logs in on 401, as the gateway must."""

    def __init__(self, panel: FakeMarzban) -> None:
        self.panel, self.token = panel, None

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        for _ in range(2):
            if self.token is None:
                login = requests.post(f"{self.panel.url}/api/admin/token", timeout=5,
                                      data={"username": self.panel.username, "password": self.panel.password})
                self.token = login.json()["access_token"]
            resp = requests.request(method, f"{self.panel.url}{path}", timeout=5,
                                    headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
            if resp.status_code != 401:
                return resp
            self.token = None
        return resp


def test_marzban_users_revoke_and_relogin(marzban):
    bad = requests.post(f"{marzban.url}/api/admin/token", data={"username": "admin", "password": "x"}, timeout=5)
    assert bad.status_code == 401
    client = _PanelClient(marzban)
    user = client.call("POST", "/api/user", json={"username": "tg_5551234", "proxies": {"vless": {}},
                                                  "expire": 1_900_000_000}).json()
    assert user["subscription_url"].startswith("/sub/") and user["expire"] == 1_900_000_000
    assert client.call("POST", "/api/user", json={"username": "tg_5551234", "proxies": {"vless": {}}}
                       ).status_code == 409
    marzban.expire_tokens()
    assert requests.get(f"{marzban.url}/api/user/tg_5551234", timeout=5,
                        headers={"Authorization": f"Bearer {client.token}"}).status_code == 401
    assert client.call("PUT", "/api/user/tg_5551234", json={"expire": 1_950_000_000}).json()["expire"] == 1_950_000_000
    assert marzban.logins == 2
    revoked = client.call("POST", "/api/user/tg_5551234/revoke_sub").json()
    assert revoked["proxies"]["vless"]["id"] != user["proxies"]["vless"]["id"]
    assert not marzban.subscription_is_current(user["subscription_url"])
    assert marzban.subscription_is_current(revoked["subscription_url"])
    assert client.call("GET", "/api/user/nobody").status_code == 404


def test_marzban_down_up_and_failures():
    with FakeMarzban(sub_prefix="https://sub.example.com") as panel:
        panel.add_user("alice")
        port = panel.port
        panel.down()
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{panel.url}/api/admin/token", data={"username": "admin"}, timeout=5)
        panel.up()
        assert panel.port == port
        panel.fail_next(1, status=502)
        client = _PanelClient(panel)
        with pytest.raises(ValueError):
            client.call("GET", "/api/user/alice")
        url = client.call("GET", "/api/user/alice").json()["subscription_url"]
        assert url.startswith("https://sub.example.com/sub/")


def _hook(merchant, body=b'{"type":"order.paid"}', msg_id="msg_1", ts=None, sig=None, secret=None):
    ts = int(time.time()) if ts is None else ts
    sig = sig or standard_webhook_signature(secret or merchant.secret, msg_id, ts, body)
    return requests.post(merchant.hook_url, data=body, timeout=5, headers={
        "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
        "webhook-signature": sig})


def test_merchant_verifies_signatures(merchant):
    assert _hook(merchant).status_code == 204
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    assert _hook(merchant, msg_id="msg_2", secret=other).status_code == 401
    assert _hook(merchant, msg_id="msg_3", ts=int(time.time()) - 3600).status_code == 401
    ts = int(time.time())
    rotated = " ".join([standard_webhook_signature(other, "msg_4", ts, b"{}"),
                        standard_webhook_signature(merchant.secret, "msg_4", ts, b"{}")])
    assert _hook(merchant, body=b"{}", msg_id="msg_4", ts=ts, sig=rotated).status_code == 204
    assert [(d.msg_id, d.valid) for d in merchant.deliveries()] == [
        ("msg_1", True), ("msg_2", False), ("msg_3", False), ("msg_4", True)]
    assert [d.msg_id for d in merchant.accepted()] == ["msg_1", "msg_4"]


def test_merchant_failures_then_delivery_and_wait(merchant):
    merchant.fail_next(2)
    assert [_hook(merchant).status_code for _ in range(3)] == [500, 500, 204]
    assert merchant.events() == [{"type": "order.paid"}]
    worker = threading.Thread(target=lambda: _hook(merchant, msg_id="msg_late").close())
    worker.start()
    assert merchant.wait_for_deliveries(2)[-1].msg_id == "msg_late"
    worker.join()
    with pytest.raises(TimeoutError):
        merchant.wait_for(lambda r: r.headers.get("webhook-id") == "never", timeout=0.05)


def test_delay_makes_client_time_out(sink):
    sink.delay_seconds = 5
    with pytest.raises(requests.ReadTimeout):
        requests.get(sink.url, timeout=(5, 0.2))
    assert sink.requests[0].status == 200
