"""The sbp worker's task: settle T-Bank payments whose notification never arrived, by asking GetState."""

from __future__ import annotations

import logging
from datetime import datetime

import simplejson

from services import events, orders
from services.errors import ProviderRejected, ProviderUnavailable
from services.notices import IGNORE, Delivery
from services.providers.sbp.client import TBankClient
from services.providers.sbp.protocol import PROVIDER, notice_from_notification
from webhook_config import Settings

logger = logging.getLogger(__name__)


def reconcile(settings: Settings, now: datetime, client: TBankClient | None = None) -> int:
    """Ask T-Bank (GetState) about overdue pending SBP orders; ingest what a notification would have said."""
    client = client or TBankClient(settings)
    overdue = orders.overdue_pending(PROVIDER, settings, now)
    settled = 0
    for order_id, payment_id in overdue:
        try:
            answer = client.call("GetState", {"PaymentId": payment_id})
            notice = notice_from_notification(answer)
        except ProviderUnavailable as exc:
            logger.warning("T-Bank reconciliation paused: %s", exc.message, extra={"provider": PROVIDER})
            break
        except ProviderRejected as exc:
            logger.warning("T-Bank GetState failed: %s", exc.message, extra={"provider": PROVIDER, "order_id": order_id})
            continue
        if notice.action == IGNORE:
            continue
        body = simplejson.dumps(answer, use_decimal=True).encode()
        delivery = Delivery(provider=PROVIDER, body=body, headers={}, remote_addr=None,
                            verification="reconciled via GetState")
        settled += events.note_reconciled(events.ingest(delivery, notice, settings, now), PROVIDER, order_id)
    logger.info("T-Bank reconciliation: %d checked, %d settled", len(overdue), settled,
                extra={"provider": PROVIDER, "checked": len(overdue), "settled": settled})
    return settled
