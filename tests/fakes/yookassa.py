"""Fake YooKassa API v3: payments, refunds, Idempotence-Key replay, error bodies and notifications."""

from __future__ import annotations

import base64
import copy
import hmac
import re
import secrets
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import requests

from .base import FakeServer, RecordedRequest, Response, json_response

_VALUE = re.compile(r"^\d{1,9}(\.\d{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
CONFIRMATION_TYPES = ("redirect", "qr", "embedded", "external", "mobile_application")
ERROR_CODES = {400: "invalid_request", 401: "invalid_credentials", 403: "forbidden", 404: "not_found",
               429: "too_many_requests", 500: "internal_server_error"}
BAD_CREDENTIALS = ("Error in shopId or secret key. Check their validity. "
                   "You can reissue the key in the Merchant Profile")
# The shop keeps what the buyer paid minus the acquiring fee; 3.5 % is a typical card rate.
FEE_RATE = Decimal("0.035")


def yookassa_error(status: int, description: str, code: str | None = None,
                   parameter: str | None = None, retry_after: int | None = None) -> dict[str, Any]:
    """An error body as YooKassa sends it: type, id, code, description and, if any, parameter."""
    body: dict[str, Any] = {"type": "error", "id": str(uuid.uuid4()),
                            "code": code or ERROR_CODES.get(status, "internal_server_error"),
                            "description": description}
    if parameter is not None:
        body["parameter"] = parameter
    if retry_after is not None:
        body["retry_after"] = retry_after
    return body


def _iso(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _object_id() -> str:
    # Shaped like YooKassa's ids (36 chars, "-000f-5000-" in the middle); the SDK checks the length.
    return f"{secrets.token_hex(4)}-000f-5000-{secrets.choice('89ab')}000-{secrets.token_hex(6)}"


def _money(value: Decimal, currency: str) -> dict[str, str]:
    return {"value": f"{value.quantize(Decimal('0.01'))}", "currency": currency}


class _Invalid(Exception):
    def __init__(self, parameter: str, description: str) -> None:
        super().__init__(description)
        self.parameter = parameter


def _amount(body: dict[str, Any], parameter: str = "amount") -> tuple[Decimal, str]:
    amount = body.get(parameter)
    if not isinstance(amount, dict):
        raise _Invalid(parameter, f"Parameter {parameter} is missing or not an object")
    value, currency = amount.get("value"), amount.get("currency")
    # Stricter than the real API on purpose: PROTOCOLS.md §7 says the value is a string with 2 decimals.
    if not isinstance(value, str) or not _VALUE.match(value) or Decimal(value) <= 0:
        raise _Invalid(f"{parameter}.value", f"Invalid {parameter}.value: a positive string like \"100.00\"")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _Invalid(f"{parameter}.currency", f"Invalid {parameter}.currency")
    return Decimal(value), currency


def _check_payment(body: dict[str, Any]) -> tuple[Decimal, str]:
    """Validate a payment request like the API does; return its amount."""
    amount = _amount(body)
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 128):
        raise _Invalid("description", "Description is longer than 128 characters")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise _Invalid("metadata", "Metadata is not an object of at most 16 keys")
        for key, value in metadata.items():
            if len(key) > 32 or not isinstance(value, str) or len(value) > 512:
                raise _Invalid("metadata", f"Invalid metadata key or value: {key}")
    confirmation = body.get("confirmation")
    if confirmation is not None:
        if not isinstance(confirmation, dict) or confirmation.get("type") not in CONFIRMATION_TYPES:
            raise _Invalid("confirmation.type", "Invalid confirmation type")
        if confirmation["type"] == "redirect" and not confirmation.get("return_url"):
            raise _Invalid("confirmation.return_url", "return_url is required for the redirect confirmation")
    method = body.get("payment_method_data")
    if method is not None and (not isinstance(method, dict) or not isinstance(method.get("type"), str)):
        raise _Invalid("payment_method_data.type", "Invalid payment_method_data")
    return amount


class FakeYooKassa(FakeServer):
    """YooKassa REST API under {url}/v3/, HTTP Basic auth shop_id:secret_key."""

    default_failure_status = 500

    def __init__(self, shop_id: str = "123456", secret_key: str = "test_secret_key", port: int = 0) -> None:
        super().__init__(port)
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.refund_status = "succeeded"
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payments_created = 0
        self.refunds_created = 0
        self._replies: dict[tuple[str, str], tuple[Any, Response]] = {}

    @property
    def api_url(self) -> str:
        """Value for the API base URL (no trailing slash), like https://api.yookassa.ru/v3."""
        return f"{self.url}/v3"

    @property
    def auth(self) -> tuple[str, str]:
        """(shop_id, secret_key), ready for requests' auth=."""
        return self.shop_id, self.secret_key

    def failure_body(self, status: int) -> Any:
        return yookassa_error(status, "Injected failure")

    def error_next(self, status: int, description: str = "Injected error", code: str | None = None,
                   parameter: str | None = None, n: int = 1, path: str | None = None,
                   retry_after: int | None = None) -> None:
        """Answer the next n requests (ending with `path`, if given) with a YooKassa error body."""
        self.fail_next(n, status, yookassa_error(status, description, code, parameter, retry_after), path=path)

    def payment(self, payment_id: str) -> dict[str, Any]:
        """A copy of a stored payment."""
        with self._lock:
            return copy.deepcopy(self.payments[payment_id])

    def refund(self, refund_id: str) -> dict[str, Any]:
        """A copy of a stored refund."""
        with self._lock:
            return copy.deepcopy(self.refunds[refund_id])

    def succeed(self, payment_id: str, method_type: str = "bank_card") -> dict[str, Any]:
        """The buyer paid: status succeeded, captured, refundable; return a copy."""
        with self._lock:
            payment = self.payments[payment_id]
            if payment["status"] not in ("pending", "waiting_for_capture"):
                raise ValueError(f"payment {payment_id} is already {payment['status']}")
            amount = Decimal(payment["amount"]["value"])
            currency = payment["amount"]["currency"]
            payment.setdefault("payment_method", {"type": method_type, "id": payment_id, "saved": False})
            payment.update({"status": "succeeded", "paid": True, "captured_at": _iso(), "refundable": True,
                            "income_amount": _money(amount - amount * FEE_RATE, currency),
                            "refunded_amount": _money(Decimal(0), currency)})
            return copy.deepcopy(payment)

    def cancel(self, payment_id: str, party: str = "yoo_money",
               reason: str = "expired_on_confirmation") -> dict[str, Any]:
        """The payment failed or expired: status canceled with cancellation_details; return a copy."""
        with self._lock:
            payment = self.payments[payment_id]
            if payment["status"] not in ("pending", "waiting_for_capture"):
                raise ValueError(f"payment {payment_id} is already {payment['status']}")
            payment.update({"status": "canceled", "paid": False,
                            "cancellation_details": {"party": party, "reason": reason}})
            return copy.deepcopy(payment)

    def set_refund_status(self, refund_id: str, status: str, party: str = "yoo_money",
                          reason: str = "rejected_by_payee") -> dict[str, Any]:
        """Settle a pending refund as succeeded or canceled; return a copy."""
        with self._lock:
            refund = self.refunds[refund_id]
            if refund["status"] != "pending" or status not in ("succeeded", "canceled"):
                raise ValueError(f"refund {refund_id} is {refund['status']}, cannot become {status}")
            refund["status"] = status
            if status == "succeeded":
                self._add_refunded(refund)
            else:
                refund["cancellation_details"] = {"party": party, "reason": reason}
            return copy.deepcopy(refund)

    def notification(self, event: str, object_id: str) -> dict[str, Any]:
        """An HTTP notification body for a payment.* or refund.* event, with the object's current state."""
        with self._lock:
            store = self.refunds if event.startswith("refund.") else self.payments
            return {"type": "notification", "event": event, "object": copy.deepcopy(store[object_id])}

    def send_notification(self, url: str, event: str, object_id: str, body: Any = None,
                          headers: dict[str, str] | None = None, timeout: float = 10.0) -> requests.Response:
        """POST a notification to url; YooKassa signs nothing, so the receiver must GET the object back."""
        payload = self.notification(event, object_id) if body is None else body
        return requests.post(url, json=payload, headers=headers, timeout=timeout)

    def handle(self, req: RecordedRequest) -> Response:
        if not self._authorized(req.headers.get("authorization", "")):
            return json_response(yookassa_error(401, BAD_CREDENTIALS), 401)
        route = re.fullmatch(r"/v3/(payments|refunds)(?:/([^/]+))?", req.path.rstrip("/"))
        if route is None:
            return json_response(yookassa_error(404, "Unknown API method"), 404)
        kind, object_id = route.groups()
        if req.method == "GET" and object_id is not None:
            return self._get(kind, object_id)
        if req.method != "POST" or object_id is not None:
            return Response(405)
        if "application/json" not in req.headers.get("content-type", ""):
            return Response(415)
        return self._post(kind, req)

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, f"{self.shop_id}:{self.secret_key}".encode())

    def _get(self, kind: str, object_id: str) -> Response:
        with self._lock:
            found = (self.payments if kind == "payments" else self.refunds).get(object_id)
            if found is None:
                return json_response(yookassa_error(404, f"{kind[:-1].capitalize()} doesn't exist or "
                                                         "access is denied", parameter=f"{kind[:-1]}_id"), 404)
            return json_response(copy.deepcopy(found))

    def _post(self, kind: str, req: RecordedRequest) -> Response:
        key = req.headers.get("idempotence-key", "")
        if not key or len(key) > 64:
            return json_response(yookassa_error(400, "Idempotence-Key header is missing or longer than 64 "
                                                     "characters", parameter="Idempotence-Key"), 400)
        with self._lock:
            seen = self._replies.get((kind, key))
            if seen is not None:
                if seen[0] == req.json:
                    return seen[1]
                return json_response(yookassa_error(400, "Idempotence key duplicated",
                                                    parameter="Idempotence-Key"), 400)
            if not isinstance(req.json, dict):
                return json_response(yookassa_error(400, "Request body is not a JSON object"), 400)
            try:
                created = self._create_payment(req.json) if kind == "payments" else self._create_refund(req.json)
            except _Invalid as exc:
                return json_response(yookassa_error(400, str(exc), parameter=exc.parameter), 400)
            # The reply is frozen now: a replay returns the object as first created, not its later state.
            reply = json_response(copy.deepcopy(created))
            self._replies[(kind, key)] = (copy.deepcopy(req.json), reply)
            return reply

    def _create_payment(self, body: dict[str, Any]) -> dict[str, Any]:
        value, currency = _check_payment(body)
        payment_id = _object_id()
        payment: dict[str, Any] = {
            "id": payment_id, "status": "pending", "paid": False, "amount": _money(value, currency),
            "recipient": {"account_id": self.shop_id, "gateway_id": "100500"},
            "created_at": _iso(), "test": True, "refundable": False, "metadata": dict(body.get("metadata") or {}),
        }
        if body.get("description") is not None:
            payment["description"] = body["description"]
        if body.get("payment_method_data") is not None:
            payment["payment_method"] = {**body["payment_method_data"], "id": payment_id, "saved": False}
        confirmation = body.get("confirmation")
        if confirmation is not None:
            payment["confirmation"] = dict(confirmation)
            if confirmation["type"] == "redirect":
                payment["confirmation"]["confirmation_url"] = (
                    f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={payment_id}")
            elif confirmation["type"] == "qr":
                payment["confirmation"]["confirmation_data"] = (
                    f"https://qr.nspk.ru/{secrets.token_hex(16).upper()}?type=02&bank=100000000022"
                    f"&sum={int(value * 100)}&cur={currency}")
        self.payments[payment_id] = payment
        self.payments_created += 1
        return payment

    def _create_refund(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments.get(body.get("payment_id") or "")
        if payment is None:
            raise _Invalid("payment_id", "Payment doesn't exist or access is denied")
        if payment["status"] != "succeeded":
            raise _Invalid("payment_id", f"Payment is {payment['status']}: only succeeded payments are refundable")
        value, currency = _amount(body)
        if currency != payment["amount"]["currency"]:
            raise _Invalid("amount.currency", "Refund currency differs from the payment's")
        reserved = sum((Decimal(r["amount"]["value"]) for r in self.refunds.values()
                        if r["payment_id"] == payment["id"] and r["status"] != "canceled"), Decimal(0))
        if value > Decimal(payment["amount"]["value"]) - reserved:
            raise _Invalid("amount.value", "Refund amount exceeds what is left to refund")
        refund: dict[str, Any] = {"id": _object_id(), "payment_id": payment["id"], "status": self.refund_status,
                                  "amount": _money(value, currency), "created_at": _iso()}
        for key in ("description", "metadata"):
            if body.get(key) is not None:
                refund[key] = body[key]
        self.refunds[refund["id"]] = refund
        self.refunds_created += 1
        if refund["status"] == "succeeded":
            self._add_refunded(refund)
        return refund

    def _add_refunded(self, refund: dict[str, Any]) -> None:
        payment = self.payments[refund["payment_id"]]
        total = Decimal(payment["refunded_amount"]["value"]) + Decimal(refund["amount"]["value"])
        payment["refunded_amount"] = _money(total, payment["amount"]["currency"])
        payment["refundable"] = total < Decimal(payment["amount"]["value"])
