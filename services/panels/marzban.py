"""The Marzban panel (PROTOCOLS.md §5): one user per purchase, expiry in Unix seconds, a cached admin token."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from services.errors import ProviderRejected
from services.http import request_json
from services.panels.base import PanelSession
from webhook_config import Settings

logger = logging.getLogger(__name__)


# Admin tokens by (panel URL, admin username), shared by every MarzbanPanel of the process.
_tokens: dict[tuple[str, str], str] = {}
_tokens_lock = threading.Lock()


class MarzbanPanel:
    """Marzban's REST API with a cached admin token, logging in again once when a call answers 401."""

    name = "marzban"

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.base_url = settings.marzban_url.rstrip("/")
        self.public_url = (settings.marzban_public_url or settings.marzban_url).rstrip("/")
        self.username = settings.marzban_username
        self.password = settings.marzban_password
        self.proxies = settings.marzban_proxies
        self.inbounds = settings.marzban_inbounds
        self.timeout = settings.http_timeout
        self.session = session or PanelSession("Marzban")

    def ensure_user(self, username: str, expire_at: datetime, telegram_id: int | None = None) -> str:
        # Marzban's users have no field for the buyer's Telegram id.
        expire = _unix(expire_at)
        status, body = self._call("PUT", f"/api/user/{quote(username, safe='')}", json={"expire": expire})
        if status == 404:
            status, body = self._call("POST", "/api/user", json=self._new_user(username, expire))
            if status == 409:
                # Created meanwhile by a concurrent sync: set the expiry on it instead.
                status, body = self._call("PUT", f"/api/user/{quote(username, safe='')}", json={"expire": expire})
        return self._subscription_url(status, body, f"saving user {username}")

    def revoke(self, username: str) -> str:
        status, body = self._call("POST", f"/api/user/{quote(username, safe='')}/revoke_sub")
        return self._subscription_url(status, body, f"revoking the subscription of {username}")

    def _new_user(self, username: str, expire: int) -> dict[str, Any]:
        return {"username": username, "proxies": self.proxies, "inbounds": self.inbounds, "expire": expire,
                "data_limit": 0, "data_limit_reset_strategy": "no_reset", "status": "active",
                "note": "created by the payment gateway"}

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        token = self._token()
        status, body = self._send(method, path, token, **kwargs)
        if status == 401:
            status, body = self._send(method, path, self._login(stale=token), **kwargs)
            if status == 401:
                raise ProviderRejected("Marzban refused a fresh admin token.")
        return status, body

    def _send(self, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any]:
        return request_json(self.session, method, self.base_url + path, timeout=self.timeout, provider="Marzban",
                            headers={"Authorization": f"Bearer {token}"}, **kwargs)

    def _token(self) -> str:
        with _tokens_lock:
            token = _tokens.get((self.base_url, self.username))
        return token or self._login(stale=None)

    def _login(self, stale: str | None) -> str:
        """Log in once for all threads: whoever finds the stale token still cached replaces it."""
        key = (self.base_url, self.username)
        with _tokens_lock:
            current = _tokens.get(key)
            if current is not None and current != stale:
                return current
            status, body = request_json(
                self.session, "POST", self.base_url + "/api/admin/token", timeout=self.timeout,
                provider="Marzban", data={"username": self.username, "password": self.password})
            token = body.get("access_token") if isinstance(body, dict) else None
            if status != 200 or not isinstance(token, str) or not token:
                _tokens.pop(key, None)
                raise ProviderRejected(f"Marzban login failed (HTTP {status}): check MARZBAN_USERNAME "
                                       "and MARZBAN_PASSWORD.")
            _tokens[key] = token
            # The host only: a URL may carry credentials (https://user:pass@panel).
            logger.info("logged in to Marzban", extra={"panel": urlsplit(self.base_url).hostname})
            return token

    def _subscription_url(self, status: int, body: Any, what: str) -> str:
        if status >= 300:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ProviderRejected(f"Marzban refused {what} (HTTP {status}): {str(detail)[:300]}")
        url = body.get("subscription_url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderRejected(f"Marzban's answer to {what} has no subscription_url.")
        # Without a configured prefix Marzban answers a path (/sub/<token>): make it absolute.
        return url if url.startswith(("http://", "https://")) else urljoin(self.public_url + "/", url.lstrip("/"))


def _unix(moment: datetime) -> int:
    """Unix seconds for Marzban's `expire`; never 0, which would mean "never expires"."""
    return max(1, int(moment.timestamp()))


def forget_tokens() -> None:
    """Drop cached admin tokens (tests; or after changing the panel's credentials)."""
    with _tokens_lock:
        _tokens.clear()
