"""Merchant webhooks: each order event POSTed to MERCHANT_WEBHOOK_URL, signed per Standard Webhooks."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import requests
import simplejson
from standardwebhooks.webhooks import Webhook

from services.errors import NotConfigured
from services.http import post
from services.outbox import Job
from webhook_config import Settings


def webhook_id(job: Job) -> str:
    """The event's webhook-id: one per outbox row, the same on every retry (receivers dedupe on it)."""
    return f"msg_{job.id}"


def serialize(payload: dict) -> str:
    """The stored event as compact JSON; amounts stay exact decimals."""
    return simplejson.dumps(payload, use_decimal=True, ensure_ascii=False, separators=(",", ":"))


def signed_headers(secret: str, msg_id: str, now: datetime, body: str) -> dict[str, str]:
    """webhook-id, webhook-timestamp (this attempt's time) and webhook-signature over `id.timestamp.body`."""
    moment = now.astimezone(timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
    }


class MerchantWebhooks:
    """The handler for channel "merchant"."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.url = settings.merchant_webhook_url
        self.secret = settings.merchant_webhook_secret
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def __call__(self, job: Job, now: datetime) -> int:
        if not (self.url and self.secret):
            raise NotConfigured("Merchant webhooks are not configured (MERCHANT_WEBHOOK_URL, MERCHANT_WEBHOOK_SECRET).")
        body = serialize(job.payload)
        headers = {"Content-Type": "application/json", "User-Agent": "webhook-gateway",
                   **signed_headers(self.secret, webhook_id(job), now, body)}
        return post(self.session, self.url, body.encode("utf-8"), headers, timeout=self.timeout,
                    receiver="The merchant's webhook endpoint")
