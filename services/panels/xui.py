"""The 3x-ui panel (MHSanaei/3x-ui, PROTOCOLS.md §9): one client per purchase in inbound XUI_INBOUND_ID.

The client's email is the panel username; its expiry (`expiryTime`, Unix milliseconds) is set
absolutely on every sync; its subscription link is XUI_SUB_URL + the client's `subId`, which a
refresh rotates together with the client's UUID. Current releases serve `panel/api/clients/*`,
older ones only the inbound client routes: whichever answers is remembered per panel.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, TypeVar
from urllib.parse import quote, urlsplit

import requests

from services.errors import NotConfigured, ProviderRejected
from services.panels.base import PanelSession
from services.panels.xui_clients import ClientRoutes, InboundRoutes, Routes, RoutesMissing, exchange
from webhook_config import Settings

logger = logging.getLogger(__name__)

PANEL = "3x-ui"
T = TypeVar("T")


@dataclass(frozen=True)
class _Login:
    """A logged-in cookie session and its CSRF token (None on releases without CSRF)."""

    cookies: dict[str, str]
    csrf: str | None


# Shared by every XuiPanel of the process (the panel worker and the bulk refresh's threads): logins by
# (panel URL, username), and the route set each panel URL answered to.
_logins: dict[tuple[str, str], _Login] = {}
_route_sets: dict[str, type[Routes]] = {}
_lock = threading.Lock()


class XuiPanel:
    """3x-ui's API with a cached cookie session (or XUI_TOKEN), logging in again when the panel forgot it."""

    name = PANEL

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        self.base_url = settings.xui_url.rstrip("/") + "/"
        self.username = settings.xui_username
        self.password = settings.xui_password
        self.token = settings.xui_token
        self.inbound_id = settings.xui_inbound_id
        self.sub_url = settings.xui_sub_url.rstrip("/") + "/"
        self.timeout = settings.http_timeout
        self.session = session or PanelSession("3x-ui")

    def ensure_user(self, username: str, expire_at: datetime, telegram_id: int | None = None) -> str:
        return self._with_routes(lambda routes: self._ensure(routes, username, _millis(expire_at), telegram_id))

    def revoke(self, username: str) -> str:
        return self._with_routes(lambda routes: self._revoke(routes, username))

    def _ensure(self, routes: Routes, username: str, expiry: int, telegram_id: int | None) -> str:
        current = routes.get(username)
        if current is None:
            client = _new_client(username, expiry, telegram_id)
            refusal = routes.add(client)
            if refusal is None:
                return self._link(client["subId"])
            # Added meanwhile by a concurrent sync (the email is taken): set the expiry on it instead.
            current = routes.get(username)
            if current is None:
                raise ProviderRejected(f"3x-ui refused adding client {username}: {refusal[:300]}")
        sub_id = current.get("subId") or _new_sub_id()
        routes.update(current, {"expiryTime": expiry, "enable": True, "subId": sub_id})
        return self._link(sub_id)

    def _revoke(self, routes: Routes, username: str) -> str:
        current = routes.get(username)
        if current is None:
            raise ProviderRejected(f"3x-ui has no client {username} in inbound {self.inbound_id} to revoke.")
        # A new subId is a new link; a new UUID makes configurations imported from the old one stop working.
        sub_id = _new_sub_id()
        routes.update(current, {"subId": sub_id, "id": str(uuid.uuid4())})
        return self._link(sub_id)

    def _link(self, sub_id: str) -> str:
        return self.sub_url + quote(sub_id, safe="")

    def _with_routes(self, operation: Callable[[Routes], T]) -> T:
        """Run on the route set this panel answered to last; on a 404 try the other set once, and remember it."""
        with _lock:
            first = _route_sets.get(self.base_url, ClientRoutes)
        try:
            return operation(first(self))
        except RoutesMissing:
            other = InboundRoutes if first is ClientRoutes else ClientRoutes
        try:
            result = operation(other(self))
        except RoutesMissing:
            raise ProviderRejected("3x-ui answered 404 to both its client routes and its inbound routes: check "
                                   "XUI_URL (with the panel's web base path) and XUI_INBOUND_ID.") from None
        with _lock:
            _route_sets[self.base_url] = other
        logger.info("3x-ui serves the %s client routes", other.label, extra={"panel": self._host()})
        return result

    def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Call panel/api/<path> as the configured admin; a lost cookie session means one new login."""
        if self.token:
            status, body = self._send(method, path, {"Authorization": f"Bearer {self.token}"}, None, **kwargs)
            if status in (401, 403):
                raise NotConfigured(f"3x-ui refused XUI_TOKEN (HTTP {status}).")
            return status, body
        login, fresh = self._login(stale=None)
        status, body = self._send_as(login, method, path, **kwargs)
        # The panel hides its API from a session it does not know (after a restart, or an hour): 404 on
        # releases before v3.1, 401 to an XHR since, a redirect to the login page on some. After a
        # login of this very call, a 404 is a route the panel does not have.
        if not fresh and (status in (401, 403, 404) or 300 <= status < 400):
            status, body = self._send_as(self._login(stale=login)[0], method, path, **kwargs)
            if status in (401, 403) or 300 <= status < 400:
                raise ProviderRejected(f"3x-ui refused a fresh login session (HTTP {status}).")
        return status, body

    def _send_as(self, login: _Login, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": login.csrf} if login.csrf and method != "GET" else {}
        return self._send(method, path, headers, login.cookies, **kwargs)

    def _send(self, method: str, path: str, headers: dict[str, str], cookies: dict[str, str] | None,
              **kwargs: Any) -> tuple[int, Any]:
        # XMLHttpRequest: current releases then answer a missing session with 401 instead of hiding the API.
        return exchange(self.session, method, f"{self.base_url}panel/api/{path}", self.timeout,
                        headers={"X-Requested-With": "XMLHttpRequest", **headers}, cookies=cookies, **kwargs)

    def _login(self, stale: _Login | None) -> tuple[_Login, bool]:
        """The cached session, else log in once for all threads (whoever finds the stale one cached replaces
        it); True when this call logged in."""
        key = (self.base_url, self.username)
        with _lock:
            current = _logins.get(key)
            if current is not None and current is not stale:
                return current, False
            _logins.pop(key, None)
            login = self._log_in()
            _logins[key] = login
            return login, True

    def _log_in(self) -> _Login:
        # A cookie jar of its own: the CSRF token belongs to the cookie session the csrf-token route starts.
        with PanelSession("3x-ui") as jar:
            status, body = exchange(jar, "GET", self.base_url + "csrf-token", self.timeout)
            # Releases before the CSRF check have no such route (404): they log in without a token.
            csrf = body.get("obj") if status == 200 and isinstance(body, dict) and body.get("success") else None
            status, body = exchange(jar, "POST", self.base_url + "login", self.timeout,
                                    data={"username": self.username, "password": self.password},
                                    headers={"X-CSRF-Token": csrf} if csrf else {})
            if status != 200 or not (isinstance(body, dict) and body.get("success")):
                raise NotConfigured(f"3x-ui login failed (HTTP {status}): check XUI_USERNAME and XUI_PASSWORD.")
            cookies = jar.cookies.get_dict()
        if not cookies:
            raise ProviderRejected("3x-ui accepted the login but set no session cookie.")
        logger.info("logged in to 3x-ui", extra={"panel": self._host()})
        return _Login(cookies, csrf if isinstance(csrf, str) else None)

    def _host(self) -> str | None:
        # The host only: a URL may carry credentials (https://user:pass@panel).
        return urlsplit(self.base_url).hostname


def _new_client(email: str, expiry: int, telegram_id: int | None) -> dict[str, Any]:
    """A client as model.Client decodes it: UUID for vless/vmess, password for trojan, our own subId."""
    return {"id": str(uuid.uuid4()), "password": secrets.token_urlsafe(16), "email": email, "flow": "",
            "limitIp": 0, "totalGB": 0, "expiryTime": expiry, "enable": True, "tgId": telegram_id or 0,
            "subId": _new_sub_id(), "comment": "created by the payment gateway", "reset": 0}


def _new_sub_id() -> str:
    return secrets.token_hex(8)


def _millis(moment: datetime) -> int:
    """Unix milliseconds for `expiryTime`; never 0 ("never expires") nor negative ("from first use")."""
    return max(1, int(moment.timestamp() * 1000))


def forget_logins() -> None:
    """Drop cached sessions and route sets (tests; or after changing the panel's credentials)."""
    with _lock:
        _logins.clear()
        _route_sets.clear()
