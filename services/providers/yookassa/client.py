"""The YooKassa API v3 client (payments, refunds) and payment creation through it.

Written on services.http.request_json rather than the `yookassa` SDK (docs/sdk-evaluation.md): every call
has our timeout, credentials are per client, Idempotence-Keys are ours (derived from the orderId), and the
Authorization header is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from services.errors import MalformedPayload, NotConfigured, ProviderRejected
from services.http import request_json
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.yookassa import protocol
from services.providers.yookassa.protocol import CURRENCY, PAYMENT, PROVIDER, REFUND
from webhook_config import Settings

logger = logging.getLogger(__name__)

_PATHS = {PAYMENT: "payments", REFUND: "refunds"}


class YooKassaClient:
    """JSON calls to {YOOKASSA_API_URL}{path} with HTTP Basic auth shop id : secret key."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        if not (settings.yookassa_shop_id and settings.yookassa_secret_key):
            raise NotConfigured("YooKassa is not configured (YOOKASSA_SHOP_ID, YOOKASSA_SECRET_KEY).")
        self._auth = (settings.yookassa_shop_id, settings.yookassa_secret_key)
        self.base_url = settings.yookassa_api_url.rstrip("/") + "/"
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             idempotence_key: str | None = None) -> dict[str, Any]:
        """The API's object. ProviderUnavailable (retryable: network, 429, 5xx), NotConfigured (credentials
        refused) or ProviderRejected (anything else) otherwise; the error is logged without credentials."""
        headers = {"Idempotence-Key": idempotence_key} if idempotence_key else {}
        status, answer = request_json(self.session, method, self.base_url + path, json=body, auth=self._auth,
                                      headers=headers, timeout=self.timeout, provider="YooKassa")
        if status >= 400 or not isinstance(answer, dict) or answer.get("type") == "error":
            error = protocol.api_error(status, answer)
            details = answer if isinstance(answer, dict) else {}
            logger.warning("YooKassa %s %s refused: %s", method, path.split("/")[0], error.message, extra={
                "provider": PROVIDER, "http_status": status, "yookassa_error_id": details.get("id"),
                "parameter": details.get("parameter")})
            raise error
        return answer

    def get(self, kind: str, object_id: str) -> dict[str, Any]:
        """GET /v3/payments/{id} or /v3/refunds/{id}: the object as YooKassa holds it now."""
        if not protocol.OBJECT_ID.match(object_id):
            raise MalformedPayload(f"{object_id!r} is not a YooKassa {kind} id.")
        found = self.call("GET", f"{_PATHS[kind]}/{object_id}")
        if found.get("id") != object_id:
            raise ProviderRejected(f"YooKassa answered a {kind} lookup with another object.")
        return found

    def create_payment(self, body: dict[str, Any], idempotence_key: str) -> dict[str, Any]:
        return self.call("POST", "payments", body, idempotence_key)

    def create_refund(self, body: dict[str, Any], idempotence_key: str) -> dict[str, Any]:
        return self.call("POST", "refunds", body, idempotence_key)


class YooKassaPayments:
    """YooKassa payments: one-stage, paid on YooKassa's page (card or SBP), our orderId in the metadata."""

    name = PROVIDER
    local = False

    def __init__(self, settings: Settings, client: YooKassaClient | None = None):
        self.client = client or YooKassaClient(settings)
        self.return_url = settings.yookassa_return_url

    def default_currency(self) -> str:
        return CURRENCY

    def currency_problem(self, currency: str) -> str | None:
        return None if currency == CURRENCY else "YooKassa payments are in RUB only"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        payment = self.client.create_payment(protocol.payment_request(draft, self.return_url),
                                             protocol.idempotence_key(PAYMENT, draft.order_id))
        try:
            payment_id = protocol.object_id(payment)
        except MalformedPayload:
            raise ProviderRejected("YooKassa created a payment without an id.") from None
        confirmation = payment.get("confirmation") if isinstance(payment.get("confirmation"), dict) else {}
        pay_url = confirmation.get("confirmation_url")
        if not isinstance(pay_url, str) or not pay_url.startswith("https://"):
            raise ProviderRejected("YooKassa created a payment without a confirmation URL.")
        return CreatedPayment(provider_ref=payment_id, data={"providerPaymentId": payment_id, "payUrl": pay_url})
