"""What the Mini App's buyer can do: see their balance, subscription and orders, and order a product."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from services import ledger, payments, renewals
from services.db import reading
from services.errors import InvalidRequest, NotFound
from services.miniapp.catalog import Catalog
from services.models import Order, Purchase
from services.providers import registry
from webhook_config import Settings

RECENT_ORDERS = 20
ORDER_SOURCE = "miniapp"

# The rows OrderStatusSchema dumps (MiniAppOrderSchema), for one buyer's latest orders.
_ORDERS_QUERY = (
    select(Order.order_id, Order.status, Order.amount, Order.currency, Order.provider, Order.created_at,
           Order.paid_at, Order.expires_at, Order.telegram_id, Order.credit, Order.meta.label("meta"),
           Order.purchase_id, Order.recurring, Order.renewal, Purchase.subscription_url)
    .outerjoin(Purchase, Order.purchase_id == Purchase.id)
    .where(Order.telegram_id == bindparam("telegram_id"))
    .order_by(Order.created_at.desc(), Order.id.desc())
    .limit(RECENT_ORDERS)
)
# A buyer has one purchase per plan; the page shows the one that runs longest.
_SUBSCRIPTION_QUERY = (
    select(Purchase.id, Purchase.plan, Purchase.expires_at, Purchase.subscription_url)
    .where(Purchase.telegram_id == bindparam("telegram_id"))
    .order_by(Purchase.expires_at.desc(), Purchase.id.desc())
    .limit(1)
)


def new_order_id(telegram_id: int) -> str:
    """`ma-<telegramId>-<64 random bits>`: unguessable, and a collision would only meet the payment
    API's idempotency check (same terms: the same order back; other terms: 409), never another's order."""
    return f"ma-{telegram_id}-{secrets.token_hex(8)}"


def place_order(catalog: Catalog, telegram_id: int, product_id: str, provider: str,
                settings: Settings, now: datetime) -> tuple[Order, bool]:
    """Create the payment for this buyer at the catalogue's price, through the payment API's own service."""
    product = catalog.product(product_id)
    if product is None:
        raise InvalidRequest("The order is not valid.", {"productId": ["is not in the catalogue"]})
    price = product.price(provider)
    if price is None:
        raise InvalidRequest("The order is not valid.", {"provider": [
            f"{product.id!r} cannot be bought with {provider}; it can with: "
            f"{', '.join(p.provider for p in product.prices)}"]})
    subscription = product.subscription
    # A recurring product bought with a provider that renews is a subscription it charges again by itself;
    # bought with any other provider it is one period.
    recurring = product.recurring and registry.plugin(provider).renewal_days is not None
    request: dict[str, Any] = {
        "order_id": new_order_id(telegram_id), "provider": provider,
        "amount": price.amount, "currency": price.currency, "description": product.title,
        "telegram_id": telegram_id, "credit": product.credit,
        "subscription": {"plan": subscription.plan, "days": subscription.days} if subscription else None,
        "metadata": {"productId": product.id, "source": ORDER_SOURCE}, "recurring": recurring,
    }
    return payments.create_payment(request, settings, now)


def renewing_order(telegram_id: int) -> str:
    """The buyer's newest order whose subscription still renews (what cancel stops when no order is named)."""
    renewing = renewals.renewing_orders(telegram_id)
    if not renewing:
        raise NotFound("You have no subscription that renews.")
    return renewing[0][0]


def buyer_view(telegram_id: int, settings: Settings) -> dict[str, Any]:
    """The buyer's balance, longest-running subscription and last orders: theirs only, read without locks."""
    balance = ledger.balance(telegram_id)
    with reading() as connection:
        rows = connection.execute(_ORDERS_QUERY, {"telegram_id": telegram_id}).all()
        purchase = connection.execute(_SUBSCRIPTION_QUERY, {"telegram_id": telegram_id}).one_or_none()
    orders = []
    for row in rows:
        order = row._asdict()
        order["purchase"] = {"subscription_url": order.pop("subscription_url")}
        orders.append(order)
    subscription = None
    if purchase is not None:
        recurring = any(purchase_id == purchase.id for _, purchase_id in renewals.renewing_orders(telegram_id))
        subscription = {**purchase._asdict(), "recurring": recurring}
    return {"telegram_id": telegram_id, "balance": balance, "unit": settings.credit_unit,
            "subscription": subscription, "orders": orders}
