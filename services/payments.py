"""Creating payments idempotently by orderId, and looking them up."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.db import db, transaction
from services.driver import insert_ignore
from services.errors import InvalidRequest, OrderConflict, ProviderRejected, ProviderUnavailable
from services.models import Order
from services.money import check_amount
from services.orders import PENDING, find_order
from services.providers.base import CreatedPayment, PaymentDraft, PaymentProvider
from services.providers import registry
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Creating a payment may take two provider calls (T-Bank Init + GetQr), and requests'
# timeout bounds the connect and each read separately: four timeouts, plus slack.
CALLS_PER_CREATE = 4
WAIT_STEP_SECONDS = 0.05
# Where an order keeps the payment method its request chose (`paymentMethod` in the response).
PAYMENT_METHOD = "paymentMethod"
MAX_WAIT_SECONDS = 20


def create_payment(request: dict[str, Any], settings: Settings, now: datetime,
                   sleep: Callable[[float], None] = time.sleep) -> tuple[Order, bool]:
    """Create the order and its provider payment; a repeat returns the same order. Returns (order, created)."""
    provider = registry.payment_provider(request["provider"], settings)
    currency = (request.get("currency") or provider.default_currency()).upper()
    _check_terms(provider, request["amount"], currency)
    _check_payment_method(request)
    values = _order_values(request, currency, settings, now)
    with transaction():
        created = insert_ignore(Order, values, ["order_id"]) is not None
        order = find_order(request["order_id"], lock=True)
        if not created:
            _ensure_same_terms(order, values)
        elif provider.local:
            _attach(order, provider.create(_draft(order)))
    if order.provider_ref is None:
        _create_remote(order, provider, now, sleep, create_lease(settings))
    return find_order(request["order_id"]), created


def _check_terms(provider: PaymentProvider, amount, currency: str) -> None:
    problem = provider.currency_problem(currency)
    if problem:
        raise InvalidRequest("The payment request is not valid.", {"currency": [problem]})
    problem = check_amount(amount, currency)
    if problem:
        raise InvalidRequest("The payment request is not valid.", {"amount": [problem]})


def _check_payment_method(request: dict[str, Any]) -> None:
    method = request.get("payment_method")
    allowed = registry.plugin(request["provider"]).payment_methods
    if method is not None and method not in allowed:
        problem = f"must be one of {', '.join(allowed)}" if allowed else "this provider lets the buyer choose"
        raise InvalidRequest("The payment request is not valid.", {"paymentMethod": [problem]})


def _order_values(request: dict[str, Any], currency: str, settings: Settings, now: datetime) -> dict[str, Any]:
    subscription = request.get("subscription") or {}
    return {
        "order_id": request["order_id"],
        "provider": request["provider"],
        "status": PENDING,
        "amount": request["amount"],
        "currency": currency,
        "description": request.get("description"),
        "telegram_id": request.get("telegram_id"),
        "credit": request.get("credit"),
        "subscription_plan": subscription.get("plan"),
        "subscription_days": subscription.get("days"),
        "meta": request.get("metadata") or {},
        "recurring": bool(request.get("recurring")),
        # The caller's choice of payment method is part of the order's terms, kept beside the provider's data.
        "provider_data": {PAYMENT_METHOD: request["payment_method"]} if request.get("payment_method") else {},
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=settings.order_ttl_seconds),
    }


# What a repeat of the request must agree on; anything else would be a different purchase.
_TERMS = ("provider", "amount", "currency", "telegram_id", "credit", "subscription_plan", "subscription_days",
          "recurring")


def _ensure_same_terms(order: Order, values: dict[str, Any]) -> None:
    differing = [name for name in _TERMS if getattr(order, name) != values[name]]
    if _payment_method(order.provider_data) != _payment_method(values["provider_data"]):
        differing.append(PAYMENT_METHOD)
    if differing:
        raise OrderConflict(
            f"Order {order.order_id!r} already exists with a different {', '.join(differing)}.",
            {name: ["differs from the existing order"] for name in differing})


def _draft(order: Order) -> PaymentDraft:
    return PaymentDraft(order_id=order.order_id, amount=order.amount, currency=order.currency,
                        description=order.description or f"Order {order.order_id}",
                        expires_at=order.expires_at, telegram_id=order.telegram_id, recurring=order.recurring,
                        payment_method=_payment_method(order.provider_data))


def _payment_method(provider_data: dict[str, Any] | None) -> str | None:
    return (provider_data or {}).get(PAYMENT_METHOD)


def _attach(order: Order, payment: CreatedPayment) -> None:
    """Store the provider's payment on the order (in the caller's transaction)."""
    order_id = order.order_id  # read now: after a failed flush the object cannot load anything
    order.provider_ref = payment.provider_ref
    order.provider_data = {**(order.provider_data or {}), **payment.data}
    order.create_lease_until = None
    try:
        db.session.flush()
    except IntegrityError:
        # Unique (provider, provider_ref): the provider named a payment another order already has. Keeping
        # either would let one payment settle two orders; the caller's transaction rolls back.
        raise ProviderRejected(f"The provider answered with a payment ({payment.provider_ref}) that already "
                               f"belongs to another order; order {order_id!r} was not given it.") from None


def create_lease(settings: Settings) -> timedelta:
    """How long one request may spend creating the payment at the provider before another may try."""
    return timedelta(seconds=CALLS_PER_CREATE * settings.http_timeout + 5)


def _create_remote(order: Order, provider: PaymentProvider, now: datetime,
                   sleep: Callable[[float], None], lease: timedelta) -> None:
    """Call the provider outside any transaction, under a lease so concurrent repeats create one payment."""
    draft = _draft(order)
    with transaction():
        claimed = db.session.execute(
            update(Order)
            .where(Order.id == order.id, Order.provider_ref.is_(None),
                   (Order.create_lease_until.is_(None)) | (Order.create_lease_until < now))
            .values(create_lease_until=now + lease)
        ).rowcount == 1
    if not claimed:
        _wait_for_provider_ref(order.id, sleep, lease)
        return
    try:
        payment = provider.create(draft)
        with transaction():
            current = db.session.get(Order, order.id, with_for_update=True, populate_existing=True)
            if current.provider_ref is None:
                _attach(current, payment)
            else:
                # Our lease ran out mid-call and another request attached its payment first: keep that one.
                logger.warning("a payment created after its lease expired was not attached", extra={
                    "order_id": current.order_id, "provider_ref": payment.provider_ref})
    except Exception:
        # A retry may ask the provider at once, without waiting for our lease to run out.
        with transaction():
            db.session.execute(update(Order).where(Order.id == order.id).values(create_lease_until=None))
        raise


def _wait_for_provider_ref(order_pk: int, sleep: Callable[[float], None], lease: timedelta) -> None:
    # Answer well within gunicorn's request timeout; a retry of the request returns the payment.
    deadline = min(lease.total_seconds(), MAX_WAIT_SECONDS)
    waited = 0.0
    while waited < deadline:
        with transaction():
            ref = db.session.execute(select(Order.provider_ref).where(Order.id == order_pk)).scalar_one()
        if ref is not None:
            return
        sleep(WAIT_STEP_SECONDS)
        waited += WAIT_STEP_SECONDS
    raise ProviderUnavailable("The payment is still being created at the provider; retry shortly.")
