"""Apps wired to each fake panel, with one way to read a user's expiry and link whatever the panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from services.panels import marzban as marzban_adapter
from services.panels import xui as xui_adapter
from tests.fakes.base import FakeServer, RecordedRequest
from tests.support.admin import ADMIN_KEY, BOT_TOKEN

PANEL_NAMES = ("marzban", "remnawave", "3x-ui")
XUI_SUB_URL = "https://vpn.example.test:2096/sub/"


@dataclass
class WiredPanel:
    """A fake panel, the settings that point the app at it, and panel-neutral reads of its state."""

    name: str
    fake: Any
    env: dict[str, str]
    expiry: Callable[[str], datetime]
    link_is_current: Callable[[str, str], bool]
    # Whether the user may connect at a moment (status and expiry).
    active_at: Callable[[str, datetime], bool]
    # Which requests change the panel's users (as opposed to logins and reads).
    changes: Callable[[RecordedRequest], bool]
    resolution: timedelta = timedelta(milliseconds=1)

    def as_stored(self, moment: datetime) -> datetime:
        """A moment as the panel keeps it: Marzban in whole seconds, the others in milliseconds."""
        return moment - (moment - datetime.min.replace(tzinfo=timezone.utc)) % self.resolution


def wire(name: str, fake: Any) -> WiredPanel:
    """PANEL_TYPE=name with the fake's address and credentials."""
    if name == "marzban":
        return WiredPanel(name, fake, {"MARZBAN_URL": fake.url, "MARZBAN_USERNAME": fake.username,
                                       "MARZBAN_PASSWORD": fake.password},
                          lambda user: datetime.fromtimestamp(fake.user(user)["expire"], timezone.utc),
                          lambda user, url: fake.subscription_is_current(url),
                          lambda user, at: fake.user(user)["status"] == "active"
                          and fake.user(user)["expire"] > at.timestamp(),
                          lambda req: req.method in ("POST", "PUT") and req.path.startswith("/api/user"),
                          timedelta(seconds=1))
    if name == "remnawave":
        return WiredPanel(name, fake, {"REMNAWAVE_URL": fake.url, "REMNAWAVE_TOKEN": fake.token,
                                       "REMNAWAVE_WEBHOOK_SECRET": fake.webhook_secret},
                          lambda user: datetime.fromisoformat(fake.user(user)["expireAt"]),
                          lambda user, url: fake.subscription_is_current(url),
                          lambda user, at: fake.user(user)["status"] == "ACTIVE"
                          and datetime.fromisoformat(fake.user(user)["expireAt"]) > at,
                          lambda req: req.method in ("POST", "PATCH") and req.path == "/api/users")
    return WiredPanel(name, fake, {"XUI_URL": fake.base_url, "XUI_USERNAME": fake.username,
                                   "XUI_PASSWORD": fake.password, "XUI_INBOUND_ID": "1", "XUI_SUB_URL": XUI_SUB_URL},
                      lambda user: datetime.fromtimestamp(fake.client(user)["expiryTime"] / 1000, timezone.utc),
                      lambda user, url: url == XUI_SUB_URL + fake.client(user)["subId"],
                      lambda user, at: fake.client(user)["enable"]
                      and fake.client(user)["expiryTime"] > at.timestamp() * 1000,
                      lambda req: req.method == "POST" and "/panel/api/" in req.path)


def app_env(wired: WiredPanel, **extra: str) -> dict[str, str]:
    """The admin API, buyer messages (queued only) and PANEL_TYPE pointing at the wired fake."""
    return {"ADMIN_API_KEY": ADMIN_KEY, "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "HTTP_TIMEOUT_SECONDS": "1",
            "PANEL_TYPE": wired.name, **wired.env, **extra}


@pytest.fixture(autouse=True)
def fresh_panel_sessions():
    """Marzban's tokens and 3x-ui's logins are cached per process: each test starts and ends without them."""
    marzban_adapter.forget_tokens()
    xui_adapter.forget_logins()
    yield
    marzban_adapter.forget_tokens()
    xui_adapter.forget_logins()


@pytest.fixture(params=PANEL_NAMES)
def wired(request) -> WiredPanel:
    """Each test once per panel, against that panel's fake."""
    fixture = {"marzban": "marzban", "remnawave": "remnawave", "3x-ui": "xui"}[request.param]
    return wire(request.param, request.getfixturevalue(fixture))


def answer_changes_too_late(wired: WiredPanel, monkeypatch, seconds: float) -> None:
    """The panel applies each change, then answers after `seconds`: the caller times out not knowing it landed."""
    fake: FakeServer = wired.fake
    respond = fake._respond

    def respond_then_stall(req: RecordedRequest):
        response = respond(req)
        fake.delay_seconds = seconds if wired.changes(req) and response.status < 300 else 0
        return response

    monkeypatch.setattr(fake, "_respond", respond_then_stall)
