"""The Mini App's page and JSON API: init data auth, catalogue prices only, each buyer sees only their own."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from services.db import db
from services.models import Order
from tests.conftest import AUTH
from tests.helpers import assert_error, create, status
from tests.services.miniapp.vectors import TELEGRAM_BOT_ID, TELEGRAM_SIGNED
from tests.support.miniapp import BOT_TOKEN, buyer_init_data, write_catalog

ANN, BOB = 4242, 5353


@pytest.fixture
def catalog_file(tmp_path) -> str:
    return write_catalog(tmp_path)


@pytest.fixture
def app(make_app, catalog_file):
    return make_app(CATALOG_FILE=catalog_file, TELEGRAM_BOT_TOKEN=BOT_TOKEN)


def tma(telegram_id: int, clock, bot_token: str = BOT_TOKEN) -> dict[str, str]:
    return {"Authorization": f"tma {buyer_init_data(telegram_id, int(clock.now.timestamp()), bot_token)}"}


def buy(client, clock, telegram_id: int = ANN, product: str = "vpn-30", provider: str = "sbp", **extra):
    return client.post("/miniapp/api/orders", json={"productId": product, "provider": provider, **extra},
                       headers=tma(telegram_id, clock))


def bought(client, clock, telegram_id: int = ANN, **kwargs) -> dict:
    response = buy(client, clock, telegram_id, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def me(client, clock, telegram_id: int = ANN) -> dict:
    response = client.get("/miniapp/api/me", headers=tma(telegram_id, clock))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def sandbox_pay(client, created: dict) -> None:
    assert client.post(f"/sandbox/sbp/{created['qrcId']}/pay", headers=AUTH).status_code == 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/miniapp/"), ("GET", "/miniapp/api/catalog"), ("GET", "/miniapp/api/me"),
    ("POST", "/miniapp/api/orders"),
])
def test_without_a_catalogue_every_route_is_503(make_app, method, path):
    client = make_app(TELEGRAM_BOT_TOKEN=BOT_TOKEN).test_client()
    error = assert_error(client.open(path, method=method, json={}), 503, "not_configured")
    assert "CATALOG_FILE" in error["message"]


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": f"Bearer {AUTH['Authorization'].split()[1]}"}, id="bearer-token"),
    pytest.param({"Authorization": "tma "}, id="empty"),
    pytest.param({"Authorization": "tma query_id=1&auth_date=1&hash=00"}, id="forged"),
])
@pytest.mark.parametrize("method, path", [
    ("GET", "/miniapp/api/catalog"), ("GET", "/miniapp/api/me"), ("POST", "/miniapp/api/orders"),
])
def test_api_needs_init_data(client, clock, headers, method, path):
    response = client.open(path, method=method, json={"productId": "vpn-30", "provider": "sbp"}, headers=headers)
    assert_error(response, 401, "invalid_init_data")
    assert response.headers["WWW-Authenticate"] == "tma"


def test_init_data_of_another_bot_is_401(client, clock):
    response = client.get("/miniapp/api/me", headers=tma(ANN, clock, bot_token="654321:other-bot-token"))
    assert_error(response, 401, "invalid_init_data")


def test_tampered_init_data_is_401(client, clock):
    header = tma(ANN, clock)["Authorization"]
    forged = header.replace(f"%22id%22%3A{ANN}", f"%22id%22%3A{BOB}")
    assert forged != header
    assert_error(client.get("/miniapp/api/me", headers={"Authorization": forged}), 401, "invalid_init_data")


def test_init_data_expires_after_the_configured_age(make_app, catalog_file, clock):
    client = make_app(CATALOG_FILE=catalog_file, TELEGRAM_BOT_TOKEN=BOT_TOKEN, MINIAPP_AUTH_MAX_AGE="3600",
                      ).test_client()
    client.application.config["CLOCK"] = clock
    headers = tma(ANN, clock)
    clock.advance(seconds=3600)
    assert client.get("/miniapp/api/me", headers=headers).status_code == 200
    clock.advance(seconds=1)
    error = assert_error(client.get("/miniapp/api/me", headers=headers), 401, "invalid_init_data")
    assert "older than 3600 seconds" in error["message"]


def test_init_data_from_the_future_is_401(client, clock):
    headers = tma(ANN, clock)
    clock.advance(minutes=-5)
    assert_error(client.get("/miniapp/api/me", headers=headers), 401, "invalid_init_data")


def test_third_party_bot_is_checked_by_telegrams_signature(make_app, catalog_file, clock):
    client = make_app(CATALOG_FILE=catalog_file, MINIAPP_BOT_IDS=str(TELEGRAM_BOT_ID)).test_client()
    client.application.config["CLOCK"] = clock
    clock.now = datetime.fromtimestamp(TELEGRAM_SIGNED.auth_date + 60, timezone.utc)
    response = client.get("/miniapp/api/me", headers={"Authorization": f"tma {TELEGRAM_SIGNED.raw}"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["telegramId"] == TELEGRAM_SIGNED.telegram_id


def test_catalogue_lists_products_with_their_prices(client, clock):
    response = client.get("/miniapp/api/catalog", headers=tma(ANN, clock))
    assert response.status_code == 200
    body = response.get_json()
    assert body["unit"] == "NDN" and [p["id"] for p in body["products"]] == ["vpn-30", "credits-500"]
    vpn = body["products"][0]
    assert vpn["subscription"] == {"plan": "vpn", "days": 30} and vpn["credit"] == 100
    assert vpn["recurring"] is False
    assert vpn["prices"] == [{"provider": "sbp", "amount": 199, "currency": "RUB"},
                             {"provider": "cryptobot", "amount": 2.5, "currency": "USDT"},
                             {"provider": "telegram", "amount": 100, "currency": "XTR"}]
    # Exact decimals: "49.90" in the file is the JSON number 49.9, never 49.900000000000006.
    assert b'"amount":49.9,' in response.data


def test_order_is_an_ordinary_payment_for_the_buyer(client, clock):
    order = bought(client, clock)
    assert re.fullmatch(rf"ma-{ANN}-[0-9a-f]{{16}}", order["orderId"])
    assert (order["status"], order["provider"], order["amount"], order["currency"]) == ("pending", "sbp", 199, "RUB")
    assert order["qrcId"] and order["qrImage"].endswith(f"/api/payment/{order['orderId']}/qr.png")
    assert (order["telegramId"], order["credit"]) == (ANN, 100)
    assert order["metadata"] == {"productId": "vpn-30", "source": "miniapp"}
    assert status(client, order["orderId"])["status"] == "pending"


def test_every_order_gets_its_own_id(client, clock):
    first, second = bought(client, clock), bought(client, clock)
    assert first["orderId"] != second["orderId"] and first["qrcId"] != second["qrcId"]


def test_only_the_catalogue_decides_price_buyer_and_grant(client, clock, app):
    order = bought(client, clock, amount=1, price="0.01", currency="USD", telegramId=BOB, credit=10**6,
                   subscription={"plan": "vpn", "days": 3650}, orderId="mine", description="free")
    assert (order["amount"], order["currency"], order["telegramId"], order["credit"]) == (199, "RUB", ANN, 100)
    assert order["orderId"] != "mine"
    with app.app_context():
        stored = db.session.execute(db.select(Order).where(Order.order_id == order["orderId"])).scalar_one()
        assert (stored.amount, stored.currency, stored.telegram_id, stored.credit) == (199, "RUB", ANN, 100)
        assert (stored.subscription_plan, stored.subscription_days, stored.description) == ("vpn", 30,
                                                                                           "VPN, 30 days")


@pytest.mark.parametrize("body, field", [
    ({"productId": "vpn-90", "provider": "sbp"}, "productId"),
    ({"productId": "credits-500", "provider": "telegram"}, "provider"),
    ({"productId": "vpn-30", "provider": "bmc"}, "provider"),
    ({"productId": "vpn-30"}, "provider"),
    ({"provider": "sbp"}, "productId"),
    ({"productId": 30, "provider": "sbp"}, "productId"),
])
def test_order_for_something_not_on_sale_is_422(client, clock, body, field):
    response = client.post("/miniapp/api/orders", json=body, headers=tma(ANN, clock))
    assert field in assert_error(response, 422, "validation_error")["fields"]


def test_order_body_must_be_json(client, clock):
    assert_error(client.post("/miniapp/api/orders", data="productId=vpn-30", headers=tma(ANN, clock)), 415)


def test_stars_order_answers_with_the_invoice_link(make_app, catalog_file, clock, telegram):
    client = make_app(CATALOG_FILE=catalog_file, TELEGRAM_BOT_TOKEN=telegram.bot_token,
                      TELEGRAM_API_URL=telegram.api_url).test_client()
    client.application.config["CLOCK"] = clock
    response = client.post("/miniapp/api/orders", json={"productId": "vpn-30", "provider": "telegram"},
                           headers=tma(ANN, clock, bot_token=telegram.bot_token))
    assert response.status_code == 201, response.get_json()
    order = response.get_json()
    assert (order["amount"], order["currency"]) == (100, "XTR")
    invoice = telegram.invoice_links[order["invoiceLink"]]
    assert (invoice["amount"], invoice["payload"], invoice["title"]) == (100, order["orderId"], "VPN, 30 days")


def test_me_of_a_new_buyer_is_empty(client, clock):
    assert me(client, clock) == {"success": True, "telegramId": ANN, "balance": 0, "unit": "NDN",
                                 "subscription": None, "orders": []}


def test_paid_order_shows_in_balance_subscription_and_orders(client, clock):
    order = bought(client, clock)
    sandbox_pay(client, order)
    view = me(client, clock)
    assert view["balance"] == 100
    assert view["subscription"] == {"plan": "vpn", "expiresAt": "2026-12-23T10:00:00Z", "subscriptionUrl": None,
                                    "recurring": False}
    (shown,) = view["orders"]
    assert (shown["orderId"], shown["status"], shown["paidAt"]) == (order["orderId"], "paid", "2026-11-23T10:00:00Z")
    assert shown["purchaseId"]
    assert shown == {key: value for key, value in status(client, order["orderId"]).items() if key != "success"}


def test_a_buyer_sees_only_their_own_orders(client, clock):
    ann = [bought(client, clock, ANN)["orderId"] for _ in range(2)]
    bob = bought(client, clock, BOB, product="credits-500")
    sandbox_pay(client, bob)
    create(client, orderId="api-order", telegramId=7777, credit=5)
    ann_view, bob_view = me(client, clock, ANN), me(client, clock, BOB)
    assert sorted(order["orderId"] for order in ann_view["orders"]) == sorted(ann)
    assert [order["orderId"] for order in bob_view["orders"]] == [bob["orderId"]]
    assert (ann_view["balance"], bob_view["balance"]) == (0, 500)
    assert ann_view["subscription"] is None and bob_view["subscription"] is None
    assert me(client, clock, 7777)["orders"][0]["orderId"] == "api-order"


def test_me_lists_the_last_20_orders_newest_first(client, clock):
    ids = []
    for _ in range(22):
        ids.append(bought(client, clock, product="credits-500")["orderId"])
        clock.advance(seconds=1)
    assert [order["orderId"] for order in me(client, clock)["orders"]] == ids[::-1][:20]


def test_subscription_shown_is_the_one_running_longest(client, clock):
    sandbox_pay(client, create(client, orderId="short", telegramId=ANN, subscription={"plan": "lite", "days": 7},
                               ).get_json())
    sandbox_pay(client, bought(client, clock))
    assert me(client, clock)["subscription"]["plan"] == "vpn"
    clock.advance(days=1)
    assert me(client, clock)["subscription"]["expiresAt"] == (clock.now + timedelta(days=29)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_page_may_be_framed_by_telegram_only(client):
    response = client.get("/miniapp/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors https://web.telegram.org https://*.telegram.org" in policy
    assert "'unsafe-inline'" not in policy and "'none'" not in policy.split("frame-ancestors")[1]
    assert response.headers["X-Content-Type-Options"] == "nosniff" and "X-Frame-Options" not in response.headers
    page = response.get_data(as_text=True)
    assert '<script src="https://telegram.org/js/telegram-web-app.js"></script>' in page
    assert not re.search(r"<script>|<style>|style=", page)
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        with client.get(asset) as served:
            assert served.status_code == 200, asset


def test_api_answers_are_not_cached(client, clock):
    response = client.get("/miniapp/api/me", headers=tma(ANN, clock))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


RECURRING_CATALOG = """
[[products]]
id = "vpn-monthly"
title = "VPN, monthly"
subscription = { plan = "vpn", days = 30 }
recurring = true
[products.prices]
telegram = 100
sbp = "199.00"
"""
TG_SECRET = "tg_webhook_secret_0123456789abcdef-XYZ"


@pytest.fixture
def stars_client(make_app, tmp_path, clock, telegram):
    app = make_app(CATALOG_FILE=write_catalog(tmp_path, RECURRING_CATALOG), TELEGRAM_BOT_TOKEN=telegram.bot_token,
                   TELEGRAM_API_URL=telegram.api_url, TELEGRAM_WEBHOOK_SECRET=TG_SECRET)
    app.config["CLOCK"] = clock
    return app.test_client()


def first_charge(client, order_id: str, buyer: int) -> None:
    payment = {"currency": "XTR", "total_amount": 100, "invoice_payload": order_id, "is_recurring": True,
               "is_first_recurring": True, "telegram_payment_charge_id": f"stx-{order_id}",
               "provider_payment_charge_id": ""}
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": buyer, "type": "private"},
                                          "from": {"id": buyer, "is_bot": False}, "successful_payment": payment}}
    response = client.post("/webhook/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert response.get_json()["outcome"] == "processed"


def test_a_recurring_product_bought_with_stars_is_a_subscription_the_buyer_can_stop(stars_client, clock,
                                                                                    telegram):
    headers = tma(ANN, clock, bot_token=telegram.bot_token)
    order = stars_client.post("/miniapp/api/orders", json={"productId": "vpn-monthly", "provider": "telegram"},
                              headers=headers).get_json()
    assert telegram.invoice_links[order["invoiceLink"]]["subscription_period"] == 2_592_000
    first_charge(stars_client, order["orderId"], ANN)
    assert stars_client.get("/miniapp/api/me", headers=headers).get_json()["subscription"]["recurring"] is True
    other = tma(BOB, clock, bot_token=telegram.bot_token)
    assert stars_client.post("/miniapp/api/subscription/cancel", json={"orderId": order["orderId"]},
                             headers=other).status_code == 404
    assert stars_client.post("/miniapp/api/subscription/cancel", json={}, headers=other).status_code == 404
    response = stars_client.post("/miniapp/api/subscription/cancel", json={}, headers=headers)
    assert response.status_code == 200 and response.get_json()["orderId"] == order["orderId"]
    assert [edit["user_id"] for edit in telegram.subscription_edits] == [ANN]
    assert stars_client.get("/miniapp/api/me", headers=headers).get_json()["subscription"]["recurring"] is False


def test_a_recurring_product_bought_with_sbp_is_one_period(stars_client, clock, telegram):
    order = stars_client.post("/miniapp/api/orders", json={"productId": "vpn-monthly", "provider": "sbp"},
                              headers=tma(ANN, clock, bot_token=telegram.bot_token)).get_json()
    assert "recurring" not in order
