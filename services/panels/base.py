"""The one interface every VPN panel implements, and what the core knows of panels."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Protocol

from services.errors import ProviderUnavailable

_USERNAME_LIMIT = 32


class PanelUnreachable(ProviderUnavailable):
    """No answer at all (connection refused, timeout), as opposed to an answer with a 5xx status."""

    code = "panel_unreachable"


class SubscriptionPanel(Protocol):
    """A VPN panel holding one user per purchase; both calls return the user's absolute subscription URL."""

    name: str

    def ensure_user(self, username: str, expire_at: datetime) -> str:
        """Create the user, or set its expiry if it exists."""

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
