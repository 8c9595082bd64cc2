"""Fake merchant backend receiving Standard Webhooks deliveries at /hooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from .base import FakeServer, RecordedRequest, Response, json_response

TOLERANCE_SECONDS = 300


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def standard_webhook_signature(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """webhook-signature value `v1,<base64 HMAC-SHA256>` of `id.timestamp.body`, key from `whsec_<base64>`."""
    raw = body.encode() if isinstance(body, str) else body
    content = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes,
                            tolerance: int | None = TOLERANCE_SECONDS, now: float | None = None) -> str | None:
    """None if the delivery is authentic, else the reason it is not (headers with lower-case names)."""
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        ts = int(stamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    if tolerance is not None and abs((time.time() if now is None else now) - ts) > tolerance:
        return "webhook-timestamp outside the tolerance"
    expected = standard_webhook_signature(secret, msg_id, stamp, body).encode()
    if any(hmac.compare_digest(sig.encode(), expected) for sig in signatures.split() if sig.startswith("v1,")):
        return None
    return "no matching v1 signature"


@dataclass(frozen=True)
class Delivery:
    """One POST to /hooks with its verification result and the status answered."""

    msg_id: str | None
    timestamp: str | None
    signature: str | None
    body: bytes
    json: Any
    valid: bool
    reason: str | None
    status: int

    @property
    def accepted(self) -> bool:
        """Authentic and answered 2xx (i.e. the sender may consider it delivered)."""
        return self.valid and 200 <= self.status < 300


class FakeMerchant(FakeServer):
    """A merchant endpoint at {url}/hooks verifying Standard Webhooks signatures."""

    default_failure_status = 500

    def __init__(self, secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", success_status: int = 204,
                 tolerance_seconds: int | None = TOLERANCE_SECONDS, port: int = 0) -> None:
        super().__init__(port)
        self.secret = secret
        self.success_status = success_status
        self.tolerance_seconds = tolerance_seconds

    @property
    def hook_url(self) -> str:
        """Value for MERCHANT_WEBHOOK_URL."""
        return f"{self.url}/hooks"

    def failure_body(self, status: int) -> Any:
        return {"error": "merchant backend failure"}

    def deliveries(self) -> list[Delivery]:
        """Every POST to /hooks so far (including injected failures), oldest first."""
        return [self._delivery(r) for r in self.requests if r.path == "/hooks" and r.method == "POST"]

    def accepted(self) -> list[Delivery]:
        """Deliveries that were authentic and answered 2xx."""
        return [d for d in self.deliveries() if d.accepted]

    def events(self) -> list[Any]:
        """Parsed bodies of accepted deliveries, one per webhook-id (the merchant's own dedupe)."""
        seen: dict[str, Any] = {}
        for d in self.accepted():
            seen.setdefault(d.msg_id or "", d.json)
        return list(seen.values())

    def wait_for_deliveries(self, count: int = 1, timeout: float = 5.0, accepted: bool = True) -> list[Delivery]:
        """Block until `count` deliveries (accepted ones by default) arrived; return them."""
        def wanted(r: RecordedRequest) -> bool:
            return r.path == "/hooks" and r.method == "POST" and (
                not accepted or (200 <= r.status < 300))
        return [self._delivery(r) for r in self.wait_for(wanted, timeout, count)]

    def handle(self, req: RecordedRequest) -> Response:
        if req.path != "/hooks":
            return json_response({"error": "not found"}, 404)
        if req.method != "POST":
            return json_response({"error": "method not allowed"}, 405)
        reason = verify_standard_webhook(self.secret, req.headers, req.body, self.tolerance_seconds)
        if reason is not None:
            return json_response({"error": reason}, 401)
        if self.success_status == 204:
            return Response(204)
        return json_response({"received": True}, self.success_status)

    def _delivery(self, r: RecordedRequest) -> Delivery:
        # Re-verified without the clock so a late read does not turn old deliveries invalid.
        reason = verify_standard_webhook(self.secret, r.headers, r.body, tolerance=None)
        if reason is None and r.status == 401:
            reason = "webhook-timestamp outside the tolerance"
        return Delivery(r.headers.get("webhook-id"), r.headers.get("webhook-timestamp"),
                        r.headers.get("webhook-signature"), r.body, r.json,
                        reason is None, reason, r.status)
