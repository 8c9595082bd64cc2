"""SBP payment creation: T-Bank's API (Init + GetQr, GetState), or the sandbox that mints NSPK-shaped links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from services.errors import ProviderRejected
from services.http import request_json
from services.money import to_minor_units
from services.providers.base import CreatedPayment, PaymentDraft, PaymentProvider
from services.providers.sbp import nspk
from services.providers.sbp.protocol import PROVIDER, tbank_order_id, token
from webhook_config import Settings


def payments(settings: Settings) -> PaymentProvider:
    """The gateway SBP_GATEWAY selects."""
    return SandboxSbp(settings) if settings.sandbox else TBankSbp(settings)


class TBankClient:
    """A thin client for the v2 API: every request signed with Token."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.terminal_key = settings.tbank_terminal_key
        self.password = settings.tbank_password
        self.base_url = settings.tbank_api_url.rstrip("/") + "/"
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"TerminalKey": self.terminal_key, **params}
        body["Token"] = token(body, self.password)
        _, answer = request_json(self.session, "POST", self.base_url + method, json=body,
                                 timeout=self.timeout, provider="T-Bank")
        if not isinstance(answer, dict) or answer.get("Success") is not True or str(answer.get("ErrorCode")) != "0":
            message = answer.get("Message") if isinstance(answer, dict) else None
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            raise ProviderRejected(f"T-Bank {method} failed: {code} {message}")
        return answer

    def init(self, order_id: str, kopecks: int, description: str, notification_url: str,
             due: datetime) -> dict[str, Any]:
        return self.call("Init", {
            "Amount": kopecks, "OrderId": order_id, "Description": description[:140],
            "NotificationURL": notification_url,
            "RedirectDueDate": due.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "DATA": {"QR": "true"},
        })

    def get_qr(self, payment_id: str) -> str:
        return str(self.call("GetQr", {"PaymentId": payment_id, "DataType": "PAYLOAD"})["Data"])

    def get_state(self, payment_id: str) -> str:
        return str(self.call("GetState", {"PaymentId": payment_id})["Status"])


class TBankSbp:
    """SBP payments through T-Bank: Init registers the payment, GetQr returns the NSPK link."""

    name = PROVIDER
    local = False

    def __init__(self, settings: Settings, client: TBankClient | None = None):
        self.settings = settings
        self.client = client or TBankClient(settings)

    def default_currency(self) -> str:
        return "RUB"

    def currency_problem(self, currency: str) -> str | None:
        return None if currency == "RUB" else "SBP payments are in RUB only"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        started = self.client.init(tbank_order_id(draft.order_id), to_minor_units(draft.amount), draft.description,
                                   f"{self.settings.server_url}/webhook/sbp/tbank", draft.expires_at)
        payment_id = str(started["PaymentId"])
        link = self.client.get_qr(payment_id)
        return CreatedPayment(provider_ref=payment_id, data={
            "paymentId": payment_id,
            "qrcId": nspk.qrc_id_from_link(link),
            "qr": link,
            "qrImage": f"{self.settings.server_url}/api/payment/{draft.order_id}/qr.png",
        })


SANDBOX_BANK = "100000000000"


class SandboxSbp:
    name = PROVIDER
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
