"""Fake 3x-ui panel (MHSanaei/3x-ui): CSRF + cookie login, API token, and both client route sets."""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import re
import secrets
import time
import uuid
from http.cookies import CookieError, SimpleCookie
from typing import Any

from .base import FakeServer, RecordedRequest, Response, json_response

COOKIE = "3x-ui"
BAD_LOGIN = "Invalid username or password or two-factor code."
ADDED, UPDATED, DELETED = ("Inbound client(s) have been added.", "Inbound client has been updated.",
                           "Inbound client has been deleted.")
FAILED = "Something went wrong"
# Client fields and the Go types model.Client decodes them into (3x-ui database/model/model.go).
CLIENT_FIELDS: dict[str, tuple[str, Any]] = {
    "id": ("string", ""), "email": ("string", ""), "flow": ("string", ""), "subId": ("string", ""),
    "comment": ("string", ""), "password": ("string", ""), "limitIp": ("int", 0), "totalGB": ("int64", 0),
    "expiryTime": ("int64", 0), "tgId": ("int64", 0), "reset": ("int", 0), "enable": ("bool", False),
}
STREAM = {"network": "tcp", "security": "reality", "externalProxy": [],
          "realitySettings": {"show": False, "dest": "www.example.com:443", "serverNames": ["www.example.com"]},
          "tcpSettings": {"acceptProxyProtocol": False, "header": {"type": "none"}}}
SNIFFING = {"enabled": True, "destOverride": ["http", "tls", "quic"], "metadataOnly": False, "routeOnly": False}
_JSON_KIND = {str: "string", bool: "bool", int: "number", float: "number", dict: "object", list: "array"}


class _Refused(Exception):
    """A logical failure: 3x-ui answers HTTP 200 with success=false and this msg."""


def _ms() -> int:
    return int(time.time() * 1000)


def _decode_client(raw: Any, where: str) -> dict[str, Any]:
    """Decode like Go's encoding/json into model.Client: absent fields become zero values, wrong types fail."""
    if not isinstance(raw, dict):
        raise _Refused(f"{FAILED} (json: cannot unmarshal {_JSON_KIND.get(type(raw), 'value')} "
                       f"into Go value of type model.Client)")
    client = {name: default for name, (_, default) in CLIENT_FIELDS.items()}
    for name, value in raw.items():
        if name not in CLIENT_FIELDS or value is None:
            continue
        go_type = CLIENT_FIELDS[name][0]
        ok = (isinstance(value, str) if go_type == "string" else isinstance(value, bool) if go_type == "bool"
              else isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise _Refused(f"{FAILED} (json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go "
                           f"struct field {where}.{name} of type {go_type})")
        client[name] = value
    return client


class FakeXui(FakeServer):
    """3x-ui under {url}{base_path}; routes="new" (v3.1+ panel/api/clients/*) or "legacy" (v2.x-3.0)."""

    default_failure_status = 502

    def __init__(self, username: str = "admin", password: str = "admin-password", base_path: str = "/",
                 routes: str = "new", csrf: bool = True, api_token: str | None = None, port: int = 0) -> None:
        super().__init__(port)
        if routes not in ("new", "legacy"):
            raise ValueError("routes is 'new' or 'legacy'")
        self.username = username
        self.password = password
        self.base_path = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.routes = routes
        self.csrf = csrf
        self.api_token = api_token
        self.logins = 0
        self.inbounds: dict[int, dict[str, Any]] = {1: {"protocol": "vless", "port": 443, "remark": "VLESS Reality"}}
        self.clients: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._record_ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """Panel URL including the web base path, with a trailing slash."""
        return f"{self.url}{self.base_path}"

    def failure_body(self, status: int) -> Any:
        # Gin's recovery and most proxies answer a bare status with no JSON envelope.
        return b""

    def expire_sessions(self) -> None:
        """Forget every cookie session and CSRF token, as after a panel restart with a new secret."""
        with self._lock:
            self._sessions.clear()

    def client(self, email: str) -> dict[str, Any]:
        """A copy of a stored client with its inbound ids under "inboundIds"."""
        with self._lock:
            stored = self.clients[email]
            view = {k: v for k, v in stored.items() if not k.startswith("_")}
            return {**copy.deepcopy(view), "inboundIds": list(stored["_inbounds"])}

    def inbound_view(self, inbound_id: int) -> dict[str, Any]:
        """An inbound as panel/api/inbounds/get/{id} shows it: settings is a JSON string holding the clients."""
        with self._lock:
            inbound = self.inbounds[inbound_id]
            members = [c for c in self.clients.values() if inbound_id in c["_inbounds"]]
            settings = {"clients": [self._settings_client(c) for c in members], "decryption": "none",
                        "fallbacks": []}
            return {"id": inbound_id, "up": 0, "down": 0, "total": 0, "allTime": 0, "remark": inbound["remark"],
                    "enable": True, "expiryTime": 0, "trafficReset": "never", "lastTrafficResetTime": 0,
                    "clientStats": [self._traffic(c) for c in members], "listen": "", "port": inbound["port"],
                    "protocol": inbound["protocol"], "settings": json.dumps(settings, indent=2),
                    "streamSettings": json.dumps(STREAM, indent=2), "tag": f"inbound-{inbound['port']}",
                    "sniffing": json.dumps(SNIFFING, indent=2)}

    def handle(self, req: RecordedRequest) -> Response:
        if not req.path.startswith(self.base_path):
            return Response(404)
        rel = req.path[len(self.base_path):]
        with self._lock:
            sid = self._cookie(req)
            session = self._sessions.get(sid) if sid else None
            if rel == "csrf-token" and req.method == "GET" and self.csrf:
                return self._csrf_token(session)
            if rel == "login" and req.method == "POST":
                if self.csrf and not self._csrf_ok(req, session):
                    return Response(403)
                return self._login(req, session)
            if rel.startswith("panel/api/"):
                return self._api(req, rel.removeprefix("panel/api/"), session)
            return Response(404)

    def _cookie(self, req: RecordedRequest) -> str | None:
        try:
            morsel = SimpleCookie(req.headers.get("cookie", "")).get(COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _set_cookie(self, session: dict[str, Any]) -> dict[str, str]:
        # The panel keeps the session in a signed cookie, so every change to it sends a new cookie value.
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = session
        return {"Set-Cookie": f"{COOKIE}={sid}; Path={self.base_path}; Max-Age=3600; HttpOnly; SameSite=Lax"}

    def _csrf_token(self, session: dict[str, Any] | None) -> Response:
        if session is not None:
            return json_response({"success": True, "obj": session["csrf"]})
        fresh = {"csrf": secrets.token_urlsafe(32), "user": False}
        return json_response({"success": True, "obj": fresh["csrf"]}, headers=self._set_cookie(fresh))

    @staticmethod
    def _csrf_ok(req: RecordedRequest, session: dict[str, Any] | None) -> bool:
        given = req.headers.get("x-csrf-token") or req.form.get("_csrf", "")
        return bool(session and given) and hmac.compare_digest(given.encode(), session["csrf"].encode())

    def _login(self, req: RecordedRequest, session: dict[str, Any] | None) -> Response:
        form = req.json if isinstance(req.json, dict) else req.form
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        if not username or not password:
            return self._msg(False, "Username is required" if not username else "Password is required")
        if not (hmac.compare_digest(username.encode(), self.username.encode())
                and hmac.compare_digest(password.encode(), self.password.encode())):
            return self._msg(False, BAD_LOGIN)
        self.logins += 1
        csrf = session["csrf"] if session else None
        return self._msg(True, "You have successfully logged into your account.",
                         headers=self._set_cookie({"csrf": csrf, "user": True}))

    def _api(self, req: RecordedRequest, rel: str, session: dict[str, Any] | None) -> Response:
        auth = req.headers.get("authorization", "")
        token_ok = bool(self.api_token and auth.startswith("Bearer ")
                        and hmac.compare_digest(auth[7:].encode(), self.api_token.encode()))
        if not token_ok and not (session and session["user"]):
            # checkAPIAuth hides the API: a bare 404, or 401 for XHR callers on v3.x (api.go).
            ajax = req.headers.get("x-requested-with") == "XMLHttpRequest"
            return Response(401 if ajax and self.csrf else 404)
        if not token_ok and self.csrf and req.method not in ("GET", "HEAD") and not self._csrf_ok(req, session):
            return Response(403)
        handler, arg = self._match(req.method, rel)
        if handler is None:
            return Response(404)
        try:
            return handler(req, arg)
        except _Refused as refused:
            return self._msg(False, str(refused))

    def _match(self, method: str, rel: str) -> tuple[Any, str]:
        table = [("GET", r"inbounds/list", self._list), ("GET", r"inbounds/get/(\d+)", self._get_inbound)]
        if self.routes == "new":
            table += [("POST", r"clients/add", self._add), ("POST", r"clients/update/([^/]+)", self._update),
                      ("GET", r"clients/get/([^/]+)", self._get), ("POST", r"clients/del/([^/]+)", self._delete)]
        else:
            table += [("POST", r"inbounds/addClient", self._legacy_add),
                      ("POST", r"inbounds/updateClient/([^/]+)", self._legacy_update),
                      ("GET", r"inbounds/getClientTraffics/([^/]+)", self._legacy_traffic)]
        for verb, pattern, handler in table:
            match = re.fullmatch(pattern, rel)
            if match and verb == method:
                return handler, match.group(1) if match.groups() else ""
        return None, ""

    def _list(self, req: RecordedRequest, _: str) -> Response:
        return self._msg(True, "", [self.inbound_view(i) for i in sorted(self.inbounds)])

    def _get_inbound(self, req: RecordedRequest, inbound_id: str) -> Response:
        if int(inbound_id) not in self.inbounds:
            return self._msg(False, "Obtain (record not found)")
        return self._msg(True, "", self.inbound_view(int(inbound_id)))

    def _add(self, req: RecordedRequest, _: str) -> Response:
        body = req.json if isinstance(req.json, dict) else {}
        client = _decode_client(body.get("client") or {}, "ClientCreatePayload.client")
        inbound_ids = body.get("inboundIds") or []
        if not client["email"].strip():
            raise _Refused(f"{FAILED} (client email is required\n)")
        if not inbound_ids:
            raise _Refused(f"{FAILED} (at least one inbound is required\n)")
        if any(i not in self.inbounds for i in inbound_ids):
            raise _Refused(f"{FAILED} (record not found)")
        existing = self.clients.get(client["email"])
        if existing is not None:
            # Re-adding the same identity (same subId) attaches it to more inbounds.
            if not client["subId"] or existing["subId"] != client["subId"]:
                raise _Refused(f"{FAILED} (email already in use: {client['email']}\n)")
            existing["_inbounds"] = sorted(set(existing["_inbounds"]) | set(inbound_ids))
            return self._msg(True, ADDED)
        client.update({"id": client["id"] or str(uuid.uuid4()), "subId": client["subId"] or str(uuid.uuid4()),
                       "enable": True})  # Create forces enable=true (internal/web/service/client_crud.go).
        self._store(client, inbound_ids)
        return self._msg(True, ADDED)

    def _update(self, req: RecordedRequest, email: str) -> Response:
        stored = self.clients.get(email)
        client = _decode_client(req.json, "Client")
        if stored is None:
            raise _Refused(f"{FAILED} (record not found)")
        if not client["email"].strip():
            raise _Refused(f"{FAILED} (client email is required\n)")
        if client["email"] != email and client["email"] in self.clients:
            raise _Refused(f"{FAILED} (Duplicate email: {client['email']}\n)")
        # A full replace: omitted fields become zero values, except credentials and subId which are kept.
        for key in ("id", "password", "subId"):
            client[key] = client[key] or stored[key]
        self._replace(email, client)
        return self._msg(True, UPDATED)

    def _get(self, req: RecordedRequest, email: str) -> Response:
        stored = self.clients.get(email)
        if stored is None:
            return self._msg(False, "Obtain (record not found)")
        record = {"id": stored["_record_id"], "email": email, "subId": stored["subId"], "uuid": stored["id"],
                  "password": stored["password"], "flow": stored["flow"], "security": "",
                  "limitIp": stored["limitIp"], "totalGB": stored["totalGB"], "expiryTime": stored["expiryTime"],
                  "enable": stored["enable"], "tgId": stored["tgId"], "group": "", "comment": stored["comment"],
                  "reset": stored["reset"], "createdAt": stored["created_at"], "updatedAt": stored["updated_at"]}
        return self._msg(True, "", {"client": record, "inboundIds": list(stored["_inbounds"]),
                                    "externalLinks": [], "usedTraffic": 0})

    def _delete(self, req: RecordedRequest, email: str) -> Response:
        if self.clients.pop(email, None) is None:
            raise _Refused(f"{FAILED} (record not found)")
        return self._msg(True, DELETED)

    def _legacy_body(self, req: RecordedRequest) -> tuple[int, list[dict[str, Any]]]:
        form = req.json if isinstance(req.json, dict) else req.form
        settings, inbound_id = form.get("settings"), form.get("id")
        if not isinstance(settings, str):
            # The bind error is reported under the "inbound updated" message, as addInboundClient does.
            raise _Refused("Inbound has been successfully updated. (json: cannot unmarshal "
                           f"{_JSON_KIND.get(type(settings), 'value')} into Go struct field Inbound.settings "
                           "of type string)")
        try:
            parsed = json.loads(settings)
            inbound_id = int(inbound_id)
        except (TypeError, ValueError) as exc:
            raise _Refused(f"{FAILED} ({exc})") from exc
        raw = parsed.get("clients") if isinstance(parsed, dict) else None
        if not isinstance(raw, list) or not raw:
            raise _Refused(f"{FAILED} (empty client ID\n)")
        if inbound_id not in self.inbounds:
            raise _Refused(f"{FAILED} (record not found)")
        return inbound_id, [_decode_client(c, "Client") for c in raw]

    def _legacy_add(self, req: RecordedRequest, _: str) -> Response:
        inbound_id, clients = self._legacy_body(req)
        emails = [c["email"] for c in clients]
        taken = next((e for e in emails if e in self.clients or emails.count(e) > 1), None)
        if taken is not None:
            raise _Refused(f"{FAILED} (Duplicate email: {taken}\n)")
        if any(not c["id"] for c in clients):
            raise _Refused(f"{FAILED} (empty client ID\n)")
        for client in clients:
            self._store(client, [inbound_id])
        return self._msg(True, ADDED)

    def _legacy_update(self, req: RecordedRequest, client_id: str) -> Response:
        inbound_id, clients = self._legacy_body(req)
        # The clientId is the credential the inbound's protocol keys clients by (inbound.go updateInboundClient).
        key = {"trojan": "password", "shadowsocks": "email"}.get(self.inbounds[inbound_id]["protocol"], "id")
        old = next((c for c in self.clients.values() if c[key] == client_id and inbound_id in c["_inbounds"]), None)
        if old is None or not clients[0][key]:
            raise _Refused(f"{FAILED} (empty client ID\n)")
        new = clients[0]
        if new["email"] and new["email"] != old["email"] and new["email"] in self.clients:
            raise _Refused(f"{FAILED} (Duplicate email: {new['email']}\n)")
        self._replace(old["email"], new)
        return self._msg(True, UPDATED)

    def _legacy_traffic(self, req: RecordedRequest, email: str) -> Response:
        # An unknown email is not an error here: success with obj null.
        stored = self.clients.get(email)
        return self._msg(True, "", self._traffic(stored) if stored else None)

    def _store(self, client: dict[str, Any], inbound_ids: list[int]) -> None:
        now = _ms()
        self.clients[client["email"]] = {**client, "created_at": now, "updated_at": now,
                                         "_inbounds": list(inbound_ids), "_record_id": next(self._record_ids)}

    def _replace(self, email: str, client: dict[str, Any]) -> None:
        old = self.clients.pop(email)
        self.clients[client["email"]] = {**client, "created_at": old["created_at"], "updated_at": _ms(),
                                         "_inbounds": old["_inbounds"], "_record_id": old["_record_id"]}

    @staticmethod
    def _settings_client(client: dict[str, Any]) -> dict[str, Any]:
        # The settings string keeps what was written: a trojan client's password, no empty one for vless.
        return {k: v for k, v in client.items() if not k.startswith("_") and (k != "password" or v)}

    @staticmethod
    def _traffic(client: dict[str, Any]) -> dict[str, Any]:
        return {"id": client["_record_id"], "inboundId": client["_inbounds"][0], "enable": client["enable"],
                "email": client["email"], "uuid": client["id"], "subId": client["subId"], "up": 0, "down": 0,
                "allTime": 0, "expiryTime": client["expiryTime"], "total": client["totalGB"],
                "reset": client["reset"], "lastOnline": 0}

    @staticmethod
    def _msg(success: bool, msg: str, obj: Any = None, headers: dict[str, str] | None = None) -> Response:
        return json_response({"success": success, "msg": msg, "obj": obj}, headers=headers)
