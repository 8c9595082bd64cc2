"""The cryptobot worker's task: settle invoices whose webhook never arrived, by asking Crypto Pay."""

from __future__ import annotations

import logging
from datetime import datetime

from services import events, orders
from services.errors import ProviderUnavailable
from services.providers.cryptobot.client import CryptoPayClient
from services.providers.cryptobot.inbound import record_invoice
from services.providers.cryptobot.protocol import PROVIDER
from webhook_config import Settings

logger = logging.getLogger(__name__)

# getInvoices takes up to 1000 ids per call; smaller batches keep each answer quick.
INVOICE_BATCH = 100
# Invoice statuses that settle or close an order; "active" says nothing new.
FINAL_INVOICE_STATUSES = ("paid", "expired")


def reconcile(settings: Settings, now: datetime, client: CryptoPayClient | None = None) -> int:
    """Ask Crypto Pay (getInvoices) about overdue pending orders; ingest paid or expired invoices."""
    client = client or CryptoPayClient(settings)
    pending = {ref: order_id for order_id, ref in orders.overdue_pending(PROVIDER, settings, now)
               if ref.isdigit()}
    refs = list(pending)
    settled = 0
    for start in range(0, len(refs), INVOICE_BATCH):
        batch = refs[start:start + INVOICE_BATCH]
        try:
            invoices = client.get_invoices(invoice_ids=[int(ref) for ref in batch], count=len(batch))
        except ProviderUnavailable as exc:
            logger.warning("CryptoBot reconciliation paused: %s", exc.message, extra={"provider": PROVIDER})
            break
        for invoice in invoices:
            if invoice.get("status") not in FINAL_INVOICE_STATUSES or str(invoice.get("invoice_id")) not in pending:
                continue
            result = record_invoice(invoice, settings, now)
            settled += events.note_reconciled(result, PROVIDER, pending[str(invoice["invoice_id"])])
    logger.info("CryptoBot reconciliation: %d checked, %d settled", len(refs), settled,
                extra={"provider": PROVIDER, "checked": len(refs), "settled": settled})
    return settled
