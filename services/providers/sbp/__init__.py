"""SBP (Faster Payments) QR codes: T-Bank acquiring in production, a local sandbox for trying things out."""

from __future__ import annotations

from services.openapi import API_TOKEN, Operation
from services.providers.base import RUB_PRICE, ProviderPlugin
from services.providers.sbp import client, inbound, protocol, sample, worker
from webhook_config import Settings

NOTIFICATION = {
    "type": "object", "additionalProperties": True,
    "required": ["TerminalKey", "OrderId", "Success", "Status", "PaymentId", "ErrorCode", "Amount", "Token"],
    "properties": {
        "TerminalKey": {"type": "string"}, "OrderId": {"type": "string"}, "Success": {"type": "boolean"},
        "Status": {"type": "string"}, "PaymentId": {"type": "integer"},
        "ErrorCode": {"type": "string"}, "Amount": {"type": "integer", "description": "Kopecks."},
        "Token": {"type": "string", "description": "SHA-256 over the sorted root scalars plus the password."},
    },
}


def _periodic(settings: Settings) -> dict:
    # The sandbox settles through its own endpoint: there is nothing to poll.
    return {} if settings.sandbox else {"reconcile": worker.reconcile}


PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.payments,
    read_stored=inbound.read_stored,
    periodic=_periodic,
    catalog_price=RUB_PRICE,
    samples={"tbank": sample.tbank_confirmed},
    operations={
        ("POST", "/sandbox/sbp/{qrc_id}/pay"): Operation(
            "Pay a sandbox SBP payment", "sandbox", "SandboxPaidSchema", security=API_TOKEN,
            description="Only while SBP_GATEWAY=sandbox (404 otherwise); takes the same path a gateway "
                        "notification takes."),
        ("POST", "/webhook/sbp/tbank"): Operation(
            "T-Bank acquiring notification", "webhooks", None, body=NOTIFICATION, errors=(400, 401, 413),
            text_response="OK", description="Authenticated by the Token field in the body. The answer is the plain "
                                            "text OK for every stored notification, repeats and ignored statuses too."),
    },
)
