"""CryptoBot (Crypto Pay): invoices, invoice_paid webhooks, and reconciliation by getInvoices."""

from __future__ import annotations

from services.openapi import webhook
from services.providers.base import AMOUNT_AND_CURRENCY_PRICE, ProviderPlugin
from services.providers.cryptobot import client, inbound, protocol, sample, worker
from webhook_config import Settings


def _periodic(settings: Settings) -> dict:
    return {"reconcile": worker.reconcile} if settings.cryptobot_token else {}


PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.CryptoBotProvider,
    read_stored=inbound.read_stored,
    periodic=_periodic,
    catalog_price=AMOUNT_AND_CURRENCY_PRICE,
    samples={"cryptobot": sample.paid_update},
    operations={("POST", "/webhook/cryptobot"): webhook(
        "Crypto Pay update", "Crypto-Pay-Api-Signature",
        "Hex HMAC-SHA256 of the raw body, keyed with SHA-256 of the app token.")},
)
