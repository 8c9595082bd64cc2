"""The sbp worker's task: settle T-Bank payments whose notification never arrived, by asking GetState.

Pending orders past RECONCILE_AFTER_SECONDS are asked about, and so are expired orders twice after their deadline
(LATE_PAYMENT_CHECKS): T-Bank closes a payment at its RedirectDueDate, which is the order's deadline, but a transfer
the buyer sent just before it can be confirmed just after, when the order has already expired.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import simplejson

from services import events, orders
from services.errors import ProviderRejected, ProviderUnavailable
from services.notices import IGNORE, PAID, Delivery
from services.providers.sbp.client import TBankClient
from services.providers.sbp.protocol import PROVIDER, notice_from_notification
from webhook_config import Settings

logger = logging.getLogger(__name__)

LATE_PAYMENT_CHECKS = (timedelta(minutes=5), timedelta(minutes=30))


class _Paused(Exception):
    """T-Bank cannot be reached: nothing more to ask this turn."""


def reconcile(settings: Settings, now: datetime, client: TBankClient | None = None) -> int:
    """Ask T-Bank (GetState) about overdue pending SBP orders and recently expired ones; ingest what a notification
    would have said."""
    client = client or TBankClient(settings)
    overdue = orders.overdue_pending(PROVIDER, settings, now)
    late = orders.expired_recently(PROVIDER, settings, now, LATE_PAYMENT_CHECKS)
    settled = 0
    try:
        for order_id, payment_id in overdue:
            settled += _settle(client, order_id, payment_id, settings, now, late=False)
        for order_id, payment_id in late:
            settled += _settle(client, order_id, payment_id, settings, now, late=True)
    except _Paused:
        pass
    checked = len(overdue) + len(late)
    logger.info("T-Bank reconciliation: %d checked, %d settled", checked, settled,
                extra={"provider": PROVIDER, "checked": checked, "settled": settled})
    return settled


def _settle(client: TBankClient, order_id: str, payment_id: str, settings: Settings, now: datetime, *,
            late: bool) -> int:
    try:
        answer = client.call("GetState", {"PaymentId": payment_id})
        notice = notice_from_notification(answer)
    except ProviderUnavailable as exc:
        logger.warning("T-Bank reconciliation paused: %s", exc.message, extra={"provider": PROVIDER})
        raise _Paused from None
    except ProviderRejected as exc:
        logger.warning("T-Bank GetState failed: %s", exc.message, extra={"provider": PROVIDER, "order_id": order_id})
        return 0
    # Of an expired order only a payment is news; its closing (DEADLINE_EXPIRED) says what the order already says.
    if notice.action == IGNORE or (late and notice.action != PAID):
        return 0
    body = simplejson.dumps(answer, use_decimal=True).encode()
    delivery = Delivery(provider=PROVIDER, body=body, headers={}, remote_addr=None,
                        verification="reconciled via GetState")
    return events.note_reconciled(events.ingest(delivery, notice, settings, now), PROVIDER, order_id)
