"""Helpers for the admin API, console and panel tests: apps wired to the fake Marzban, paid orders, staff."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher, profiles

from services import audit, users
from services.db import db, transaction, utcnow
from services.models import OutboxMessage
from services.panels import marzban as marzban_adapter
from tests.conftest import AUTH

ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BOT_TOKEN = "123456:test-bot-token"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fresh_panel_tokens():
    """The Marzban adapter caches admin tokens per panel: each test starts and ends without one."""
    marzban_adapter.forget_tokens()
    yield
    marzban_adapter.forget_tokens()


@pytest.fixture
def app(make_app, marzban):
    """The app wired to the fake Marzban; a module that imports this fixture uses it instead of conftest's."""
    return make_app(**panel_env(marzban))


def panel_env(marzban, **extra: str) -> dict[str, str]:
    """Settings for the admin API and a Marzban panel served by the fake (buyer messages are queued only)."""
    return {"ADMIN_API_KEY": ADMIN_KEY, "PANEL_TYPE": "marzban", "MARZBAN_URL": marzban.url,
            "MARZBAN_USERNAME": marzban.username, "MARZBAN_PASSWORD": marzban.password,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "HTTP_TIMEOUT_SECONDS": "3", **extra}


def create_order(client, order_id: str = "order-1", **body: Any) -> dict[str, Any]:
    response = client.post("/api/payment", json={"amount": 100, "orderId": order_id, **body}, headers=AUTH)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def pay(client, created: dict[str, Any]) -> dict[str, Any]:
    """Settle a sandbox SBP order through the same path a gateway notification takes."""
    response = client.post(f"/sandbox/sbp/{created['qrcId']}/pay", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def paid_subscription(client, order_id: str = "sub-1", telegram_id: int = 42, plan: str = "pro",
                      days: int = 30) -> dict[str, Any]:
    created = create_order(client, order_id, telegramId=telegram_id, subscription={"plan": plan, "days": days})
    pay(client, created)
    return client.get(f"/api/status/{order_id}", headers=AUTH).get_json()


def outbox_rows(app, channel: str | None = None, kind: str | None = None) -> list[OutboxMessage]:
    """The outbox rows (of one channel and kind), oldest first, read in an app context of their own."""
    with app.app_context(), transaction():
        query = db.select(OutboxMessage).order_by(OutboxMessage.id).execution_options(populate_existing=True)
        if channel:
            query = query.where(OutboxMessage.channel == channel)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list(db.session.execute(query).scalars())


def staff(app, email: str = "admin@example.test", role: str = "admin",
          password: str = PASSWORD) -> users.StaffUser:
    with app.app_context():
        return users.create_user(email, role, password, audit.cli_actor(), utcnow())


@pytest.fixture
def cheap_hashing(monkeypatch):
    """argon2 at its cheapest parameters, so tests that log in many times stay fast (production keeps defaults)."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))
    users._dummy_hash.cache_clear()
    yield
    users._dummy_hash.cache_clear()
