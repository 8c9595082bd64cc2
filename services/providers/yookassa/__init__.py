"""YooKassa: card and SBP payments on YooKassa's page, unsigned notifications verified by source address and
by fetching the object back, refunds, and reconciliation of what a lost notification would have said."""

from __future__ import annotations

from services.openapi import ACKNOWLEDGEMENT, PROVIDER_PAYLOAD, Operation
from services.providers.base import RUB_PRICE, ProviderPlugin
from services.providers.yookassa import client, inbound, protocol, sample, worker
from webhook_config import Settings


def _periodic(settings: Settings) -> dict:
    return {"reconcile": worker.reconcile} if settings.yookassa_shop_id and settings.yookassa_secret_key else {}


NOTIFICATION = Operation(
    "YooKassa notification", "webhooks", ACKNOWLEDGEMENT, body=PROVIDER_PAYLOAD, errors=(400, 403, 413, 502),
    description="YooKassa signs nothing: the client address must be in YOOKASSA_ALLOWED_IPS (else 403), and the "
                "payment or refund named is fetched back with GET; only that object is stored and applied, "
                "deduplicated by its id and fetched status. 503 when the API is unreachable, so YooKassa "
                "redelivers; 502 when it refuses the lookup.")

PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.YooKassaPayments,
    read_stored=inbound.read_stored,
    periodic=_periodic,
    samples={protocol.PROVIDER: sample.succeeded_notification},
    operations={("POST", "/webhook/yookassa"): NOTIFICATION},
    payment_methods=protocol.PAYMENT_METHODS,
    catalog_price=RUB_PRICE,
    refund=inbound.refund,
)
