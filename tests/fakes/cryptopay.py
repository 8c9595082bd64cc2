"""Fake Crypto Pay API (CryptoBot): getMe, createInvoice, getInvoices, and a webhook sender."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import requests

from .base import FakeServer, RecordedRequest, Response, json_response

CRYPTO_ASSETS = {"USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC", "SOL", "DOGE", "NOT"}
FIAT_CURRENCIES = {"USD", "EUR", "RUB", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD",
                   "THB", "INR", "BRL", "IDR", "AZN", "AED", "PLN", "ILS"}
_AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,18})?$")
UNAUTHORIZED = {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}


def crypto_pay_signature(token: str, body: bytes) -> str:
    """crypto-pay-api-signature: HMAC-SHA256 hex of the raw body, key = sha256(token) digest."""
    return hmac.new(hashlib.sha256(token.encode()).digest(), body, hashlib.sha256).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


class FakeCryptoPay(FakeServer):
    """Crypto Pay API under {url}/api/, authenticated by the Crypto-Pay-API-Token header."""

    bot_username = "CryptoTestnetBot"

    def __init__(self, token: str = "1234:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", port: int = 0) -> None:
        super().__init__(port)
        self.token = token
        self.invoices: dict[int, dict[str, Any]] = {}
        self._invoice_ids = itertools.count(528_890)
        self._update_ids = itertools.count(1001)

    @property
    def api_url(self) -> str:
        """Value for CRYPTOBOT_API_URL (with trailing slash)."""
        return f"{self.url}/api/"

    def failure_body(self, status: int) -> Any:
        return {"ok": False, "error": {"code": status, "name": "INTERNAL_ERROR"}}

    def sign(self, body: bytes) -> str:
        """Signature header value for a webhook body."""
        return crypto_pay_signature(self.token, body)

    def invoice(self, invoice_id: int) -> dict[str, Any]:
        """A copy of a stored invoice."""
        with self._lock:
            return dict(self.invoices[int(invoice_id)])

    def mark_paid(self, invoice_id: int, paid_amount: str | None = None,
                  paid_asset: str | None = None) -> dict[str, Any]:
        """Mark an invoice paid (by default in its own asset and amount); return a copy."""
        with self._lock:
            inv = self.invoices[int(invoice_id)]
            asset = paid_asset or inv.get("asset") or "USDT"
            amount = paid_amount or inv["amount"]
            inv.update({
                "status": "paid", "paid_asset": asset, "paid_amount": str(amount),
                "fee_asset": asset, "fee_amount": str(Decimal(str(amount)) * Decimal("0.03")),
                "paid_at": _iso(_now()), "paid_anonymously": False, "paid_usd_rate": "1.00",
            })
            return dict(inv)

    def expire(self, invoice_id: int) -> None:
        """Mark an invoice expired."""
        with self._lock:
            self.invoices[int(invoice_id)]["status"] = "expired"

    def webhook_body(self, invoice_id: int, update_id: int | None = None) -> bytes:
        """Compact JSON invoice_paid update (marks the invoice paid if still active)."""
        with self._lock:
            if self.invoices[int(invoice_id)]["status"] == "active":
                self.mark_paid(invoice_id)
            update = {
                "update_id": next(self._update_ids) if update_id is None else update_id,
                "update_type": "invoice_paid", "request_date": _iso(_now()),
                "payload": self.invoice(invoice_id),
            }
        return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()

    def send_webhook(self, url: str, invoice_id: int, body: bytes | None = None,
                     signature: str | None = None, timeout: float = 10.0) -> requests.Response:
        """POST an invoice_paid webhook to url, signed unless `signature` overrides it."""
        body = self.webhook_body(invoice_id) if body is None else body
        headers = {"Content-Type": "application/json",
                   "crypto-pay-api-signature": self.sign(body) if signature is None else signature}
        return requests.post(url, data=body, headers=headers, timeout=timeout)

    def handle(self, req: RecordedRequest) -> Response:
        if not req.path.startswith("/api/"):
            return json_response({"ok": False, "error": {"code": 404, "name": "NOT_FOUND"}}, 404)
        given = req.headers.get("crypto-pay-api-token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return json_response(UNAUTHORIZED, 401)
        method = req.path.removeprefix("/api/")
        handler = {"getMe": self._get_me, "createInvoice": self._create_invoice,
                   "getInvoices": self._get_invoices}.get(method)
        if handler is None or req.method not in ("GET", "POST"):
            return json_response({"ok": False, "error": {"code": 405, "name": "METHOD_NOT_FOUND"}}, 405)
        with self._lock:
            return handler(req.params())

    def _ok(self, result: Any) -> Response:
        return json_response({"ok": True, "result": result})

    def _bad(self, name: str) -> Response:
        return json_response({"ok": False, "error": {"code": 400, "name": name}}, 400)

    def _get_me(self, params: dict[str, Any]) -> Response:
        return self._ok({"app_id": 1, "name": "Fake app", "payment_processing_bot_username": self.bot_username})

    def _create_invoice(self, p: dict[str, Any]) -> Response:
        currency_type = p.get("currency_type", "crypto")
        amount = p.get("amount")
        if currency_type not in ("crypto", "fiat"):
            return self._bad("CURRENCY_TYPE_INVALID")
        if not isinstance(amount, str) or not _AMOUNT.match(amount) or Decimal(amount) <= 0:
            return self._bad("AMOUNT_INVALID")
        inv: dict[str, Any] = {"currency_type": currency_type}
        if currency_type == "crypto":
            if p.get("asset") not in CRYPTO_ASSETS:
                return self._bad("ASSET_INVALID")
            inv["asset"] = p["asset"]
        else:
            if p.get("fiat") not in FIAT_CURRENCIES:
                return self._bad("FIAT_INVALID")
            inv["fiat"] = p["fiat"]
            accepted = p.get("accepted_assets")
            if accepted is not None:
                assets = accepted.split(",") if isinstance(accepted, str) else list(accepted)
                if not assets or not set(assets) <= CRYPTO_ASSETS:
                    return self._bad("ACCEPTED_ASSETS_INVALID")
                inv["accepted_assets"] = assets
        payload, description = p.get("payload"), p.get("description")
        if payload is not None and len(str(payload).encode()) > 4096:
            return self._bad("PAYLOAD_TOO_LONG")
        if description is not None and len(str(description)) > 1024:
            return self._bad("DESCRIPTION_TOO_LONG")
        expires_in = p.get("expires_in")
        if expires_in is not None:
            try:
                expires_in = int(expires_in)
            except (TypeError, ValueError):
                return self._bad("EXPIRES_IN_INVALID")
            if not 1 <= expires_in <= 2_678_400:
                return self._bad("EXPIRES_IN_INVALID")
        invoice_id, invoice_hash = next(self._invoice_ids), "IV" + secrets.token_hex(5)
        created = _now()
        bot_url = f"https://t.me/{self.bot_username}?start={invoice_hash}"
        inv.update({
            "invoice_id": invoice_id, "hash": invoice_hash, "amount": amount, "status": "active",
            "bot_invoice_url": bot_url, "pay_url": bot_url,
            "mini_app_invoice_url": f"https://t.me/{self.bot_username}/app?startapp=invoice-{invoice_hash}",
            "web_app_invoice_url": f"https://testnet-app.send.tg/invoices/{invoice_hash}",
            "created_at": _iso(created), "allow_comments": _bool(p.get("allow_comments", True)),
            "allow_anonymous": _bool(p.get("allow_anonymous", True)),
        })
        if expires_in is not None:
            inv["expiration_date"] = _iso(created + timedelta(seconds=expires_in))
        for key in ("description", "hidden_message", "paid_btn_name", "paid_btn_url", "payload"):
            if p.get(key) is not None:
                inv[key] = str(p[key])
        self.invoices[invoice_id] = inv
        return self._ok(dict(inv))

    def _get_invoices(self, p: dict[str, Any]) -> Response:
        items = list(self.invoices.values())
        ids = p.get("invoice_ids")
        if ids is not None:
            try:
                wanted = {int(i) for i in (ids.split(",") if isinstance(ids, str) else ids) if str(i).strip()}
            except ValueError:
                return self._bad("INVOICE_IDS_INVALID")
            items = [i for i in items if i["invoice_id"] in wanted]
        status = p.get("status")
        if status is not None:
            if status not in ("active", "paid"):
                return self._bad("STATUS_INVALID")
            items = [i for i in items if i["status"] == status]
        for key in ("asset", "fiat"):
            if p.get(key) is not None:
                items = [i for i in items if i.get(key) == p[key]]
        try:
            offset, count = int(p.get("offset", 0)), int(p.get("count", 100))
        except (TypeError, ValueError):
            return self._bad("COUNT_INVALID")
        if not 1 <= count <= 1000 or offset < 0:
            return self._bad("COUNT_INVALID")
        return self._ok({"items": [dict(i) for i in items[offset:offset + count]]})
