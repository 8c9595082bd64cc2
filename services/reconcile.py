"""Settling payments whose webhook never arrived (by asking the provider) and expiring unpaid orders.

Reconciled events go through the same inbox as webhooks, under the same event keys,
so whichever of the two comes second is a duplicate and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import simplejson
from sqlalchemy import select

from services import cryptobot, inbox, metrics, orders
from services.db import db, transaction
from services.errors import ProviderRejected, ProviderUnavailable
from services.models import Order
from services.providers import tbank
from services.providers.cryptobot import PROVIDER as CRYPTOBOT
from services.providers.cryptobot import CryptoPayClient
from services.providers.tbank import TBankClient
from webhook_config import Settings

logger = logging.getLogger(__name__)

# getInvoices takes up to 1000 ids per call; smaller batches keep each answer quick.
INVOICE_BATCH = 100
# Orders looked at per turn; the rest wait for the next turn, oldest first.
MAX_ORDERS_PER_TURN = 1000
EXPIRY_BATCH = 200
# Invoice statuses that settle or close an order; "active" says nothing new.
FINAL_INVOICE_STATUSES = ("paid", "expired")


def overdue_pending(provider: str, settings: Settings, now: datetime) -> list[tuple[str, str]]:
    """(orderId, provider_ref) of this provider's pending orders older than RECONCILE_AFTER_SECONDS."""
    cutoff = now - timedelta(seconds=settings.reconcile_after_seconds)
    with transaction():
        rows = db.session.execute(
            select(Order.order_id, Order.provider_ref)
            .where(Order.provider == provider, Order.status == orders.PENDING,
                   Order.provider_ref.is_not(None), Order.created_at <= cutoff)
            .order_by(Order.created_at).limit(MAX_ORDERS_PER_TURN)
        ).all()
    return [(order_id, ref) for order_id, ref in rows]


def reconcile_cryptobot(settings: Settings, now: datetime, client: CryptoPayClient | None = None) -> int:
    """Ask Crypto Pay (getInvoices) about overdue pending orders; ingest paid or expired invoices."""
    client = client or CryptoPayClient(settings)
    pending = {ref: order_id for order_id, ref in overdue_pending(CRYPTOBOT, settings, now)
               if ref.isdigit()}
    refs = list(pending)
    settled = 0
    for start in range(0, len(refs), INVOICE_BATCH):
        batch = refs[start:start + INVOICE_BATCH]
        try:
            invoices = client.get_invoices(invoice_ids=[int(ref) for ref in batch], count=len(batch))
        except ProviderUnavailable as exc:
            logger.warning("CryptoBot reconciliation paused: %s", exc.message, extra={"provider": "cryptobot"})
            break
        for invoice in invoices:
            if invoice.get("status") not in FINAL_INVOICE_STATUSES or str(invoice.get("invoice_id")) not in pending:
                continue
            result = cryptobot.record_invoice(invoice, settings, now)
            settled += _note(result, "cryptobot", pending[str(invoice["invoice_id"])])
    logger.info("CryptoBot reconciliation: %d checked, %d settled", len(refs), settled,
                extra={"provider": "cryptobot", "checked": len(refs), "settled": settled})
    return settled


def reconcile_tbank(settings: Settings, now: datetime, client: TBankClient | None = None) -> int:
    """Ask T-Bank (GetState) about overdue pending SBP orders; ingest what a notification would have said."""
    client = client or TBankClient(settings)
    overdue = overdue_pending("sbp", settings, now)
    settled = 0
    for order_id, payment_id in overdue:
        try:
            answer = client.call("GetState", {"PaymentId": payment_id})
            notice = tbank.notice_from_notification(answer)
        except ProviderUnavailable as exc:
            logger.warning("T-Bank reconciliation paused: %s", exc.message, extra={"provider": "sbp"})
            break
        except ProviderRejected as exc:
            logger.warning("T-Bank GetState failed: %s", exc.message, extra={"provider": "sbp", "order_id": order_id})
            continue
        if notice.action == inbox.IGNORE:
            continue
        body = simplejson.dumps(answer, use_decimal=True).encode()
        delivery = inbox.Delivery(provider="sbp", body=body, headers={}, remote_addr=None,
                                  verification="reconciled via GetState")
        settled += _note(inbox.ingest(delivery, notice, settings, now), "sbp", order_id)
    logger.info("T-Bank reconciliation: %d checked, %d settled", len(overdue), settled,
                extra={"provider": "sbp", "checked": len(overdue), "settled": settled})
    return settled


def _note(result: inbox.IngestResult, provider: str, order_id: str) -> int:
    """Log a reconciled event; 1 when it was new (not already stored by a webhook)."""
    metrics.record_reconciliation(provider, result.outcome)
    if result.duplicate:
        return 0
    logger.info("%s order settled by reconciliation: %s", provider, result.outcome,
                extra={"provider": provider, "order_id": order_id, "event_id": result.event_id})
    return 1


def expire_orders(provider: str, settings: Settings, now: datetime) -> int:
    """Move this provider's pending orders past expires_at to expired (announcing order.expired)."""
    with transaction():
        due = db.session.execute(
            select(Order.order_id)
            .where(Order.provider == provider, Order.status == orders.PENDING, Order.expires_at <= now)
            .order_by(Order.expires_at).limit(EXPIRY_BATCH)
        ).scalars().all()
    expired = 0
    for order_id in due:
        with transaction():
            order = orders.find_order(order_id, lock=True)
            # Re-checked under the lock: a payment may have landed since the list was read.
            changed = (order is not None and order.status == orders.PENDING and order.expires_at <= now
                       and orders.change_status(order, orders.EXPIRED, settings, now))
        if changed:
            expired += 1
            logger.info("order expired unpaid", extra={"provider": provider, "order_id": order_id})
    return expired
