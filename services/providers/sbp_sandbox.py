"""The sandbox SBP gateway: mints NSPK-shaped links locally; payments are simulated via /sandbox."""

from __future__ import annotations

from services.money import to_minor_units
from services.providers import nspk
from services.providers.base import CreatedPayment, PaymentDraft
from webhook_config import Settings

SANDBOX_BANK = "100000000000"


class SandboxSbp:
    name = "sbp"
    local = True

    def __init__(self, settings: Settings):
        self.settings = settings

    def default_currency(self) -> str:
        return "RUB"

    def currency_problem(self, currency: str) -> str | None:
        return None if currency == "RUB" else "SBP payments are in RUB only"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        qrc_id = nspk.new_qrc_id()
        link = nspk.build_link(qrc_id, SANDBOX_BANK, to_minor_units(draft.amount))
        return CreatedPayment(provider_ref=qrc_id, data={
            "qrcId": qrc_id,
            "qr": link,
            "qrImage": f"{self.settings.server_url}/api/payment/{draft.order_id}/qr.png",
        })
