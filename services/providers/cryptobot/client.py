"""The Crypto Pay API client (createInvoice, getInvoices, getMe) and payment creation through it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

import requests

from services.db import utcnow
from services.errors import MalformedPayload, NotConfigured, ProviderRejected
from services.http import request_json
from services.money import CRYPTO_ASSETS, normalized
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.cryptobot.protocol import (FIAT_CURRENCIES, MAX_DESCRIPTION, PROVIDER, expires_in,
                                                   invoice_id, invoice_terms)
from webhook_config import Settings


class CryptoPayClient:
    """A thin Crypto Pay API client: POST JSON to {base}{method} with the app token header."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.token = settings.cryptobot_token
        self.base_url = settings.cryptobot_api_url.rstrip("/") + "/"
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The method's `result`; ProviderUnavailable when worth retrying, ProviderRejected otherwise."""
        _, answer = request_json(self.session, "POST", self.base_url + method, json=params or {},
                                 headers={"Crypto-Pay-API-Token": self.token}, timeout=self.timeout,
                                 provider="Crypto Pay")
        if not isinstance(answer, dict) or answer.get("ok") is not True or "result" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else None
            name = error.get("name") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            raise ProviderRejected(f"Crypto Pay {method} failed: {code} {name}")
        return answer["result"]

    def get_me(self) -> dict[str, Any]:
        return self.call("getMe")

    def create_invoice(self, **params: Any) -> dict[str, Any]:
        return self.call("createInvoice", params)

    def get_invoices(self, invoice_ids: list[int] | None = None, status: str | None = None,
                     offset: int = 0, count: int = 100) -> list[dict[str, Any]]:
        """Invoices by id and/or status (`active` or `paid` only: the API refuses other filters)."""
        params: dict[str, Any] = {"offset": offset, "count": count}
        if invoice_ids:
            params["invoice_ids"] = ",".join(str(int(i)) for i in invoice_ids)
        if status:
            params["status"] = status
        result = self.call("getInvoices", params)
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise ProviderRejected("Crypto Pay getInvoices answered without items.")
        return items


class CryptoBotProvider:
    """CryptoBot payments: one Crypto Pay invoice per order, its payload the orderId."""

    name = PROVIDER
    local = False

    def __init__(self, settings: Settings, client: CryptoPayClient | None = None,
                 clock: Callable[[], datetime] = utcnow):
        if not settings.cryptobot_token:
            raise NotConfigured("CryptoBot payments are not configured (CRYPTOBOT_TOKEN).")
        self.client = client or CryptoPayClient(settings)
        self.clock = clock

    def default_currency(self) -> str:
        return "USDT"

    def currency_problem(self, currency: str) -> str | None:
        if currency in CRYPTO_ASSETS or currency in FIAT_CURRENCIES:
            return None
        return "CryptoBot takes a crypto asset (e.g. USDT, TON) or a fiat currency Crypto Pay supports"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        invoice = self.client.create_invoice(
            **invoice_terms(draft.currency),
            # Trailing zeros (NUMERIC(28, 8) on PostgreSQL) dropped: "1.5", not "1.50000000".
            amount=format(normalized(draft.amount), "f"),
            description=draft.description[:MAX_DESCRIPTION],
            payload=draft.order_id,
            expires_in=expires_in(draft.expires_at, self.clock()),
        )
        if not isinstance(invoice, dict):
            raise ProviderRejected("Crypto Pay createInvoice answered without an invoice.")
        try:
            created_id = invoice_id(invoice)
        except MalformedPayload:
            raise ProviderRejected("Crypto Pay createInvoice answered without an invoice_id.") from None
        pay_url = invoice.get("bot_invoice_url") or invoice.get("pay_url")
        if not pay_url:
            raise ProviderRejected("Crypto Pay createInvoice answered without a payment link.")
        data = {"invoiceId": created_id, "payUrl": pay_url, "hash": invoice.get("hash")}
        for key, name in (("mini_app_invoice_url", "miniAppInvoiceUrl"), ("web_app_invoice_url", "webAppInvoiceUrl")):
            if invoice.get(key):
                data[name] = invoice[key]
        return CreatedPayment(provider_ref=str(created_id), data=data)
