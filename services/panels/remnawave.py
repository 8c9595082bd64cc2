"""The Remnawave panel API (PROTOCOLS.md §8): one user per purchase, an absolute `expireAt`, links by revoke.

The panel's relative `actions/extend` is never used: it adds days on every call, so a retried call
would add them twice. Users are found by username, which v2.x and v3.x both serve, and addressed by
`uuid` (v2.x) or numeric `id` (v3.x), whichever the user object carries.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote

import requests

from services.db import utcnow
from services.errors import NotConfigured, ProviderRejected
from services.http import request_json
from services.panels.base import PanelSession
from webhook_config import Settings

logger = logging.getLogger(__name__)

PANEL = "remnawave"
USER_NOT_FOUND = "A025"
USERNAME_TAKEN = "A019"
ACTIVE, DISABLED = "ACTIVE", "DISABLED"
# PATCH refuses an expireAt that is not in the future by the panel's clock: an expiry closer than this
# (a refund, a lapsed purchase) disables the user instead of moving its expireAt.
FUTURE_MARGIN = timedelta(minutes=1)


class RemnawavePanel:
    """Remnawave's REST API with a Bearer API token."""

    name = PANEL

    def __init__(self, settings: Settings, session: requests.Session | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.base_url = settings.remnawave_url.rstrip("/")
        self.token = settings.remnawave_token
        self.squads = list(settings.remnawave_squads)
        self.timeout = settings.http_timeout
        self.session = session or PanelSession("Remnawave")
        self.clock = clock

    def ensure_user(self, username: str, expire_at: datetime, telegram_id: int | None = None) -> str:
        user = self._find(username)
        if user is None:
            status, body = self._call("POST", "/api/users", json=self._new_user(username, expire_at, telegram_id))
            if _error_code(body) != USERNAME_TAKEN:
                return _subscription_url(_result(status, body, f"creating user {username}"))
            # Created meanwhile by a concurrent sync: set the expiry on it instead.
            user = self._find(username)
            if user is None:
                raise ProviderRejected(f"Remnawave says user {username} exists but does not show it.")
        status, body = self._call("PATCH", "/api/users", json=self._changes(user, username, expire_at))
        return _subscription_url(_result(status, body, f"updating user {username}"))

    def revoke(self, username: str) -> str:
        user = self._find(username)
        if user is None:
            raise ProviderRejected(f"Remnawave has no user {username} to revoke (HTTP 404 {USER_NOT_FOUND}).")
        status, body = self._call("POST", f"/api/users/{quote(str(_key(user)), safe='')}/actions/revoke",
                                  json={"revokeOnlyPasswords": False})
        return _subscription_url(_result(status, body, f"revoking the subscription of {username}"))

    def _ended(self, expire_at: datetime) -> bool:
        return expire_at <= self.clock() + FUTURE_MARGIN

    def _new_user(self, username: str, expire_at: datetime, telegram_id: int | None) -> dict[str, Any]:
        user: dict[str, Any] = {"username": username, "expireAt": _iso(expire_at),
                                "status": DISABLED if self._ended(expire_at) else ACTIVE,
                                "description": "created by the payment gateway"}
        if telegram_id is not None:
            user["telegramId"] = telegram_id
        if self.squads:
            user["activeInternalSquads"] = self.squads
        return user

    def _changes(self, user: dict[str, Any], username: str, expire_at: datetime) -> dict[str, Any]:
        """The PATCH body: a future expiry (re-enabling a disabled user: it was paid for), or disable."""
        if self._ended(expire_at):
            return {"username": username, "status": DISABLED}
        changes: dict[str, Any] = {"username": username, "expireAt": _iso(expire_at)}
        if user.get("status") == DISABLED:
            changes["status"] = ACTIVE
        return changes

    def _find(self, username: str) -> dict[str, Any] | None:
        status, body = self._call("GET", f"/api/users/by-username/{quote(username, safe='')}")
        if status == 404 and _error_code(body) == USER_NOT_FOUND:
            return None
        return _result(status, body, f"looking up user {username}")

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body = request_json(self.session, method, self.base_url + path, timeout=self.timeout,
                                    provider="Remnawave", headers=self._headers(), **kwargs)
        if status in (401, 403):
            # The token is wrong, expired or lacks a scope: an operator must fix REMNAWAVE_TOKEN.
            raise NotConfigured(f"Remnawave refused the API token (HTTP {status} {_error_code(body) or ''}): "
                                "check REMNAWAVE_TOKEN and its scopes.")
        return status, body

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.base_url.startswith("http://"):
            # Called directly rather than through its TLS proxy, the panel's proxy check closes the
            # connection unless these say the request came through one (PROTOCOLS.md §8).
            headers.update({"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
        return headers


def _result(status: int, body: Any, what: str) -> dict[str, Any]:
    """The user object from the {"response": …} envelope; ProviderRejected for any refusal."""
    if status >= 300:
        raise ProviderRejected(f"Remnawave refused {what} (HTTP {status}): {_error_text(body)}")
    user = body.get("response") if isinstance(body, dict) else None
    if not isinstance(user, dict):
        raise ProviderRejected(f"Remnawave's answer to {what} has no user object.")
    return user


def _subscription_url(user: dict[str, Any]) -> str:
    url = user.get("subscriptionUrl")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ProviderRejected("Remnawave's user object has no absolute subscriptionUrl.")
    return url


def _key(user: dict[str, Any]) -> Any:
    """What the panel's /api/users/{…} routes take: uuid on v2.x, the numeric id on v3.x."""
    key = user.get("uuid") or user.get("id")
    if key is None:
        raise ProviderRejected("Remnawave's user object has neither uuid nor id.")
    return key


def _error_code(body: Any) -> str | None:
    return body.get("errorCode") if isinstance(body, dict) else None


def _error_text(body: Any) -> str:
    """The panel's error (`errorCode`, `message`) or a validation error's fields, shortened."""
    if not isinstance(body, dict):
        return "no details"
    text = f"{body.get('errorCode') or ''} {body.get('message') or ''}".strip()
    issues = body.get("errors")
    if isinstance(issues, list):
        fields = [f"{'.'.join(map(str, issue.get('path') or []))}: {issue.get('message')}"
                  for issue in issues if isinstance(issue, dict)]
        text = f"{text} ({'; '.join(fields)})"
    return text[:300] or "no details"


def _iso(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, as the panel writes its own dates."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
