"""The one fulfilment step: apply an event to its order (paid, refunded, closed) with the ledger, the
purchase and the outbox, in the caller's transaction, exactly once per order and kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, literal, select, update

from services import ledger, metrics, orders, outbox
from services.db import expire_loaded
from services.driver import execute_on_driver, fetch_row, fetch_rows, insert_ignore, write_connection
from services.models import Fulfilment, Order, ProviderEvent, Purchase
from services.notices import (CANCELLED, CONFLICT, EXPIRED, FAILED, IGNORE, IGNORED, MISMATCH, PAID, PROCESSED,
                              REFUNDED, RENEWED, SETTLED, UNMATCHED, Notice)
from webhook_config import Settings

CREDIT, SUBSCRIPTION = "credit", "subscription"
CREDIT_REVERSAL, SUBSCRIPTION_REVERSAL = "credit_reversal", "subscription_reversal"
_CLOSING = {FAILED: orders.FAILED, CANCELLED: orders.CANCELLED, EXPIRED: orders.EXPIRED}


@dataclass(frozen=True)
class Settlement:
    """What came of an event (an event outcome), and the problem support should read, if any."""

    outcome: str
    problem: str | None = None


def apply(event_pk: int | None, provider: str, notice: Notice, order: orders.OrderRow | None, settings: Settings,
          now: datetime) -> Settlement:
    """Apply one event to its order and say what came of it."""
    if notice.action == IGNORE:
        return Settlement(IGNORED)
    if order is None:
        return Settlement(UNMATCHED)
    if notice.action in (PAID, RENEWED):
        problem = payment_mismatch(notice, order, provider)
        if problem:
            return Settlement(MISMATCH, problem)
        if notice.action == RENEWED:
            return _renew(event_pk, notice, order, settings, now)
        if not pay(order, event_pk, settings, now):
            # A second, distinct payment for an order that is not awaiting one: money to give back.
            return Settlement(CONFLICT)
        if order.recurring:
            _record_first_charge(order, notice, now)
        return Settlement(PROCESSED)
    if notice.action == REFUNDED:
        problem = refund_mismatch(notice, order, provider)
        if problem:
            return Settlement(CONFLICT, problem)
        renewal_event = _renewal_paid_by(order, notice.provider_payment_id)
        if renewal_event is not None:
            # Only the period that charge bought is taken back: the order itself stays paid.
            _reverse_renewal(order, renewal_event, settings, now)
            return Settlement(PROCESSED)
        if not orders.change_status(order, orders.REFUNDED, settings, now):
            return Settlement(CONFLICT)
        reverse(order, event_pk, settings, now)
        return Settlement(PROCESSED)
    changed = orders.change_status(order, _CLOSING[notice.action], settings, now)
    return Settlement(PROCESSED if changed else IGNORED)


def _renew(event_pk: int | None, notice: Notice, order: orders.OrderRow, settings: Settings,
           now: datetime) -> Settlement:
    if not order.recurring or order.status != orders.PAID:
        return Settlement(CONFLICT, f"a renewal charge for an order that is {order.status}"
                                    f"{'' if order.recurring else ' and not recurring'}: money to give back")
    if _claim(order, _renewal_kind(event_pk), event_pk, now, days=order.subscription_days, credit=order.credit):
        if order.credit:
            ledger.post(order, order.credit, _renewal_kind(event_pk), settings.credit_unit, now)
        if order.subscription_plan:
            purchase_id, _link = _extend_purchase(order, timedelta(days=order.subscription_days), now)
            outbox.enqueue_panel_sync(order, purchase_id, _renewal_kind(event_pk), settings, now, notify=False)
        _record_renewal(order, notice, now)
        orders.announce_renewal(order, event_pk, settings, now)
    return Settlement(PROCESSED)


def _renewal_kind(event_pk: int | None) -> str:
    # One fulfilment, ledger entry and panel call per renewal charge: the charge's event is the identity.
    return f"renewal:{event_pk}"


def _record_first_charge(order: orders.OrderRow, notice: Notice, now: datetime) -> None:
    """Keep the first charge's id and payer: cancelling the renewals names them."""
    orders.save(order, now, renewal={**(order.renewal or {}), "chargeId": notice.provider_payment_id,
                                     "payerId": notice.payer_id, **_renews_until(notice)})


def _record_renewal(order: orders.OrderRow, notice: Notice, now: datetime) -> None:
    orders.save(order, now, renewal={**(order.renewal or {}), **_renews_until(notice)})


def _renews_until(notice: Notice) -> dict[str, str]:
    # The provider's own end of the paid period, kept beside ours (the purchase's expiry).
    return {"expiresAt": notice.renews_until.isoformat()} if notice.renews_until else {}


_RENEWAL_PAID_BY = (select(Fulfilment.event_pk).join(ProviderEvent, ProviderEvent.id == Fulfilment.event_pk)
                    .where(Fulfilment.order_pk == bindparam("order_pk"), Fulfilment.kind.startswith("renewal:"),
                           ProviderEvent.provider_payment_id == bindparam("payment_id")))


def _renewal_paid_by(order: orders.OrderRow, payment_id: str | None) -> int | None:
    """The event of the renewal charge this payment was, or None when it was no renewal of this order."""
    if payment_id is None or not order.recurring:
        return None
    row = fetch_row(write_connection(), _RENEWAL_PAID_BY, {"order_pk": order.id, "payment_id": payment_id})
    return None if row is None else row["event_pk"]


def _reverse_renewal(order: orders.OrderRow, renewal_event: int, settings: Settings, now: datetime) -> None:
    if not _claim(order, f"renewal_reversal:{renewal_event}", renewal_event, now, days=-(order.subscription_days or 0)):
        return
    if order.credit:
        ledger.post(order, -order.credit, f"renewal_refund:{renewal_event}", settings.credit_unit, now)
    if order.subscription_plan and order.purchase_id:
        _shorten_purchase(order.purchase_id, timedelta(days=order.subscription_days), now)
        outbox.enqueue_panel_sync(order, order.purchase_id, f"renewal_reversal:{renewal_event}", settings, now,
                                  notify=False)
    orders.announce_renewal_refund(order, renewal_event, settings, now)


def pay(order: orders.OrderRow, event_pk: int | None, settings: Settings, now: datetime) -> bool:
    """Mark the order paid and grant what it bought, then announce it (the event carries the purchase);
    False when the order is not awaiting a payment."""
    if not orders.change_status(order, orders.PAID, settings, now, announced=False):
        return False
    grant(order, event_pk, settings, now)
    orders.announce(order, settings, now)
    return True


def payment_mismatch(notice: Notice, order: orders.OrderRow, provider: str) -> str | None:
    """Why this payment does not settle the order, or None when provider, amount and currency all match."""
    if provider != order.provider:
        return f"paid through {provider}, but the order was created for {order.provider}"
    if notice.currency is None or notice.currency.upper() != order.currency:
        return f"currency {notice.currency} does not match the order's {order.currency}"
    if notice.amount is None:
        return "the payment's amount is missing or unusable"
    if notice.amount != order.amount:
        return f"amount {notice.amount} does not match the order's {order.amount}"
    if notice.provider_ref and order.provider_ref and notice.provider_ref != order.provider_ref:
        return f"payment {notice.provider_ref} is not the one created for this order ({order.provider_ref})"
    return None


def refund_mismatch(notice: Notice, order: orders.OrderRow, provider: str) -> str | None:
    """Why this refund must not reverse the order, or None when the refunded payment is one that settled it.

    An order may have been paid twice (the second payment is stored as a conflict, money to give back);
    refunding that second payment must not take back what the first one bought. A refund of part of
    the payment reverses nothing: what to take back for it is support's call.
    """
    if provider != order.provider:
        return f"refunded through {provider}, but the order was created for {order.provider}"
    if notice.provider_payment_id is not None and \
            order.order_id not in orders_paid_by(provider, notice.provider_payment_id):
        return f"the refunded payment {notice.provider_payment_id} did not pay for this order"
    if notice.amount is None or (notice.currency or "").upper() != order.currency or notice.amount != order.amount:
        return (f"refunded {notice.amount} {notice.currency} of the {order.amount} {order.currency} paid: "
                "not a full refund, so nothing was reversed")
    return None


_PAID_BY = (select(Order.order_id).join(ProviderEvent, ProviderEvent.order_pk == Order.id)
            .where(ProviderEvent.provider == bindparam("provider"),
                   ProviderEvent.provider_payment_id == bindparam("payment_id"),
                   # Fixed values, not an expanding IN: the statement runs on the driver's cursor as compiled.
                   ProviderEvent.status.in_([literal(status) for status in sorted(SETTLED)]))
            .order_by(ProviderEvent.id))


def orders_paid_by(provider: str, payment_id: str) -> list[str]:
    """The orderIds this provider payment settled, however it was matched (automatically or by support)."""
    return [row["order_id"] for row in fetch_rows(write_connection(), _PAID_BY,
                                                  {"provider": provider, "payment_id": payment_id})]


def _claim(order: orders.OrderRow, kind: str, event_pk: int | None, now: datetime, **details) -> bool:
    """Record that `kind` was done for this order; False if it already was (unique per order and kind)."""
    claimed = insert_ignore(Fulfilment, {
        "order_pk": order.id, "kind": kind, "event_pk": event_pk, "details": details, "created_at": now,
    }, ["order_pk", "kind"]) is not None
    if claimed:
        metrics.record_fulfilment(kind)
    return claimed


def grant(order: orders.OrderRow, event_pk: int | None, settings: Settings, now: datetime) -> None:
    """Credit the balance and activate or extend the subscription the order asked for."""
    if order.credit and _claim(order, CREDIT, event_pk, now, amount=order.credit, unit=settings.credit_unit):
        ledger.post(order, order.credit, "order_paid", settings.credit_unit, now)
    if order.subscription_plan and _claim(order, SUBSCRIPTION, event_pk, now, days=order.subscription_days):
        purchase_id, link = _extend_purchase(order, timedelta(days=order.subscription_days), now)
        orders.attach_purchase(order, purchase_id, link, now)
        outbox.enqueue_panel_sync(order, purchase_id, "sync", settings, now, notify=True)


def reverse(order: orders.OrderRow, event_pk: int | None, settings: Settings, now: datetime) -> None:
    """Take back what `grant` gave, once."""
    if order.credit and _claim(order, CREDIT_REVERSAL, event_pk, now, amount=-order.credit):
        ledger.post(order, -order.credit, "order_refunded", settings.credit_unit, now)
    if order.subscription_plan and order.purchase_id and _claim(order, SUBSCRIPTION_REVERSAL, event_pk, now):
        _shorten_purchase(order.purchase_id, timedelta(days=order.subscription_days), now)
        outbox.enqueue_panel_sync(order, order.purchase_id, "reverse", settings, now, notify=False)


_PURCHASES = Purchase.__table__
_LOCKED_PURCHASE = (select(_PURCHASES.c.id, _PURCHASES.c.expires_at, _PURCHASES.c.subscription_url)
                    .where(_PURCHASES.c.telegram_id == bindparam("telegram_id"), _PURCHASES.c.plan == bindparam("plan"))
                    .with_for_update())
_LOCKED_EXPIRY = select(_PURCHASES.c.expires_at).where(_PURCHASES.c.id == bindparam("purchase_id")).with_for_update()
_EXPIRY_VALUES = {"expires_at": bindparam("expires_at", type_=_PURCHASES.c.expires_at.type),
                  "updated_at": bindparam("at", type_=_PURCHASES.c.updated_at.type)}
_EXTEND = (update(_PURCHASES).where(_PURCHASES.c.id == bindparam("purchase_id"))
           .values(status="active", **_EXPIRY_VALUES))
_SHORTEN = update(_PURCHASES).where(_PURCHASES.c.id == bindparam("purchase_id")).values(**_EXPIRY_VALUES)


def _extend_purchase(order: orders.OrderRow, period: timedelta, now: datetime) -> tuple[int, str | None]:
    """The buyer's purchase of this plan, created or extended from max(now, current expiry): its id and link."""
    insert_ignore(Purchase, {
        "telegram_id": order.telegram_id, "plan": order.subscription_plan, "status": "active",
        "expires_at": now, "created_at": now, "updated_at": now,
    }, ["telegram_id", "plan"])
    purchase = fetch_row(write_connection(), _LOCKED_PURCHASE,
                         {"telegram_id": order.telegram_id, "plan": order.subscription_plan})
    _write_expiry(_EXTEND, purchase["id"], max(purchase["expires_at"], now) + period, now)
    return purchase["id"], purchase["subscription_url"]


def _shorten_purchase(purchase_id: int, period: timedelta, now: datetime) -> None:
    """Take `period` off the purchase's expiry (a refund of what extended it)."""
    purchase = fetch_row(write_connection(), _LOCKED_EXPIRY, {"purchase_id": purchase_id})
    _write_expiry(_SHORTEN, purchase_id, purchase["expires_at"] - period, now)


def _write_expiry(statement, purchase_id: int, expires_at: datetime, now: datetime) -> None:
    execute_on_driver(write_connection(), statement, {"purchase_id": purchase_id, "expires_at": expires_at, "at": now})
    # The session may hold the purchase as an ORM object (the console, a worker's panel sync).
    expire_loaded(Purchase, purchase_id)
