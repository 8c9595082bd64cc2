"""The telegram worker's outbox handlers: buyer notifications through the Bot API, and updates forwarded to
the bot's own backend."""

from __future__ import annotations

from datetime import datetime

import requests
import simplejson

from services.http import post
from services.outbox import DeliveryFailed, Job
from services.providers.telegram.client import TelegramClient, TelegramRejected
from webhook_config import Settings


class BuyerMessages:
    """kind "notify.*": sendMessage(chat_id, text); 429 waits retry_after, 403 (bot blocked) is final."""

    def __init__(self, settings: Settings, client: TelegramClient | None = None):
        self.client = client or TelegramClient(settings)

    def __call__(self, job: Job, now: datetime) -> int:
        try:
            self.client.call("sendMessage", {"chat_id": job.payload["chat_id"], "text": job.payload["text"]})
        except TelegramRejected as exc:
            raise DeliveryFailed(exc.message, retryable=False, status_code=exc.error_code) from None
        return 200


class UpdateForwarder:
    """kind "forward.*": POST the stored update (payload["body"], the raw JSON text) to payload["url"]."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.timeout = settings.http_timeout
        self.session = session or requests.Session()

    def __call__(self, job: Job, now: datetime) -> int:
        body = job.payload["body"]
        if not isinstance(body, str):
            body = simplejson.dumps(body, use_decimal=True, ensure_ascii=False, separators=(",", ":"))
        return post(self.session, job.payload["url"], body.encode("utf-8"), {"Content-Type": "application/json"},
                    timeout=self.timeout, receiver="The update forwarding endpoint")
