"""Buy Me a Coffee: payments on the creator's page, matched to orders by the orderId in the buyer's message."""

from __future__ import annotations

from services.openapi import webhook
from services.providers.base import ProviderPlugin
from services.providers.bmc import inbound, protocol, sample

PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=protocol.BmcProvider,
    read_stored=inbound.read_stored,
    samples={"bmc": sample.donation},
    operations={("POST", "/bmc-webhook"): webhook(
        "Buy Me a Coffee event", "X-Signature-Sha256", "Hex HMAC-SHA256 of the raw body, keyed with the secret.")},
)
