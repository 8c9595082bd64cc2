"""Fake T-Bank acquiring API v2 (Init, GetQr, GetState) and notification sender."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import string
import uuid
from typing import Any

import requests

from .base import FakeServer, RecordedRequest, Response, json_response

SBP_BANK_ID = "100000000004"
TOKEN_ERROR = {"ErrorCode": "204", "Message": "Неверный токен. Проверьте пару TerminalKey и SecretKey.",
               "Details": ""}
# Codes other than 204 are this fake's own choice: clients must treat any non-"0" code as an error.
PARAMS_ERROR = "9999"
NOT_FOUND_ERROR = "7"


def tbank_token(params: dict[str, Any], password: str) -> str:
    """T-Bank request/notification Token: root scalars + Password, sorted by key, concatenated, sha256 hex."""
    values: dict[str, Any] = {
        k: v for k, v in params.items()
        if k != "Token" and v is not None and not isinstance(v, (dict, list))
    }
    values["Password"] = password
    text = "".join(_token_str(values[k]) for k in sorted(values))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def sbp_link(qrc_id: str, amount: int, bank: str = SBP_BANK_ID, qr_type: str = "02") -> str:
    """A qr.nspk.ru link with its crc parameter."""
    base = f"https://qr.nspk.ru/{qrc_id}?type={qr_type}&bank={bank}&sum={amount}&cur=RUB"
    return f"{base}&crc={crc16_ccitt_false(base.encode()):04X}"


def _qrc_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "AD" + "".join(secrets.choice(alphabet) for _ in range(30))


class FakeTBank(FakeServer):
    """T-Bank acquiring v2 under {url}/v2/; every call must carry a valid Token."""

    # Minimum SBP amount per T-Bank's docs (10 RUB); set to 0 to disable.
    min_sbp_amount = 1000
    # T-Bank's documented OrderId limit; *verify* against the current docs.
    max_order_id_len = 36
    # Init/GetState answer PaymentId as a string (as T-Bank does); notifications carry a number.
    payment_id_as_string = True

    def __init__(self, terminal_key: str = "TestTerminalKey", password: str = "TestPassword",
                 port: int = 0) -> None:
        super().__init__(port)
        self.terminal_key = terminal_key
        self.password = password
        self.payments: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(4_000_000_001)

    @property
    def api_url(self) -> str:
        """Value for TBANK_API_URL (with trailing slash)."""
        return f"{self.url}/v2/"

    def failure_body(self, status: int) -> Any:
        """T-Bank's front answers HTML on outages."""
        return f"<html><body><h1>{status} Service Unavailable</h1></body></html>"

    def set_status(self, payment_id: int | str, status: str) -> None:
        """Change a payment's status (what GetState reports)."""
        with self._lock:
            self.payments[int(payment_id)]["Status"] = status

    def payment(self, payment_id: int | str) -> dict[str, Any]:
        """A copy of the stored payment."""
        with self._lock:
            return dict(self.payments[int(payment_id)])

    def payment_by_order(self, order_id: str) -> dict[str, Any]:
        """The latest payment created for an OrderId."""
        with self._lock:
            matches = [p for p in self.payments.values() if p["OrderId"] == order_id]
        if not matches:
            raise KeyError(order_id)
        return dict(matches[-1])

    def notification(self, payment_id: int | str, status: str = "CONFIRMED", **extra: Any) -> dict[str, Any]:
        """A signed notification body; `extra` adds or overrides fields (a given Token is kept as is)."""
        p = self.payment(payment_id)
        body: dict[str, Any] = {
            "TerminalKey": self.terminal_key, "OrderId": p["OrderId"],
            "Success": status not in ("REJECTED", "AUTH_FAIL"), "Status": status,
            "PaymentId": int(payment_id), "ErrorCode": "0", "Amount": p["Amount"],
        }
        body.update(extra)
        if "Token" not in extra:
            body["Token"] = tbank_token(body, self.password)
        return body

    def send_notification(self, url: str, payment_id: int | str, status: str = "CONFIRMED",
                          timeout: float = 10.0, **extra: Any) -> requests.Response:
        """Set the status and POST its notification to url, like T-Bank does."""
        self.set_status(payment_id, status)
        body = self.notification(payment_id, status, **extra)
        return requests.post(url, json=body, timeout=timeout)

    def handle(self, req: RecordedRequest) -> Response:
        method = req.path.removeprefix("/v2/")
        handler = {"Init": self._init, "GetQr": self._get_qr, "GetState": self._get_state}.get(method)
        if req.method != "POST" or handler is None:
            return Response(404, "Not Found")
        params = req.json
        if not isinstance(params, dict):
            return self._error(PARAMS_ERROR, "Неверные параметры.", "Тело запроса должно быть JSON-объектом.")
        token = params.get("Token")
        if (params.get("TerminalKey") != self.terminal_key or not isinstance(token, str)
                or not hmac.compare_digest(token, tbank_token(params, self.password))):
            return json_response({"Success": False, **TOKEN_ERROR})
        with self._lock:
            return handler(params)

    def _error(self, code: str, message: str, details: str = "") -> Response:
        return json_response({"Success": False, "ErrorCode": code, "Message": message, "Details": details})

    def _pid(self, payment_id: int) -> int | str:
        return str(payment_id) if self.payment_id_as_string else payment_id

    def _find(self, params: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.payments.get(int(params.get("PaymentId")))
        except (TypeError, ValueError):
            return None

    def _init(self, params: dict[str, Any]) -> Response:
        amount, order_id = params.get("Amount"), params.get("OrderId")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return self._error(PARAMS_ERROR, "Неверные параметры.", "Amount: целое число копеек > 0.")
        if not isinstance(order_id, str) or not 0 < len(order_id) <= self.max_order_id_len:
            return self._error(PARAMS_ERROR, "Неверные параметры.", "OrderId: строка до 36 символов.")
        payment_id = next(self._ids)
        self.payments[payment_id] = {
            "PaymentId": payment_id, "OrderId": order_id, "Amount": amount, "Status": "NEW",
            "Description": params.get("Description"), "NotificationURL": params.get("NotificationURL"),
            "DATA": params.get("DATA"), "RedirectDueDate": params.get("RedirectDueDate"), "QrcId": None,
        }
        return json_response({
            "Success": True, "ErrorCode": "0", "TerminalKey": self.terminal_key, "Status": "NEW",
            "PaymentId": self._pid(payment_id), "OrderId": order_id, "Amount": amount,
            "PaymentURL": f"https://securepay.tinkoff.ru/new/{secrets.token_urlsafe(6)}",
        })

    def _get_qr(self, params: dict[str, Any]) -> Response:
        p = self._find(params)
        if p is None:
            return self._error(NOT_FOUND_ERROR, "Платеж не найден.")
        data_type = params.get("DataType", "PAYLOAD")
        if data_type not in ("PAYLOAD", "IMAGE"):
            return self._error(PARAMS_ERROR, "Неверные параметры.", "DataType: PAYLOAD или IMAGE.")
        if p["Amount"] < self.min_sbp_amount:
            return self._error(PARAMS_ERROR, "Неверные параметры.", "Минимальная сумма оплаты по СБП 10 руб.")
        if p["Status"] not in ("NEW", "FORM_SHOWED"):
            return self._error(PARAMS_ERROR, "Неверный статус транзакции.")
        p["QrcId"] = p["QrcId"] or _qrc_id()
        link = sbp_link(p["QrcId"], p["Amount"])
        data = link if data_type == "PAYLOAD" else _svg(link)
        return json_response({
            "TerminalKey": self.terminal_key, "OrderId": p["OrderId"], "Success": True, "Data": data,
            "PaymentId": p["PaymentId"], "ErrorCode": "0", "RequestKey": str(uuid.uuid4()),
        })

    def _get_state(self, params: dict[str, Any]) -> Response:
        p = self._find(params)
        if p is None:
            return self._error(NOT_FOUND_ERROR, "Платеж не найден.")
        return json_response({
            "TerminalKey": self.terminal_key, "OrderId": p["OrderId"], "Success": True,
            "Status": p["Status"], "PaymentId": self._pid(p["PaymentId"]), "ErrorCode": "0",
            "Amount": p["Amount"],
        })


def _svg(link: str) -> str:
    # Not a scannable QR: the gateway only needs to pass the SVG through.
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 8 8">'
            f'<title>{link.replace("&", "&amp;")}</title><rect width="8" height="8" fill="#fff"/>'
            '<rect x="1" y="1" width="2" height="2"/><rect x="5" y="1" width="2" height="2"/>'
            '<rect x="1" y="5" width="2" height="2"/></svg>')
