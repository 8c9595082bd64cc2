"""The order state machine: the one place that changes an order's status and announces it; and the pending
orders a worker looks at (overdue for reconciliation, past their deadline for expiry)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import simplejson

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import joinedload

from services import notifications, outbox
from services.db import db, expire_loaded, transaction
from services.driver import execute_on_driver, fetch_one, fetch_row, write_connection
from services.errors import NotFound
from services.models import Order, Purchase
from services.money import normalized
from services.statements import by_key_values, update_by_key
from services.unit import hold_update, note_locked
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Orders looked at per worker turn; the rest wait for the next turn, oldest first.
MAX_ORDERS_PER_TURN = 1000
EXPIRY_BATCH = 200

PENDING, PAID, EXPIRED, CANCELLED, REFUNDED, FAILED = "pending", "paid", "expired", "cancelled", "refunded", "failed"

# An expired order may still become paid: the provider accepted the money
# after our deadline, and a buyer who paid must get what they paid for.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({PAID, EXPIRED, CANCELLED, FAILED}),
    EXPIRED: frozenset({PAID}),
    PAID: frozenset({REFUNDED}),
    CANCELLED: frozenset(),
    FAILED: frozenset(),
    REFUNDED: frozenset(),
}


_ORDERS = Order.__table__
# The column each mapped attribute is stored in (`meta` → `metadata`).
_COLUMN_NAMES = {name: prop.columns[0].name for name, prop in Order.__mapper__.column_attrs.items()}
_PURCHASES = Purchase.__table__


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


_BY_ORDER_ID = select(Order).where(Order.order_id == bindparam("order_id")).execution_options(populate_existing=True)
# PostgreSQL refuses FOR UPDATE across the outer join an eager load would add.
_LOCKED_BY_ORDER_ID = _BY_ORDER_ID.with_for_update()
_WITH_PURCHASE_BY_ORDER_ID = _BY_ORDER_ID.options(joinedload(Order.purchase))


def find_order(order_id: str, *, lock: bool = False) -> Order | None:
    """The order with this orderId; `lock` takes its row lock for a state change (PostgreSQL)."""
    statement = _LOCKED_BY_ORDER_ID if lock else _WITH_PURCHASE_BY_ORDER_ID
    return db.session.execute(statement, {"order_id": order_id}).scalar_one_or_none()


# The status read: one indexed SELECT of the columns the answer shows, on the driver's cursor (db.fetch_one).
# GET /api/status is the hottest read; an ORM session, then a Core connection and a marshmallow dump, each
# cost more than the query itself (bench/README.md).
_STATUS_SQL = (
    "SELECT o.order_id, o.status, o.amount, o.currency, o.provider, o.created_at, o.paid_at, o.expires_at, "
    "o.telegram_id, o.credit, o.metadata, o.purchase_id, o.recurring, o.renewal, p.subscription_url "
    "FROM orders AS o LEFT OUTER JOIN purchases AS p ON p.id = o.purchase_id WHERE o.order_id = ?"
)


def status_of(order_id: str) -> dict[str, Any]:
    """The order as OrderStatusSchema dumps it (status_view), read without the ORM session or any write lock."""
    row = fetch_one(_STATUS_SQL, (order_id,))
    if row is None:
        raise NotFound(f"No order with orderId {order_id!r}.")
    (order_id, status, amount, currency, provider, created_at, paid_at, expires_at, telegram_id, credit, meta,
     purchase_id, recurring, renewal, subscription_url) = row
    if isinstance(amount, str):  # SQLite: the driver's text and integers, converted as the column types do
        amount, meta = Decimal(amount), _json(meta)
        created_at, paid_at, expires_at = _utc(created_at), _utc(paid_at), _utc(expires_at)
        recurring, renewal = bool(recurring), _json(renewal)
    return status_view(order_id, status, amount, currency, provider, created_at, paid_at, expires_at, telegram_id,
                       credit, meta, purchase_id, subscription_url, recurring, renewal)


def _json(text: str | None) -> Any:
    return None if text is None else simplejson.loads(text, use_decimal=True)


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_view(order_id: str, status: str, amount: Decimal, currency: str, provider: str, created_at: datetime,
                paid_at: datetime | None, expires_at: datetime, telegram_id: int | None, credit: int | None,
                meta: dict[str, Any], purchase_id: int | None, subscription_url: str | None, recurring: bool,
                renewal: dict[str, Any] | None) -> dict[str, Any]:
    """What OrderStatusSchema.dump gives for these values, key for key and in its order, built without marshmallow
    (tests/services/test_status_view.py holds the two together). The status answer and the `data` of merchant
    events: their bytes are pinned by tests/golden."""
    view = {"success": True, "orderId": order_id, "status": status, "amount": normalized(amount),
            "currency": currency, "provider": provider, "createdAt": _timestamp(created_at),
            "paidAt": _timestamp(paid_at), "expiresAt": _timestamp(expires_at), "telegramId": telegram_id,
            "credit": credit, "metadata": meta}
    if purchase_id is not None:
        view["purchaseId"] = purchase_id
    if subscription_url is not None:
        view["subscriptionUrl"] = subscription_url
    if recurring:
        view["recurring"] = True
        if renewal is not None:
            view["renewal"] = renewal
    return view


def order_view(order: OrderRow) -> dict[str, Any]:
    """status_view of a locked order."""
    return status_view(order.order_id, order.status, order.amount, order.currency, order.provider, order.created_at,
                       order.paid_at, order.expires_at, order.telegram_id, order.credit, order.meta,
                       order.purchase_id, order.subscription_url, order.recurring, order.renewal)


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as the settle path holds it: read by one statement on the driver's cursor under the row's lock,
    with its purchase's link, and no ORM session (whose load and flush cost more than the webhook's statements).
    Frozen: every change goes through `save`, which writes the row and then this copy of it."""

    id: int
    order_id: str
    provider: str
    status: str
    amount: Decimal
    currency: str
    description: str | None
    telegram_id: int | None
    buyer_email: str | None
    credit: int | None
    subscription_plan: str | None
    subscription_days: int | None
    meta: dict[str, Any]
    provider_ref: str | None
    provider_data: dict[str, Any]
    create_lease_until: datetime | None
    purchase_id: int | None
    recurring: bool
    renewal: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    subscription_url: str | None


# The row's columns in OrderRow's order, selected under their attribute names (the metadata column is `meta`).
_ROW_COLUMNS = [prop.columns[0].label(prop.key) for prop in Order.__mapper__.column_attrs]
_ROW = (select(*_ROW_COLUMNS, _PURCHASES.c.subscription_url)
        .select_from(_ORDERS.outerjoin(_PURCHASES, _PURCHASES.c.id == _ORDERS.c.purchase_id)))
# PostgreSQL: the order's row is locked, not its purchase's (the nullable side of the join cannot be).
_LOCKED_ROW_BY_ORDER_ID = _ROW.where(_ORDERS.c.order_id == bindparam("order_id")).with_for_update(of=_ORDERS)
_LOCKED_ROW_BY_REF = (_ROW.where(_ORDERS.c.provider == bindparam("provider"),
                                 _ORDERS.c.provider_ref == bindparam("provider_ref")).with_for_update(of=_ORDERS))


def lock_order(order_id: str) -> OrderRow | None:
    """The order with this orderId, its row locked for the rest of the transaction (PostgreSQL; SQLite's writer
    holds the whole database)."""
    return _locked(fetch_row(write_connection(), _LOCKED_ROW_BY_ORDER_ID, {"order_id": order_id}))


def lock_order_by_ref(provider: str, provider_ref: str) -> OrderRow | None:
    """The order this provider's payment id was created for, locked like `lock_order`."""
    return _locked(fetch_row(write_connection(), _LOCKED_ROW_BY_REF,
                             {"provider": provider, "provider_ref": provider_ref}))


def _locked(values: dict[str, Any] | None) -> OrderRow | None:
    if values is None:
        return None
    note_locked(_ORDERS, values["id"])
    return OrderRow(**values)


def save(order: OrderRow, now: datetime, **changes: Any) -> None:
    """Write these columns of the order's row (and updated_at), then the same values into `order`.

    In a write unit that locked the order the write is held for its COMMIT (services/unit.py), which on
    PostgreSQL saves a new webhook a round trip; elsewhere it is written at once.
    """
    changes["updated_at"] = now
    columns = {_COLUMN_NAMES[name]: value for name, value in changes.items()}
    if not hold_update(_ORDERS, order.id, columns):
        statement = update_by_key(_ORDERS, tuple(sorted(columns)))
        if execute_on_driver(write_connection(), statement, by_key_values(order.id, columns)).rowcount != 1:
            raise RuntimeError(f"order {order.order_id!r} is not stored")
    for name, value in changes.items():
        object.__setattr__(order, name, value)
    # The session may also hold the order as an ORM object (read earlier in this request).
    expire_loaded(Order, order.id)


def attach_purchase(order: OrderRow, purchase_id: int, subscription_url: str | None, now: datetime) -> None:
    """Record the purchase the order activated or extended (its link is shown with the order)."""
    save(order, now, purchase_id=purchase_id)
    object.__setattr__(order, "subscription_url", subscription_url)


def get_order(order_id: str) -> Order:
    order = find_order(order_id)
    if order is None:
        raise NotFound(f"No order with orderId {order_id!r}.")
    return order


def change_status(order: OrderRow, new_status: str, settings: Settings, now: datetime, *,
                  announced: bool = True) -> bool:
    """Move the order to new_status if the state machine allows it, and queue the announcements.

    `announced=False` leaves announcing to the caller, who first adds what the announcement must show
    (a paid order's purchase).
    """
    if not can_transition(order.status, new_status):
        return False
    save(order, now, status=new_status, paid_at=now if new_status == PAID else order.paid_at)
    if announced:
        announce(order, settings, now)
    return True


def announce(order: OrderRow, settings: Settings, now: datetime) -> None:
    """Queue the merchant event and the buyer's message for the order's current status."""
    status = order.status
    messages: list[outbox.Message | None] = []
    if settings.merchant_webhook_url:
        event = {"type": f"order.{status}", "timestamp": int(now.timestamp()), "data": order_view(order)}
        messages.append(outbox.Message(outbox.MERCHANT, f"order.{status}", f"merchant:{order.order_id}:{status}",
                                       event))
    render = notifications.STATUS_TEXTS.get(status)
    if render and order.telegram_id:
        messages.append(outbox.buyer_message(order.telegram_id, render(order, settings.credit_unit),
                                             f"notify.{status}", f"{outbox.buyer_channel()}:{order.order_id}:{status}",
                                             settings))
    outbox.enqueue_all(messages, now, order)


def announce_renewal(order: OrderRow, renewal_event: int | None, settings: Settings, now: datetime) -> None:
    """Queue order.renewed for the merchant and the buyer's message, once per renewal charge."""
    messages: list[outbox.Message | None] = []
    if settings.merchant_webhook_url:
        event = {"type": "order.renewed", "timestamp": int(now.timestamp()), "data": order_view(order)}
        messages.append(outbox.Message(outbox.MERCHANT, "order.renewed",
                                       f"merchant:{order.order_id}:renewed:{renewal_event}", event))
    if order.telegram_id:
        messages.append(outbox.buyer_message(order.telegram_id, notifications.renewed_text(order, settings.credit_unit),
                                             "notify.renewed",
                                             f"{outbox.buyer_channel()}:{order.order_id}:renewed:{renewal_event}",
                                             settings))
    outbox.enqueue_all(messages, now, order)


def announce_renewal_refund(order: OrderRow, renewal_event: int, settings: Settings, now: datetime) -> None:
    """Tell the buyer one renewal was refunded; the order stays paid, so no status event goes to the merchant."""
    if order.telegram_id:
        outbox.enqueue_buyer_message(order.telegram_id,
                                     notifications.renewal_refunded_text(order, settings.credit_unit),
                                     "notify.renewal_refunded",
                                     f"{outbox.buyer_channel()}:{order.order_id}:renewal_refunded:{renewal_event}",
                                     settings, now, order)


def overdue_pending(provider: str, settings: Settings, now: datetime) -> list[tuple[str, str]]:
    """(orderId, provider_ref) of this provider's pending orders older than RECONCILE_AFTER_SECONDS."""
    cutoff = now - timedelta(seconds=settings.reconcile_after_seconds)
    with transaction():
        rows = db.session.execute(
            select(Order.order_id, Order.provider_ref)
            .where(Order.provider == provider, Order.status == PENDING,
                   Order.provider_ref.is_not(None), Order.created_at <= cutoff)
            .order_by(Order.created_at).limit(MAX_ORDERS_PER_TURN)
        ).all()
    return [(order_id, ref) for order_id, ref in rows]


def expired_recently(provider: str, settings: Settings, now: datetime,
                     checkpoints: tuple[timedelta, ...]) -> list[tuple[str, str]]:
    """(orderId, provider_ref) of this provider's expired orders whose deadline passed about one of `checkpoints`
    ago, give or take two worker turns (RECONCILE_INTERVAL_SECONDS each).

    For a provider that may still take the money after our deadline: its worker asks about each such order a few
    times in all, at widening intervals, instead of on every turn (most expired orders were simply abandoned).
    """
    turns = timedelta(seconds=2 * settings.reconcile_interval_seconds)
    windows = [and_(Order.expires_at <= now - after, Order.expires_at > now - after - turns) for after in checkpoints]
    with transaction():
        rows = db.session.execute(
            select(Order.order_id, Order.provider_ref)
            .where(Order.provider == provider, Order.status == EXPIRED, Order.provider_ref.is_not(None), or_(*windows))
            .order_by(Order.expires_at).limit(MAX_ORDERS_PER_TURN)
        ).all()
    return [(order_id, ref) for order_id, ref in rows]


def expire_orders(provider: str, settings: Settings, now: datetime) -> int:
    """Move this provider's pending orders past expires_at to expired (announcing order.expired)."""
    with transaction():
        due = db.session.execute(
            select(Order.order_id)
            .where(Order.provider == provider, Order.status == PENDING, Order.expires_at <= now)
            .order_by(Order.expires_at).limit(EXPIRY_BATCH)
        ).scalars().all()
    expired = 0
    for order_id in due:
        with transaction():
            order = lock_order(order_id)
            # Re-checked under the lock: a payment may have landed since the list was read.
            changed = (order is not None and order.status == PENDING and order.expires_at <= now
                       and change_status(order, EXPIRED, settings, now))
        if changed:
            expired += 1
            logger.info("order expired unpaid", extra={"provider": provider, "order_id": order_id})
    return expired
