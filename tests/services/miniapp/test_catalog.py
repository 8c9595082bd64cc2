"""The catalogue file: the SPEC's example, TOML and JSON, and one clear line for each kind of mistake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from services.miniapp.catalog import CatalogError, Price, Subscription, load_catalog, parse_catalog
from tests.support.miniapp import BOT_TOKEN, write_catalog
from webhook_config import ConfigError, load_settings

INSTANCE = Path("/tmp/instance")

SPEC_EXAMPLE = """
[[products]]
id = "vpn-30"                      # [A-Za-z0-9_.:-], unique
title = "VPN, 30 days"
description = "All locations, 3 devices"   # optional
subscription = { plan = "vpn", days = 30 } # optional: what it activates or extends
credit = 0                         # optional: CREDIT_UNIT added to the balance
recurring = false                  # optional
[products.prices]                  # at least one; the providers it can be bought with
sbp = "199.00"                     # RUB
yookassa = "199.00"                # RUB
telegram = 100                     # whole Stars
cryptobot = { amount = "2.5", currency = "USDT" }
"""


def product(**fields) -> dict:
    """One valid product as parsed TOML, with fields replaced (None removes one)."""
    entry = {"id": "p1", "title": "Thing", "credit": 10, "prices": {"sbp": "10.00"}, **fields}
    return {key: value for key, value in entry.items() if value is not None}


def test_spec_example_is_read_with_exact_prices(tmp_path):
    catalog = load_catalog(Path(write_catalog(tmp_path, SPEC_EXAMPLE)))
    (vpn,) = catalog.products
    assert (vpn.id, vpn.title, vpn.description) == ("vpn-30", "VPN, 30 days", "All locations, 3 devices")
    assert vpn.subscription == Subscription("vpn", 30)
    assert (vpn.credit, vpn.recurring) == (None, False)
    # In the registry's order, the order of the buy buttons.
    assert vpn.prices == (Price("sbp", Decimal("199.00"), "RUB"), Price("cryptobot", Decimal("2.5"), "USDT"),
                          Price("telegram", Decimal(100), "XTR"), Price("yookassa", Decimal("199.00"), "RUB"))
    assert all(type(price.amount) is Decimal for price in vpn.prices)
    assert catalog.product("vpn-30") is vpn and catalog.product("vpn-31") is None
    assert vpn.price("telegram").amount == 100 and vpn.price("bmc") is None


def test_json_with_the_same_structure_reads_the_same(tmp_path):
    toml = load_catalog(Path(write_catalog(tmp_path, SPEC_EXAMPLE)))
    document = {"products": [{"id": "vpn-30", "title": "VPN, 30 days", "description": "All locations, 3 devices",
                              "subscription": {"plan": "vpn", "days": 30}, "credit": 0, "recurring": False,
                              "prices": {"sbp": "199.00", "yookassa": "199.00", "telegram": 100,
                                         "cryptobot": {"amount": "2.5", "currency": "USDT"}}}]}
    assert load_catalog(Path(write_catalog(tmp_path, json.dumps(document), "catalog.json"))) == toml


def test_recurring_product_with_a_30_day_subscription_and_a_stars_price():
    catalog = parse_catalog({"products": [product(recurring=True, subscription={"plan": "vpn", "days": 30},
                                                  prices={"telegram": 100})]})
    assert catalog.products[0].recurring is True


@pytest.mark.parametrize("entry, message", [
    (product(id="bad id"), "product #2: id must be 1-64 characters"),
    (product(id=None), "product #2: id must be"),
    (product(title=""), "product 'p1': title must be a non-empty string"),
    (product(title=None), "product 'p1': title must be"),
    (product(description=3), "product 'p1': description must be"),
    (product(subscripton={"plan": "x", "days": 1}), "product 'p1': unknown field subscripton"),
    (product(subscription={"plan": "vpn"}), "product 'p1': subscription must be a table of plan and days"),
    (product(subscription={"plan": "vpn", "days": "30"}), "product 'p1': subscription.days must be a whole"),
    (product(subscription={"plan": "vpn", "days": 0}), "product 'p1': subscription.days must be a whole"),
    (product(subscription={"plan": "", "days": 30}), "product 'p1': subscription.plan must be"),
    (product(credit=-1), "product 'p1': credit must be a whole number"),
    (product(credit=True), "product 'p1': credit must be a whole number"),
    (product(credit=Decimal("1.5")), "product 'p1': credit must be a whole number"),
    (product(credit=0), "product 'p1': grants nothing"),
    (product(recurring="yes"), "product 'p1': recurring must be true or false"),
    (product(recurring=True, prices={"telegram": 100}), "product 'p1': recurring needs a subscription of exactly 30"),
    (product(recurring=True, subscription={"plan": "v", "days": 31}, prices={"telegram": 1}),
     "product 'p1': recurring needs a subscription of exactly 30 days"),
    (product(recurring=True, subscription={"plan": "v", "days": 30}), "product 'p1': recurring needs a telegram"),
    (product(prices=None), "product 'p1': prices must be a table with at least one"),
    (product(prices={}), "product 'p1': prices must be a table with at least one"),
    (product(prices={"paypal": "1.00"}), "product 'p1': prices.paypal is not a provider"),
    (product(prices={"sbp": Decimal("199.00")}), "product 'p1': prices.sbp must be a decimal string such as "
                                                 "\"199.00\", got the number 199.00"),
    (product(prices={"sbp": 199}), "product 'p1': prices.sbp must be a decimal string"),
    (product(prices={"sbp": "199.001"}), "product 'p1': prices.sbp must have at most 2 decimal places for RUB"),
    (product(prices={"yookassa": "1e3"}), "product 'p1': prices.yookassa must be a decimal string"),
    (product(prices={"sbp": "-5"}), "product 'p1': prices.sbp must be a decimal string"),
    (product(prices={"sbp": "0.00"}), "product 'p1': prices.sbp must be greater than 0"),
    (product(prices={"sbp": "NaN"}), "product 'p1': prices.sbp must be a decimal string"),
    (product(prices={"telegram": "100"}), "product 'p1': prices.telegram must be a whole number of Stars"),
    (product(prices={"telegram": Decimal("1.5")}), "product 'p1': prices.telegram must be a whole number"),
    (product(prices={"telegram": 0}), "product 'p1': prices.telegram must be a whole number"),
    (product(prices={"cryptobot": "2.5"}), "product 'p1': prices.cryptobot must be a table of amount and currency"),
    (product(prices={"cryptobot": {"amount": "2.5", "currency": "DOGECOIN"}}),
     "product 'p1': prices.cryptobot.currency must be a Crypto Pay asset"),
    (product(prices={"cryptobot": {"amount": "2.123456789", "currency": "USDT"}}),
     "product 'p1': prices.cryptobot.amount must have at most 8 decimal places for USDT"),
    ("not a table", "product #2: must be a table"),
])
def test_bad_product_is_named_with_its_field(entry, message):
    with pytest.raises(CatalogError, match="^" + re.escape(message)):
        parse_catalog({"products": [product(id="p0"), entry]})


@pytest.mark.parametrize("document, message", [
    ({}, "must hold exactly one list, products"),
    ({"products": [], "extra": 1}, "must hold exactly one list, products"),
    ({"products": []}, "products must be a non-empty list"),
    ({"products": {"id": "p1"}}, "products must be a non-empty list"),
    ({"products": [product(), product(title="Other")]}, "product 'p1': id is used by an earlier product"),
])
def test_bad_catalogue_shape_is_named(document, message):
    with pytest.raises(CatalogError, match="^" + re.escape(message)):
        parse_catalog(document)


@pytest.mark.parametrize("name, text, message", [
    ("catalog.toml", "[[products]\nid = 1", "is not valid TOML: "),
    ("catalog.json", "{\"products\": [", "is not valid JSON: "),
    ("catalog.toml", b"\xff\xfe", "cannot be read: "),
])
def test_unreadable_file_is_named(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CatalogError, match="^" + re.escape(message)):
        load_catalog(path)


def test_settings_load_the_catalogue(tmp_path):
    settings = load_settings({"CATALOG_FILE": write_catalog(tmp_path, SPEC_EXAMPLE),
                              "TELEGRAM_BOT_TOKEN": BOT_TOKEN}, INSTANCE)
    assert settings.catalog.product("vpn-30").title == "VPN, 30 days"
    assert (settings.miniapp_auth_max_age, settings.miniapp_bot_ids) == (86400, ())
    assert load_settings({}, INSTANCE).catalog is None


def test_settings_read_the_mini_app_options():
    settings = load_settings({"MINIAPP_AUTH_MAX_AGE": "3600", "MINIAPP_BOT_IDS": "7342037359, 42"}, INSTANCE)
    assert (settings.miniapp_auth_max_age, settings.miniapp_bot_ids) == (3600, (7342037359, 42))


@pytest.mark.parametrize("env, message", [
    ({"CATALOG_FILE": "/nonexistent/catalog.toml", "TELEGRAM_BOT_TOKEN": BOT_TOKEN},
     "CATALOG_FILE /nonexistent/catalog.toml: cannot be read: No such file or directory"),
    ({"MINIAPP_BOT_IDS": "7342037359:AAH"}, "MINIAPP_BOT_IDS must be comma-separated bot ids"),
    ({"MINIAPP_BOT_IDS": "0"}, "MINIAPP_BOT_IDS must be comma-separated bot ids"),
    ({"MINIAPP_AUTH_MAX_AGE": "0"}, "MINIAPP_AUTH_MAX_AGE must be at least 1"),
    ({"MINIAPP_AUTH_MAX_AGE": "a day"}, "MINIAPP_AUTH_MAX_AGE must be a whole number"),
])
def test_bad_mini_app_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_settings(env, INSTANCE)


def test_catalogue_needs_a_way_to_check_init_data(tmp_path):
    path = write_catalog(tmp_path, SPEC_EXAMPLE)
    with pytest.raises(ConfigError, match="^TELEGRAM_BOT_TOKEN or MINIAPP_BOT_IDS is required when CATALOG_FILE"):
        load_settings({"CATALOG_FILE": path}, INSTANCE)
    assert load_settings({"CATALOG_FILE": path, "MINIAPP_BOT_IDS": "42"}, INSTANCE).catalog is not None


def test_startup_with_a_bad_product_prints_one_line_naming_it(repo_root, tmp_path):
    path = write_catalog(tmp_path, SPEC_EXAMPLE.replace('sbp = "199.00"', 'sbp = "199.999"'))
    env = {"PATH": "/usr/bin:/bin", "CATALOG_FILE": path, "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
           "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == (f"configuration error: CATALOG_FILE {path}: product 'vpn-30': prices.sbp "
                                     "must have at most 2 decimal places for RUB, got '199.999'")
