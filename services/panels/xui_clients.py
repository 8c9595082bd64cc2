"""3x-ui's two sets of client routes (PROTOCOLS.md §9), and one HTTP exchange that tolerates bare answers.

Both sets read, add and update one client of inbound XUI_INBOUND_ID by its email. An update is a
full replace on the panel (an omitted field becomes its zero value), so it sends the client as read
with the changes applied. Answers are the {"success", "msg", "obj"} envelope with HTTP 200 even
for a refusal; a missing route or session is a bare status without a body.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import quote

import requests

from services.errors import ProviderRejected, ProviderUnavailable
from services.http import retry_after_seconds

# model.Client's fields (3x-ui database/model/model.go): what the client routes read and write.
CLIENT_FIELDS = ("id", "password", "email", "flow", "limitIp", "totalGB", "expiryTime", "enable", "tgId", "subId",
                 "comment", "reset")


class RoutesMissing(Exception):
    """The panel answered 404 to a route of this set: it serves the other one."""


class Api(Protocol):
    inbound_id: int

    def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]: ...


class Routes(Protocol):
    label: str

    def __init__(self, panel: Api): ...

    def get(self, email: str) -> dict[str, Any] | None: ...

    def add(self, client: dict[str, Any]) -> str | None: ...

    def update(self, current: dict[str, Any], changes: dict[str, Any]) -> None: ...


class ClientRoutes:
    """v3.1+: panel/api/clients/{get,add,update}, clients keyed by email."""

    label = "panel/api/clients/"

    def __init__(self, panel: Api):
        self.panel = panel

    def get(self, email: str) -> dict[str, Any] | None:
        envelope = _envelope(*self.panel.api("GET", f"clients/get/{quote(email, safe='')}"), f"reading {email}",
                             refusal_ok=True)
        if not envelope.get("success"):
            if "not found" in str(envelope.get("msg")).lower():
                return None
            raise ProviderRejected(f"3x-ui refused reading client {email}: {str(envelope.get('msg'))[:300]}")
        obj = envelope.get("obj")
        record = obj.get("client") if isinstance(obj, dict) else None
        if not isinstance(record, dict):
            raise ProviderRejected(f"3x-ui's answer for client {email} has no client.")
        # The record's "id" is its row; the client's own id (the proxy UUID) is "uuid" here.
        return {**{key: record[key] for key in CLIENT_FIELDS if key in record and key != "id"},
                "id": record.get("uuid") or ""}

    def add(self, client: dict[str, Any]) -> str | None:
        envelope = _envelope(*self.panel.api("POST", "clients/add", json={
            "client": client, "inboundIds": [self.panel.inbound_id]}), f"adding {client['email']}", refusal_ok=True)
        return None if envelope.get("success") else str(envelope.get("msg"))

    def update(self, current: dict[str, Any], changes: dict[str, Any]) -> None:
        email = current["email"]
        _envelope(*self.panel.api("POST", f"clients/update/{quote(email, safe='')}", json={**current, **changes}),
                  f"updating {email}")


class InboundRoutes:
    """v2.x-3.0: the client lives in the inbound's settings, a JSON string; inbounds/addClient, updateClient."""

    label = "panel/api/inbounds/"

    def __init__(self, panel: Api):
        self.panel = panel
        self.protocol = ""

    def get(self, email: str) -> dict[str, Any] | None:
        inbound_id = self.panel.inbound_id
        inbound = _envelope(*self.panel.api("GET", f"inbounds/get/{inbound_id}"), f"reading inbound {inbound_id}")
        obj = inbound.get("obj")
        try:
            clients = json.loads(obj["settings"]).get("clients") or []
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ProviderRejected(f"3x-ui's inbound {inbound_id} has no readable client list.") from None
        self.protocol = str(obj.get("protocol") or "")
        return next((client for client in clients if isinstance(client, dict) and client.get("email") == email),
                    None)

    def add(self, client: dict[str, Any]) -> str | None:
        envelope = _envelope(*self.panel.api("POST", "inbounds/addClient", json=self._body(client)),
                             f"adding {client['email']}", refusal_ok=True)
        return None if envelope.get("success") else str(envelope.get("msg"))

    def update(self, current: dict[str, Any], changes: dict[str, Any]) -> None:
        # The route names the client by its credential as stored: UUID, trojan password, or shadowsocks email.
        key = {"trojan": "password", "shadowsocks": "email"}.get(self.protocol, "id")
        _envelope(*self.panel.api("POST", f"inbounds/updateClient/{quote(str(current.get(key) or ''), safe='')}",
                                  json=self._body({**current, **changes})), f"updating {current['email']}")

    def _body(self, client: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.panel.inbound_id, "settings": json.dumps({"clients": [client]})}


def _envelope(status: int, body: Any, what: str, refusal_ok: bool = False) -> dict[str, Any]:
    """The {"success", "msg", "obj"} answer; RoutesMissing on 404; a refusal raises unless the caller reads it."""
    if status == 404:
        raise RoutesMissing(what)
    if status != 200 or not isinstance(body, dict):
        raise ProviderRejected(f"3x-ui answered {what} with HTTP {status}{'' if body is not None else ', no JSON'}.")
    if not body.get("success") and not refusal_ok:
        raise ProviderRejected(f"3x-ui refused {what}: {str(body.get('msg'))[:300]}")
    return body


def exchange(session: requests.Session, method: str, url: str, timeout: float, **kwargs: Any) -> tuple[int, Any]:
    """(status, JSON body or None); 5xx and 429 are retryable, like services.http.request_json.

    Unlike request_json, a bare answer is not an error here: 3x-ui says "no such route or session"
    and "CSRF token missing" with an empty 404 or 403. Redirects are not followed: some releases
    send a caller without a session to the login page.
    """
    response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    with response:
        try:
            body = response.json()
        except ValueError:
            body = None
    if response.status_code == 429 or response.status_code >= 500:
        raise ProviderUnavailable(f"3x-ui answered HTTP {response.status_code}",
                                  retry_after=retry_after_seconds(response, body))
    return response.status_code, body
