"""The one interface every VPN panel implements, and what the core knows of panels."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Protocol

import requests

from services.errors import ProviderUnavailable

# Marzban's limit (3-32 of a-z 0-9 _) is the strictest of the panels; Remnawave takes 3-36 of
# A-Z a-z 0-9 _ -, and 3x-ui takes any unique client email, so one name fits all three.
_USERNAME_LIMIT = 32


class PanelUnreachable(ProviderUnavailable):
    """No answer at all (connection refused, timeout), as opposed to an answer with a 5xx status."""

    code = "panel_unreachable"


class PanelSession(requests.Session):
    """Raises PanelUnreachable for transport failures, so callers can count them apart from 5xx answers."""

    def __init__(self, panel: str):
        super().__init__()
        self.panel = panel

    def request(self, method, url, *args, **kwargs):
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.Timeout:
            raise PanelUnreachable(f"{self.panel} did not answer within {kwargs.get('timeout')} s") from None
        except requests.RequestException as exc:
            raise PanelUnreachable(f"{self.panel} is unreachable: {type(exc).__name__}") from None


class SubscriptionPanel(Protocol):
    """A VPN panel holding one user per purchase; both calls return the user's absolute subscription URL.

    Expiries are absolute (computed from our purchase record), never "add N days": a repeated or
    retried call leaves the panel where one call would.
    """

    name: str

    def ensure_user(self, username: str, expire_at: datetime, telegram_id: int | None = None) -> str:
        """Create the user (for this buyer), or set its expiry if it exists."""

    def revoke(self, username: str) -> str:
        """Regenerate the user's subscription link (and proxy credentials)."""


def panel_username(telegram_id: int, plan: str) -> str:
    """A stable panel username per buyer and plan: tg<id>_<plan>, with a hash when the plan needed cleaning."""
    cleaned = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", plan.lower())).strip("_")
    name = f"tg{telegram_id}_{cleaned}".rstrip("_")
    if cleaned == plan and len(name) <= _USERNAME_LIMIT:
        return name
    # Distinct plans ("Pro" and "pro", long names sharing a prefix) must not share a panel user.
    digest = hashlib.sha256(plan.encode()).hexdigest()[:6]
    return f"{name[:_USERNAME_LIMIT - 7].rstrip('_')}_{digest}"
