"""Fake Telegram Bot API (Stars invoices, webhooks, messages) and update sender."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from typing import Any

import requests

from .base import FakeServer, RecordedRequest, Response, json_response

_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}


def _maybe_json(value: Any) -> Any:
    # Form-encoded calls carry arrays and objects as JSON strings, like the real API accepts.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _chat_key(chat_id: Any) -> Any:
    text = str(chat_id)
    return int(text) if re.fullmatch(r"-?\d+", text) else text


class FakeTelegram(FakeServer):
    """Bot API at {url}/bot<token>/<method>; api_url is the TELEGRAM_API_URL value."""

    default_failure_status = 502

    def __init__(self, bot_token: str = "123456789:AAFakeTelegramBotTokenForTests_0123", port: int = 0) -> None:
        super().__init__(port)
        self.bot_token = bot_token
        self.bot_id = int(bot_token.split(":")[0]) if bot_token.split(":")[0].isdigit() else 1
        self.webhook: dict[str, Any] | None = None
        self.invoice_links: dict[str, dict[str, Any]] = {}
        self.pre_checkout_answers: list[dict[str, Any]] = []
        self.subscription_edits: list[dict[str, Any]] = []
        self.refunds: list[dict[str, Any]] = []
        self.blocked_chats: set[Any] = set()
        self._messages: list[dict[str, Any]] = []
        self._message_ids = itertools.count(1)
        self._update_ids = itertools.count(900_000_001)

    @property
    def api_url(self) -> str:
        """Value for TELEGRAM_API_URL (no trailing slash)."""
        return self.url

    def failure_body(self, status: int) -> Any:
        return {"ok": False, "error_code": status, "description": "Bad Gateway"}

    def rate_limit_next(self, n: int = 1, retry_after: int = 1, method: str | None = None) -> None:
        """Answer the next n calls (of `method`, if given) with 429 and parameters.retry_after."""
        body = {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after}}
        self.fail_next(n, 429, body, path=f"/{method}" if method else None)

    def block_chat(self, chat_id: int | str) -> None:
        """sendMessage to this chat answers 403 'bot was blocked by the user'."""
        with self._lock:
            self.blocked_chats.add(_chat_key(chat_id))

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Messages sent successfully, optionally only to one chat."""
        with self._lock:
            return [dict(m) for m in self._messages if chat_id is None or m["chat_id"] == _chat_key(chat_id)]

    def pre_checkout_update(self, payload: str, total_amount: int, user_id: int = 5551234,
                            query_id: str | None = None) -> dict[str, Any]:
        """An update carrying a pre_checkout_query for a Stars invoice."""
        return {"update_id": next(self._update_ids), "pre_checkout_query": {
            "id": query_id or secrets.token_hex(9), "from": self._user(user_id),
            "currency": "XTR", "total_amount": total_amount, "invoice_payload": payload}}

    def successful_payment_update(self, payload: str, total_amount: int, user_id: int = 5551234,
                                  charge_id: str | None = None) -> dict[str, Any]:
        """An update carrying a message with successful_payment."""
        return self._message_update(user_id, {"successful_payment": {
            "currency": "XTR", "total_amount": total_amount, "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id or "stx" + secrets.token_hex(12),
            "provider_payment_charge_id": ""}})

    def refunded_payment_update(self, payload: str, total_amount: int, charge_id: str,
                                user_id: int = 5551234) -> dict[str, Any]:
        """An update carrying a message with refunded_payment."""
        return self._message_update(user_id, {"refunded_payment": {
            "currency": "XTR", "total_amount": total_amount, "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id}})

    def send_update(self, url: str, update: dict[str, Any], secret_token: str | None = None,
                    timeout: float = 10.0) -> requests.Response:
        """POST an update to url with the secret header (default: the one given to setWebhook)."""
        if secret_token is None and self.webhook:
            secret_token = self.webhook.get("secret_token")
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret_token} if secret_token else {}
        return requests.post(url, json=update, headers=headers, timeout=timeout)

    def handle(self, req: RecordedRequest) -> Response:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", req.path)
        if match is None:
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        if match.group(1) != self.bot_token:
            return json_response(UNAUTHORIZED, 401)
        handler = getattr(self, f"_m_{match.group(2).lower()}", None)
        if handler is None:
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        params = {k: _maybe_json(v) for k, v in req.params().items()}
        with self._lock:
            return handler(params)

    def _ok(self, result: Any, description: str | None = None) -> Response:
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return json_response(body)

    def _bad(self, description: str, code: int = 400) -> Response:
        return json_response({"ok": False, "error_code": code, "description": description}, code)

    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": "Ivan", "language_code": "ru"}

    def _message_update(self, user_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": {"id": user_id, "type": "private", "first_name": "Ivan"},
                   "from": self._user(user_id), **fields}
        return {"update_id": next(self._update_ids), "message": message}

    def _bot(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Fake Bot", "username": "fake_payments_bot",
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    def _m_getme(self, p: dict[str, Any]) -> Response:
        return self._ok(self._bot())

    def _m_setwebhook(self, p: dict[str, Any]) -> Response:
        url, secret = p.get("url", ""), p.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.match(str(secret)):
            return self._bad("Bad Request: secret token contains unallowed characters")
        if url and not str(url).startswith("https://"):
            return self._bad("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        max_connections = int(p.get("max_connections", 40))
        if not 1 <= max_connections <= 100:
            return self._bad("Bad Request: bad webhook: max_connections must be between 1 and 100")
        if not url:
            self.webhook = None
            return self._ok(True, "Webhook was deleted")
        self.webhook = {"url": url, "secret_token": secret, "max_connections": max_connections,
                        "allowed_updates": p.get("allowed_updates"),
                        "drop_pending_updates": str(p.get("drop_pending_updates", False)).lower() == "true"}
        return self._ok(True, "Webhook was set")

    def _m_deletewebhook(self, p: dict[str, Any]) -> Response:
        was_set, self.webhook = self.webhook is not None, None
        return self._ok(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    def _m_getwebhookinfo(self, p: dict[str, Any]) -> Response:
        info = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if self.webhook:
            info.update(url=self.webhook["url"], max_connections=self.webhook["max_connections"])
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return self._ok(info)

    def _m_createinvoicelink(self, p: dict[str, Any]) -> Response:
        title, description = str(p.get("title", "")), str(p.get("description", ""))
        payload, prices = str(p.get("payload", "")), p.get("prices")
        if not 1 <= len(title) <= 32:
            return self._bad("Bad Request: INVOICE_TITLE_INVALID" if title else "Bad Request: title is empty")
        if not 1 <= len(description) <= 255:
            return self._bad("Bad Request: INVOICE_DESCRIPTION_INVALID")
        if not 1 <= len(payload.encode()) <= 128:
            return self._bad("Bad Request: INVOICE_PAYLOAD_INVALID")
        if p.get("currency") != "XTR":
            return self._bad("Bad Request: CURRENCY_INVALID")
        if p.get("provider_token"):
            return self._bad("Bad Request: PROVIDER_TOKEN_INVALID: Stars invoices need an empty provider_token")
        if not isinstance(prices, list) or len(prices) != 1 or not isinstance(prices[0], dict):
            return self._bad("Bad Request: STARS_INVOICE_INVALID: exactly one price is required")
        amount = prices[0].get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or not prices[0].get("label"):
            return self._bad("Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        period = p.get("subscription_period")
        if period is not None and int(period) != 2_592_000:
            return self._bad("Bad Request: SUBSCRIPTION_PERIOD_INVALID")
        link = f"https://t.me/${secrets.token_urlsafe(16)}"
        self.invoice_links[link] = {"title": title, "description": description, "payload": payload,
                                    "amount": amount, "subscription_period": period}
        return self._ok(link)

    def _m_sendmessage(self, p: dict[str, Any]) -> Response:
        if p.get("chat_id") in (None, ""):
            return self._bad("Bad Request: chat_id is empty")
        chat_id, text = _chat_key(p["chat_id"]), str(p.get("text", ""))
        if not text.strip():
            return self._bad("Bad Request: message text is empty")
        if len(text) > 4096:
            return self._bad("Bad Request: message is too long")
        if chat_id in self.blocked_chats:
            return self._bad("Forbidden: bot was blocked by the user", 403)
        message_id = next(self._message_ids)
        self._messages.append({"message_id": message_id, "chat_id": chat_id, "text": text,
                               "parse_mode": p.get("parse_mode"), "reply_markup": p.get("reply_markup")})
        chat = {"id": chat_id, "type": "private", "first_name": "Ivan"}
        return self._ok({"message_id": message_id, "from": self._bot(), "chat": chat,
                         "date": int(time.time()), "text": text})

    def _m_answerprecheckoutquery(self, p: dict[str, Any]) -> Response:
        if not p.get("pre_checkout_query_id"):
            return self._bad("Bad Request: pre_checkout_query_id is empty")
        if "ok" not in p:
            return self._bad("Bad Request: parameter \"ok\" is required")
        ok = str(p["ok"]).lower() == "true"
        if not ok and not p.get("error_message"):
            return self._bad("Bad Request: ERROR_MESSAGE_EMPTY")
        self.pre_checkout_answers.append({"pre_checkout_query_id": p["pre_checkout_query_id"], "ok": ok,
                                          "error_message": p.get("error_message")})
        return self._ok(True)

    def _m_refundstarpayment(self, p: dict[str, Any]) -> Response:
        charge_id, user_id = p.get("telegram_payment_charge_id"), p.get("user_id")
        if not charge_id or user_id in (None, ""):
            return self._bad("Bad Request: user_id and telegram_payment_charge_id are required")
        if any(r["telegram_payment_charge_id"] == charge_id for r in self.refunds):
            return self._bad("Bad Request: CHARGE_ALREADY_REFUNDED")
        self.refunds.append({"user_id": _chat_key(user_id), "telegram_payment_charge_id": charge_id})
        return self._ok(True)

    def _m_edituserstarsubscription(self, p: dict[str, Any]) -> Response:
        if p.get("user_id") in (None, "") or not p.get("telegram_payment_charge_id") or "is_canceled" not in p:
            return self._bad("Bad Request: user_id, telegram_payment_charge_id and is_canceled are required")
        self.subscription_edits.append({"user_id": _chat_key(p["user_id"]),
                                        "telegram_payment_charge_id": p["telegram_payment_charge_id"],
                                        "is_canceled": str(p["is_canceled"]).lower() == "true"})
        return self._ok(True)
