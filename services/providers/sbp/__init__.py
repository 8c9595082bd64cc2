"""SBP (Faster Payments) QR codes: T-Bank acquiring in production, a local sandbox for trying things out."""

from __future__ import annotations

from services.providers.base import ProviderPlugin
from services.providers.sbp import client, inbound, protocol, sample, worker
from webhook_config import Settings


def _periodic(settings: Settings) -> dict:
    # The sandbox settles through its own endpoint: there is nothing to poll.
    return {} if settings.sandbox else {"reconcile": worker.reconcile}


PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.payments,
    read_stored=inbound.read_stored,
    periodic=_periodic,
    samples={"tbank": sample.tbank_confirmed},
)
