"""Fake Marzban panel API: admin token, users, subscription revocation."""

from __future__ import annotations

import base64
import hmac
import itertools
import re
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from .base import FakeServer, RecordedRequest, Response, json_response

_USERNAME = re.compile(r"^[a-z0-9_]{3,32}$")
PROXY_TYPES = ("vmess", "vless", "trojan", "shadowsocks")
DEFAULT_INBOUNDS = {"vmess": ["VMess TCP"], "vless": ["VLESS TCP REALITY"],
                    "trojan": ["Trojan Websocket TLS"], "shadowsocks": ["Shadowsocks TCP"]}
BAD_CREDENTIALS = {"detail": "Could not validate credentials"}


def _credentials(proxy_type: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = dict(given or {})
    if proxy_type in ("vmess", "vless"):
        settings["id"] = str(uuid.uuid4())
        if proxy_type == "vless":
            settings.setdefault("flow", "")
    else:
        settings["password"] = secrets.token_urlsafe(16)
        if proxy_type == "shadowsocks":
            settings.setdefault("method", "chacha20-ietf-poly1305")
    return settings


def _missing(*loc: str) -> Response:
    return json_response({"detail": [{"type": "missing", "loc": list(loc), "msg": "Field required"}]}, 422)


class FakeMarzban(FakeServer):
    """Marzban REST API under {url}/api/; subscription_url is {sub_prefix}/sub/<token>."""

    def __init__(self, username: str = "admin", password: str = "admin-password",
                 sub_prefix: str = "", port: int = 0) -> None:
        super().__init__(port)
        self.username = username
        self.password = password
        self.sub_prefix = sub_prefix.rstrip("/")
        self.users: dict[str, dict[str, Any]] = {}
        self.logins = 0
        self._tokens: set[str] = set()
        self._sub_tokens: dict[str, tuple[str, int]] = {}
        self._nonce = itertools.count(1)

    def failure_body(self, status: int) -> Any:
        # What nginx in front of the panel answers when the panel is down.
        return f"<html><head><title>{status} Bad Gateway</title></head><body>nginx</body></html>"

    def expire_tokens(self) -> None:
        """Invalidate every issued access token: the next calls answer 401."""
        with self._lock:
            self._tokens.clear()

    def add_user(self, username: str, expire: int = 0, **fields: Any) -> dict[str, Any]:
        """Create a user directly (vless proxy by default); return its API view."""
        with self._lock:
            self._store_user(username, {"proxies": {"vless": {}}, "expire": expire, **fields})
            return self._view(username)

    def user(self, username: str) -> dict[str, Any]:
        """Stored state of a user (without a freshly minted subscription_url)."""
        with self._lock:
            return {k: v for k, v in self.users[username].items() if not k.startswith("_")}

    def subscription_is_current(self, subscription_url: str) -> bool:
        """Whether a subscription URL/token still works (not revoked since it was issued)."""
        token = urlsplit(subscription_url).path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            owner = self._sub_tokens.get(token)
            user = self.users.get(owner[0]) if owner else None
            return user is not None and user["_generation"] == owner[1]

    def handle(self, req: RecordedRequest) -> Response:
        path = req.path.rstrip("/")
        if path.startswith(f"{self.sub_prefix}/sub/") or path.startswith("/sub/"):
            ok = self.subscription_is_current(path)
            return Response(200 if ok else 404, "vless://fake-config\n" if ok else {"detail": "Not Found"})
        if path == "/api/admin/token" and req.method == "POST":
            return self._login(req)
        if path.startswith("/api/"):
            auth = req.headers.get("authorization", "")
            if not auth.lower().startswith("bearer "):
                return json_response({"detail": "Not authenticated"}, 401, {"WWW-Authenticate": "Bearer"})
            with self._lock:
                known = any(hmac.compare_digest(auth[7:].strip(), t) for t in self._tokens)
            if not known:
                return json_response(BAD_CREDENTIALS, 401, {"WWW-Authenticate": "Bearer"})
        with self._lock:
            return self._route(req.method, path, req)

    def _login(self, req: RecordedRequest) -> Response:
        if "application/x-www-form-urlencoded" not in req.headers.get("content-type", ""):
            return _missing("body", "username")
        form = req.form
        for field in ("username", "password"):
            if field not in form:
                return _missing("body", field)
        if not (hmac.compare_digest(form["username"].encode(), self.username.encode())
                and hmac.compare_digest(form["password"].encode(), self.password.encode())):
            return json_response({"detail": "Incorrect username or password"}, 401,
                                 {"WWW-Authenticate": "Bearer"})
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
            self.logins += 1
        return json_response({"access_token": token, "token_type": "bearer"})

    def _route(self, method: str, path: str, req: RecordedRequest) -> Response:
        body = req.json if isinstance(req.json, dict) else None
        if path == "/api/user" and method == "POST":
            if body is None:
                return _missing("body")
            return self._create(body)
        match = re.fullmatch(r"/api/user/([^/]+)(/revoke_sub)?", path)
        if match is None:
            return json_response({"detail": "Not Found"}, 404)
        username, revoke = match.group(1), match.group(2)
        if username not in self.users:
            return json_response({"detail": "User not found"}, 404)
        if revoke and method == "POST":
            user = self.users[username]
            user["_generation"] += 1
            user["proxies"] = {t: _credentials(t, s) for t, s in user["proxies"].items()}
            user["sub_updated_at"] = None
            return json_response(self._view(username))
        if revoke:
            return json_response({"detail": "Method Not Allowed"}, 405)
        if method == "GET":
            return json_response(self._view(username))
        if method == "PUT":
            if body is None:
                return _missing("body")
            return self._modify(username, body)
        if method == "DELETE":
            del self.users[username]
            return json_response({"detail": "User successfully deleted"})
        return json_response({"detail": "Method Not Allowed"}, 405)

    def _invalid(self, body: dict[str, Any]) -> Response | None:
        proxies = body.get("proxies")
        if proxies is not None and (not isinstance(proxies, dict) or not proxies
                                    or not set(proxies) <= set(PROXY_TYPES)):
            return json_response({"detail": {"proxies": "Each user needs at least one valid proxy type"}}, 400)
        expire = body.get("expire")
        if expire is not None and (isinstance(expire, bool) or not isinstance(expire, int) or expire < 0):
            return json_response({"detail": [{"type": "int_type", "loc": ["body", "expire"],
                                              "msg": "Input should be a valid integer"}]}, 422)
        if body.get("status") not in (None, "active", "disabled", "on_hold"):
            return json_response({"detail": [{"type": "enum", "loc": ["body", "status"],
                                              "msg": "Input should be 'active', 'disabled' or 'on_hold'"}]}, 422)
        return None

    def _create(self, body: dict[str, Any]) -> Response:
        username = body.get("username")
        if not isinstance(username, str) or not _USERNAME.match(username):
            return json_response({"detail": [{"type": "value_error", "loc": ["body", "username"],
                                              "msg": "Username only can be 3 to 32 characters and contain "
                                                     "a-z, 0-9, and underscores in between."}]}, 422)
        if "proxies" not in body:
            return _missing("body", "proxies")
        error = self._invalid(body)
        if error is not None:
            return error
        if username in self.users:
            return json_response({"detail": "User already exists"}, 409)
        self._store_user(username, body)
        return json_response(self._view(username))

    def _modify(self, username: str, body: dict[str, Any]) -> Response:
        error = self._invalid(body)
        if error is not None:
            return error
        user = self.users[username]
        if "proxies" in body:
            user["proxies"] = {t: _credentials(t, s) for t, s in body["proxies"].items()}
        for key in ("expire", "data_limit", "data_limit_reset_strategy", "inbounds", "note", "status",
                    "on_hold_expire_duration", "on_hold_timeout"):
            if key in body:
                user[key] = body[key]
        return json_response(self._view(username))

    def _store_user(self, username: str, body: dict[str, Any]) -> None:
        proxies = body["proxies"]
        self.users[username] = {
            "username": username,
            "proxies": {t: _credentials(t, s) for t, s in proxies.items()},
            "inbounds": body.get("inbounds") or {t: DEFAULT_INBOUNDS[t] for t in proxies},
            "expire": body.get("expire"), "data_limit": body.get("data_limit"),
            "data_limit_reset_strategy": body.get("data_limit_reset_strategy", "no_reset"),
            "status": body.get("status", "active"), "note": body.get("note"),
            "used_traffic": 0, "lifetime_used_traffic": 0,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "sub_updated_at": None, "sub_last_user_agent": None, "online_at": None,
            "on_hold_expire_duration": body.get("on_hold_expire_duration"),
            "on_hold_timeout": body.get("on_hold_timeout"), "auto_delete_in_days": None,
            "excluded_inbounds": {}, "admin": {"username": self.username, "is_sudo": True},
            "_generation": 0,
        }

    def _view(self, username: str) -> dict[str, Any]:
        user = self.users[username]
        # Like Marzban, the token embeds the username and a timestamp, so every read mints a new URL.
        raw = f"{username},{int(time.time())},{next(self._nonce)}".encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=") + secrets.token_hex(5)
        self._sub_tokens[token] = (username, user["_generation"])
        view = {k: v for k, v in user.items() if not k.startswith("_")}
        view["links"] = [f"{t}://{s.get('id') or s.get('password')}@panel.example:443#{username}"
                         for t, s in user["proxies"].items()]
        view["subscription_url"] = f"{self.sub_prefix}/sub/{token}"
        return view
