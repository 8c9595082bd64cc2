"""Telegram Bot API: the client, the webhook's secret-token check, and payment updates in the gateway's terms."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from services.errors import MalformedPayload, NotConfigured, ProviderRejected, ProviderUnavailable, SignatureInvalid
from services.inbox import PAID, REFUNDED, Notice
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.http import request_json
from webhook_config import Settings

PROVIDER = "telegram"
STARS = "XTR"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TITLE_LIMIT, DESCRIPTION_LIMIT = 32, 255
# Ids and payloads we store go into columns of 128 characters; Telegram's own are far shorter.
MAX_FIELD_LENGTH = 128
MAX_STARS = 10**12


# Event identities: a pre-checkout query by its id, a payment and its refund by the charge id.
def precheckout_key(query_id: str) -> str:
    return f"precheckout:{query_id}"


def charge_key(charge_id: str) -> str:
    return f"charge:{charge_id}"


def refund_key(charge_id: str) -> str:
    return f"refund:{charge_id}"


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

    def create_invoice_link(self, title: str, description: str, payload: str, stars: int) -> str:
        """A Stars invoice link (no provider_token; one price); its payments carry `payload`."""
        link = self.call("createInvoiceLink", {
            "title": title, "description": description, "payload": payload, "currency": STARS,
            "prices": [{"label": title, "amount": stars}],
        })
        if not isinstance(link, str) or not link.startswith("https://"):
            raise ProviderRejected("Telegram createInvoiceLink returned no link")
        return link

    def answer_pre_checkout_query(self, query_id: str, error_message: str | None = None) -> bool:
        """Answer over HTTP (the webhook answers in its response instead; this is for polling set-ups)."""
        params: dict[str, Any] = {"pre_checkout_query_id": query_id, "ok": error_message is None}
        if error_message is not None:
            params["error_message"] = error_message
        return self.call("answerPreCheckoutQuery", params) is True

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


def verify_secret_token(header_value: str | None, configured_secret: str) -> None:
    """Raise NotConfigured without a configured secret, SignatureInvalid unless the header equals it."""
    if not configured_secret:
        raise NotConfigured("Telegram updates are not accepted: TELEGRAM_WEBHOOK_SECRET is not configured.")
    if not header_value or not hmac.compare_digest(header_value.encode(), configured_secret.encode()):
        raise SignatureInvalid(f"The {SECRET_HEADER} header is missing or wrong.")


@dataclass(frozen=True)
class PreCheckoutQuery:
    """A buyer is about to pay a Stars invoice; it must be answered ok or not within 10 seconds."""

    query_id: str
    order_id: str
    currency: str
    amount: Decimal
    payer_id: int | None


def update_id(update: Any) -> int:
    """The update's id; MalformedPayload unless the body is an object with an integer update_id."""
    if not isinstance(update, dict) or not _is_int(update.get("update_id")):
        raise MalformedPayload("A Telegram update is a JSON object with an integer update_id.")
    return update["update_id"]


def pre_checkout_query(update: dict[str, Any]) -> PreCheckoutQuery | None:
    """The update's pre_checkout_query, or None when it carries none."""
    query = update.get("pre_checkout_query")
    if query is None:
        return None
    query = _object(query, "pre_checkout_query")
    return PreCheckoutQuery(
        query_id=_text(query, "id"), order_id=_text(query, "invoice_payload"),
        currency=_text(query, "currency", 10), amount=_stars(query),
        payer_id=_user_id(query.get("from")),
    )


def payment_notice(update: dict[str, Any]) -> Notice | None:
    """A message's successful_payment (PAID) or refunded_payment (REFUNDED) as a Notice, else None.

    provider_ref stays unset: our orders' provider_ref is the invoice link's, not a charge id, so
    the inbox matches these by the orderId in invoice_payload.
    """
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    kinds = (("successful_payment", PAID, charge_key), ("refunded_payment", REFUNDED, refund_key))
    for field_name, action, key in kinds:
        if message.get(field_name) is not None:
            payment = _object(message[field_name], field_name)
            charge_id = _text(payment, "telegram_payment_charge_id")
            return Notice(
                event_key=key(charge_id), event_type=field_name, action=action,
                order_id=_text(payment, "invoice_payload"), amount=_stars(payment),
                currency=_text(payment, "currency", 10), provider_payment_id=charge_id,
                details={"updateId": update["update_id"], "fromId": _user_id(message.get("from")),
                         "chatId": _user_id(message.get("chat"))},
            )
    return None


def webhook_answer(query_id: str, error_message: str | None = None) -> dict[str, Any]:
    """The answerPreCheckoutQuery call carried in the webhook response itself (no extra round trip)."""
    answer: dict[str, Any] = {"method": "answerPreCheckoutQuery", "pre_checkout_query_id": query_id,
                              "ok": error_message is None}
    if error_message is not None:
        answer["error_message"] = error_message
    return answer


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{name} must be an object.")
    return value


def _text(obj: dict[str, Any], key: str, limit: int = MAX_FIELD_LENGTH) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise MalformedPayload(f"{key} must be a string of 1-{limit} characters.")
    return value


def _stars(obj: dict[str, Any]) -> Decimal:
    value = obj.get("total_amount")
    if not _is_int(value) or not 0 <= value < MAX_STARS:
        raise MalformedPayload("total_amount must be a whole number of Stars.")
    return Decimal(value)


def _user_id(user: Any) -> int | None:
    value = user.get("id") if isinstance(user, dict) else None
    return value if _is_int(value) else None


def clip(text: str, limit: int) -> str:
    """Text shortened to `limit` UTF-16 code units (how Telegram counts), ending in … when cut."""
    def units(value: str) -> int:
        return len(value.encode("utf-16-le")) // 2

    if units(text) <= limit:
        return text
    kept = []
    used = 0
    for char in text:
        used += units(char)
        if used > limit - 1:
            break
        kept.append(char)
    return "".join(kept).rstrip() + "…"


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
            payload=draft.order_id, stars=int(draft.amount))
        # One link per order, and payments name the order in invoice_payload: the orderId is the identity.
        return CreatedPayment(provider_ref=f"link:{draft.order_id}", data={"invoiceLink": link})
