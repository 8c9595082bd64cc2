"""The products the Mini App sells, read from CATALOG_FILE (TOML, or the same structure as JSON) at startup."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.money import CRYPTO_ASSETS, ISO_FIAT, STARS, check_amount
from services.providers import registry
from services.providers.base import AMOUNT_AND_CURRENCY_PRICE, STARS_PRICE

RUB = "RUB"
MAX_CREDIT = 10**12
_PRODUCT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Plain decimal notation only: no sign, exponent, spaces, NaN or Infinity, which Decimal() would accept.
_DECIMAL_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_PRODUCT_KEYS = frozenset({"id", "title", "description", "subscription", "credit", "recurring", "prices"})


class CatalogError(ValueError):
    """The catalogue cannot be used; the message names the product and the field."""


@dataclass(frozen=True)
class Price:
    provider: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Subscription:
    plan: str
    days: int


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    description: str | None
    subscription: Subscription | None
    credit: int | None
    recurring: bool
    prices: tuple[Price, ...]

    def price(self, provider: str) -> Price | None:
        return next((price for price in self.prices if price.provider == provider), None)


@dataclass(frozen=True)
class Catalog:
    products: tuple[Product, ...]

    def product(self, product_id: str) -> Product | None:
        return next((product for product in self.products if product.id == product_id), None)


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalogue file; CatalogError with one line naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise CatalogError(f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            document = json.loads(text, parse_float=Decimal)
        else:
            document = tomllib.loads(text, parse_float=Decimal)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError both are
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise CatalogError(f"is not valid {kind}: {exc}") from None
    return parse_catalog(document)


def parse_catalog(document: Any) -> Catalog:
    """The catalogue from its parsed document ({"products": [...]})."""
    if not isinstance(document, dict) or set(document) != {"products"}:
        raise CatalogError("must hold exactly one list, products ([[products]] tables in TOML)")
    entries = document["products"]
    if not isinstance(entries, list) or not entries:
        raise CatalogError("products must be a non-empty list")
    products: list[Product] = []
    for number, entry in enumerate(entries, start=1):
        product = _product(entry, number)
        if any(existing.id == product.id for existing in products):
            raise CatalogError(f"product {product.id!r}: id is used by an earlier product")
        products.append(product)
    return Catalog(tuple(products))


def _product(entry: Any, number: int) -> Product:
    if not isinstance(entry, dict):
        raise CatalogError(f"product #{number}: must be a table")
    product_id = entry.get("id")
    if not isinstance(product_id, str) or not _PRODUCT_ID.fullmatch(product_id):
        raise CatalogError(f"product #{number}: id must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'")
    name = f"product {product_id!r}"
    unknown = sorted(set(entry) - _PRODUCT_KEYS)
    if unknown:
        raise CatalogError(f"{name}: unknown field {unknown[0]} (fields: {', '.join(sorted(_PRODUCT_KEYS))})")
    try:
        product = Product(
            id=product_id, title=_text(entry.get("title"), "title", 255, required=True),
            description=_text(entry.get("description"), "description", 1024),
            subscription=_subscription(entry.get("subscription")), credit=_credit(entry.get("credit")),
            recurring=_flag(entry.get("recurring", False), "recurring"), prices=_prices(entry.get("prices")))
        _check_consistent(product)
    except CatalogError as exc:
        raise CatalogError(f"{name}: {exc}") from None
    return product


def _text(value: Any, field: str, limit: int, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CatalogError(f"{field} must be a non-empty string of at most {limit} characters")
    return value


def _subscription(value: Any) -> Subscription | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"plan", "days"}:
        raise CatalogError("subscription must be a table of plan and days, e.g. { plan = \"vpn\", days = 30 }")
    plan = _text(value["plan"], "subscription.plan", 64, required=True)
    days = value["days"]
    if not _is_int(days) or not 1 <= days <= 3650:
        raise CatalogError("subscription.days must be a whole number from 1 to 3650")
    return Subscription(plan, days)


def _credit(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_CREDIT:
        raise CatalogError(f"credit must be a whole number from 0 to {MAX_CREDIT}")
    # credit = 0 is how the SPEC's example says "no credit".
    return value or None


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(f"{field} must be true or false")
    return value


def priced_providers() -> tuple[str, ...]:
    """The providers a product may be priced in, in the registry's order (the order of the buy buttons)."""
    return tuple(plugin.name for plugin in registry.plugins() if plugin.catalog_price is not None)


def _prices(value: Any) -> tuple[Price, ...]:
    providers = priced_providers()
    if not isinstance(value, dict) or not value:
        raise CatalogError(f"prices must be a table with at least one of {', '.join(providers)}")
    unknown = sorted(set(value) - set(providers))
    if unknown:
        raise CatalogError(f"prices.{unknown[0]} is not a provider a product can be priced in ({', '.join(providers)})")
    return tuple(_price(provider, value[provider]) for provider in providers if provider in value)


def _price(provider: str, value: Any) -> Price:
    field = f"prices.{provider}"
    kind = registry.plugin(provider).catalog_price
    if kind == STARS_PRICE:
        if not _is_int(value) or value <= 0:
            raise CatalogError(f"{field} must be a whole number of Stars, such as 100")
        return Price(provider, Decimal(value), STARS)
    if kind == AMOUNT_AND_CURRENCY_PRICE:
        if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
            raise CatalogError(f"{field} must be a table of amount and currency, e.g. "
                               "{ amount = \"2.5\", currency = \"USDT\" }")
        currency = value["currency"]
        if not isinstance(currency, str) or currency not in CRYPTO_ASSETS | ISO_FIAT:
            raise CatalogError(f"{field}.currency must be a Crypto Pay asset (such as USDT or TON) or a fiat "
                               "currency code (such as USD)")
        return Price(provider, _amount(value["amount"], currency, f"{field}.amount"), currency)
    return Price(provider, _amount(value, RUB, field), RUB)


def _amount(value: Any, currency: str, field: str) -> Decimal:
    # A string, so the amount in the file is exactly the amount charged (TOML and JSON floats are binary).
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else f"the number {value}"
        raise CatalogError(f"{field} must be a decimal string such as \"199.00\", got {shown}")
    amount = Decimal(value)
    problem = check_amount(amount, currency)
    if problem:
        raise CatalogError(f"{field} {problem} for {currency}, got {value!r}")
    return amount


def _check_consistent(product: Product) -> None:
    if product.subscription is None and product.credit is None:
        raise CatalogError("grants nothing: give it a subscription, a credit above 0, or both")
    if product.recurring:
        renewing = {plugin.name: plugin.renewal_days for plugin in registry.plugins() if plugin.renewal_days}
        priced = [name for name in renewing if product.price(name)]
        if not priced:
            raise CatalogError(f"recurring needs a {' or '.join(renewing)} price (only Stars subscriptions renew)")
        days = renewing[priced[0]]
        if product.subscription is None or product.subscription.days != days:
            raise CatalogError(f"recurring needs a subscription of exactly {days} days "
                               f"({priced[0]} renews subscriptions every {days} days)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
