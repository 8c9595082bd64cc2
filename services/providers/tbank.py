"""T-Bank acquiring API v2: the real SBP gateway (Init + GetQr, GetState) and its notifications."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests

from services.errors import MalformedPayload, ProviderRejected, SignatureInvalid
from services.inbox import CANCELLED, EXPIRED, FAILED, IGNORE, PAID, REFUNDED, Notice
from services.money import to_minor_units
from services.providers import nspk
from services.providers.base import CreatedPayment, PaymentDraft
from services.providers.http import request_json
from webhook_config import Settings

# Only CONFIRMED grants access; the rest settle or close the order, or are noted only.
STATUS_ACTIONS = {
    "CONFIRMED": PAID,
    "REFUNDED": REFUNDED,
    "REJECTED": FAILED,
    "CANCELED": CANCELLED,
    "REVERSED": CANCELLED,
    "DEADLINE_EXPIRED": EXPIRED,
}


def _token_value(value: Any) -> str:
    # T-Bank concatenates booleans as lower-case JSON literals; str(True) would break the check.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def token(params: dict[str, Any], password: str) -> str:
    """The request/notification Token: root-level scalars (not Token) plus Password, sorted by key, SHA-256."""
    fields = {k: v for k, v in params.items() if k != "Token" and not isinstance(v, (dict, list)) and v is not None}
    fields["Password"] = password
    joined = "".join(_token_value(fields[key]) for key in sorted(fields))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def verify_notification(payload: Any, terminal_key: str, password: str) -> None:
    """Raise SignatureInvalid unless the notification carries our TerminalKey and a correct Token."""
    if not isinstance(payload, dict) or not isinstance(payload.get("Token"), str):
        raise SignatureInvalid("The notification carries no Token.")
    expected = token(payload, password)
    if not hmac.compare_digest(expected.encode(), payload["Token"].lower().encode("utf-8", "replace")):
        raise SignatureInvalid("The notification Token does not match.")
    if not hmac.compare_digest(str(payload.get("TerminalKey", "")).encode(), terminal_key.encode()):
        raise SignatureInvalid("The notification is for another terminal.")


def _kopecks(value: Any) -> int:
    """Amount in whole kopecks: a JSON integer (or a string of digits); int() would truncate 100.5 to 100."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"Amount {value!r} is not a whole number of kopecks")


def notice_from_notification(payload: dict[str, Any]) -> Notice:
    """Translate a verified notification; dedupe identity is (PaymentId, Status)."""
    try:
        payment_id = str(payload["PaymentId"])
        status = str(payload["Status"])
        amount = Decimal(_kopecks(payload["Amount"])) / 100
    except (KeyError, TypeError, ValueError):
        raise MalformedPayload("The notification lacks PaymentId, Status or an integer Amount.") from None
    action = STATUS_ACTIONS.get(status, IGNORE)
    if action == PAID and payload.get("Success") is not True:
        action = IGNORE
    return Notice(
        event_key=f"{payment_id}:{status}",
        event_type=status,
        action=action,
        order_id=str(payload["OrderId"]) if payload.get("OrderId") is not None else None,
        provider_ref=payment_id,
        amount=amount,
        currency="RUB",
        provider_payment_id=payment_id,
        details={"errorCode": payload.get("ErrorCode"), "success": payload.get("Success")},
    )


# T-Bank's OrderId holds at most 36 characters; ours may have 64. Notifications
# are matched by PaymentId first, so a shortened OrderId still finds its order.
TBANK_ORDER_ID_LENGTH = 36


def tbank_order_id(order_id: str) -> str:
    if len(order_id) <= TBANK_ORDER_ID_LENGTH:
        return order_id
    return f"{order_id[:27]}-{hashlib.sha256(order_id.encode()).hexdigest()[:8]}"


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

    name = "sbp"
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
