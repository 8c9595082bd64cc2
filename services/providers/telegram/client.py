"""The Telegram Bot API client, and Stars payments (invoice links) created through it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import requests

from services.errors import NotConfigured, ProviderRejected, ProviderUnavailable
from services.http import request_json
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.telegram.protocol import (DESCRIPTION_LIMIT, PROVIDER, STARS, SUBSCRIPTION_PERIOD_SECONDS,
                                                  TITLE_LIMIT, clip)
from webhook_config import Settings


class TelegramRejected(ProviderRejected):
    """The Bot API refused a call (ok: false): permanent; `blocked` when the user blocked the bot (403)."""

    def __init__(self, method: str, error_code: int | None, description: str, parameters: dict[str, Any]):
        super().__init__(f"Telegram {method} failed: {error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    @property
    def blocked(self) -> bool:
        return self.error_code == 403


class TelegramClient:
    """Bot API calls at {TELEGRAM_API_URL}/bot<token>/<method>, JSON in, `result` out."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.token = settings.telegram_bot_token
        self.base_url = settings.telegram_api_url.rstrip("/")
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call any Bot API method and return its `result`.

        Raises ProviderUnavailable (retryable; `retry_after` from parameters.retry_after) for network
        trouble, timeouts, 5xx and 429, and TelegramRejected (a permanent ProviderRejected) for every
        other refusal, e.g. 403 "bot was blocked by the user" or 400 "Bad Request: …".
        """
        if not self.token:
            raise NotConfigured("The Telegram bot is not configured (TELEGRAM_BOT_TOKEN).")
        # The URL holds the bot token: request_json never puts the URL into its errors.
        _, body = request_json(self.session, "POST", f"{self.base_url}/bot{self.token}/{method}",
                               json=params or {}, timeout=self.timeout, provider="Telegram")
        if not isinstance(body, dict):
            raise ProviderRejected(f"Telegram answered {method} without a JSON object")
        if body.get("ok") is True:
            return body.get("result")
        code = body.get("error_code") if isinstance(body.get("error_code"), int) else None
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        description = str(body.get("description") or "no description")
        if code is not None and (code == 429 or code >= 500):
            retry_after = parameters.get("retry_after")
            number = isinstance(retry_after, (int, Decimal)) and not isinstance(retry_after, bool)
            seconds = float(retry_after) if number and retry_after > 0 else None
            raise ProviderUnavailable(f"Telegram {method} failed: {code} {description}", retry_after=seconds)
        raise TelegramRejected(method, code, description, parameters)

    def create_invoice_link(self, title: str, description: str, payload: str, stars: int,
                            subscription_period: int | None = None) -> str:
        """A Stars invoice link (no provider_token; one price); its payments carry `payload`.

        With `subscription_period` the link sells a subscription Telegram charges again every period.
        """
        params: dict[str, Any] = {"title": title, "description": description, "payload": payload, "currency": STARS,
                                  "prices": [{"label": title, "amount": stars}]}
        if subscription_period is not None:
            params["subscription_period"] = subscription_period
        link = self.call("createInvoiceLink", params)
        if not isinstance(link, str) or not link.startswith("https://"):
            raise ProviderRejected("Telegram createInvoiceLink returned no link")
        return link

    def edit_user_star_subscription(self, user_id: int, charge_id: str, is_canceled: bool) -> bool:
        """Stop (or allow again) the renewals of the subscription the charge started; the paid period runs on."""
        return self.call("editUserStarSubscription", {"user_id": user_id, "telegram_payment_charge_id": charge_id,
                                                      "is_canceled": is_canceled}) is True

    def answer_pre_checkout_query(self, query_id: str, error_message: str | None = None) -> bool:
        """Answer over HTTP (the webhook answers in its response instead; this is for polling set-ups)."""
        params: dict[str, Any] = {"pre_checkout_query_id": query_id, "ok": error_message is None}
        if error_message is not None:
            params["error_message"] = error_message
        return self.call("answerPreCheckoutQuery", params) is True

    def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        """Give a Stars payment back to the user who paid it; True when Telegram did."""
        return self.call("refundStarPayment", {"user_id": user_id, "telegram_payment_charge_id": charge_id}) is True

    def set_webhook(self, url: str, secret_token: str, allowed_updates: list[str],
                    drop_pending_updates: bool = False) -> bool:
        """Have Telegram POST the bot's updates to `url`, each with `secret_token` in SECRET_HEADER."""
        return self.call("setWebhook", {
            "url": url, "secret_token": secret_token, "allowed_updates": allowed_updates,
            "drop_pending_updates": drop_pending_updates,
        }) is True

    def get_webhook_info(self) -> dict[str, Any]:
        """The webhook Telegram delivers to: url, pending_update_count, last_error_message, …"""
        info = self.call("getWebhookInfo")
        return info if isinstance(info, dict) else {}


def cancel_renewal(settings: Settings, renewal: dict[str, Any]) -> None:
    """editUserStarSubscription(is_canceled=true) for the subscription the first charge started."""
    if not TelegramClient(settings).edit_user_star_subscription(renewal["payerId"], renewal["chargeId"], True):
        raise ProviderRejected("Telegram did not confirm editUserStarSubscription.")


class TelegramStars:
    """Stars payments: an invoice link whose payload is the orderId; paid and refunded via webhook updates."""

    name = PROVIDER
    local = False

    def __init__(self, settings: Settings, client: TelegramClient | None = None):
        if not settings.telegram_bot_token:
            raise NotConfigured("Telegram Stars payments are not configured (TELEGRAM_BOT_TOKEN).")
        self.client = client or TelegramClient(settings)

    def default_currency(self) -> str:
        return STARS

    def currency_problem(self, currency: str) -> str | None:
        return None if currency == STARS else "Telegram Stars payments are in XTR only"

    def create(self, draft: PaymentDraft) -> CreatedPayment:
        text = " ".join(draft.description.split()) or f"Order {draft.order_id}"
        if draft.amount != draft.amount.to_integral_value():
            raise ValueError(f"{draft.amount} is not a whole number of Stars")
        link = self.client.create_invoice_link(
            title=clip(text, TITLE_LIMIT), description=clip(text, DESCRIPTION_LIMIT),
            payload=draft.order_id, stars=int(draft.amount),
            subscription_period=SUBSCRIPTION_PERIOD_SECONDS if draft.recurring else None)
        # One link per order, and payments name the order in invoice_payload: the orderId is the identity.
        return CreatedPayment(provider_ref=f"link:{draft.order_id}", data={"invoiceLink": link})
