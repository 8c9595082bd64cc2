"""Helpers for the YooKassa tests: settings pointing at the fake API, payments created through the gateway,
and notifications delivered from one of YooKassa's published addresses."""

from __future__ import annotations

from typing import Any

from services.db import db
from services.models import ProviderEvent
from tests.helpers import create

URL = "/webhook/yookassa"
# Inside YooKassa's published 185.71.76.0/27.
YOOKASSA_IP = "185.71.76.7"
OUTSIDE_IP = "203.0.113.9"


def yookassa_env(fake, **extra: str) -> dict[str, str]:
    return {"YOOKASSA_SHOP_ID": fake.shop_id, "YOOKASSA_SECRET_KEY": fake.secret_key,
            "YOOKASSA_API_URL": fake.api_url, "HTTP_TIMEOUT_SECONDS": "3", **extra}


def create_payment(client, **body: Any):
    """POST /api/payment for a yookassa order: 100 RUB, buyer 42 credited 500, orderId order-1 unless given."""
    return create(client, **{"provider": "yookassa", "telegramId": 42, "credit": 500, **body})


def notify(client, fake, event: str, object_id: str | None = None, body: Any = None, address: str = YOOKASSA_IP,
           headers: dict[str, str] | None = None):
    """A notification as YooKassa sends it (the object's current state at the fake), from `address`."""
    payload = fake.notification(event, object_id) if body is None else body
    return client.post(URL, json=payload, headers=headers or {}, environ_base={"REMOTE_ADDR": address})


def events(app) -> list[ProviderEvent]:
    with app.app_context():
        return list(db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars())


def gets(fake) -> list:
    """The lookups the gateway made at the fake."""
    return [r for r in fake.requests if r.method == "GET"]
