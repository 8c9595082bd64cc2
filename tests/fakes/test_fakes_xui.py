"""The 3x-ui fake follows the panel's login, CSRF and client routes as PROTOCOLS.md §9 describes."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from .xui import FakeXui

CLIENT = {"id": "5f0a4d3e-3b1c-4e55-9d0e-0c6d2b7a9f11", "email": "tg_5551234", "limitIp": 2,
          "totalGB": 50 * 1024 ** 3, "expiryTime": 1_900_000_000_000, "enable": True, "tgId": 5551234,
          "subId": "sub5551234abcdef", "flow": "xtls-rprx-vision", "comment": "order 42", "reset": 0}


def _login(panel, session=None, password=None, as_json=False):
    """Log in the way py3xui does: csrf-token first (when the release has it), then login."""
    session = session or requests.Session()
    headers = {}
    if panel.csrf:
        token = session.get(f"{panel.base_url}csrf-token", timeout=5).json()["obj"]
        session.headers["X-CSRF-Token"] = headers["X-CSRF-Token"] = token
    creds = {"username": panel.username, "password": password or panel.password}
    resp = session.post(f"{panel.base_url}login", timeout=5, headers=headers,
                        **({"json": creds} if as_json else {"data": creds}))
    return session, resp


def _api(panel, session, method, path, **kwargs):
    return session.request(method, f"{panel.base_url}panel/api/{path}", timeout=5, **kwargs)


@pytest.mark.parametrize("as_json", [False, True])
def test_login_needs_the_csrf_token_and_sets_the_cookie(xui, as_json):
    session = requests.Session()
    token = session.get(f"{xui.base_url}csrf-token", timeout=5).json()
    assert token["success"] is True and token["obj"]
    anonymous_cookie = session.cookies["3x-ui"]
    bare = session.post(f"{xui.base_url}login", data={"username": "admin", "password": xui.password}, timeout=5)
    assert bare.status_code == 403 and bare.content == b""
    _, wrong = _login(xui, session, password="nope", as_json=as_json)
    assert wrong.status_code == 200
    assert wrong.json() == {"success": False, "msg": "Invalid username or password or two-factor code.", "obj": None}
    _, ok = _login(xui, session, as_json=as_json)
    assert ok.status_code == 200 and ok.json()["success"] is True
    assert session.cookies["3x-ui"] != anonymous_cookie and xui.logins == 1
    assert "Path=/abc123/" in ok.headers["Set-Cookie"]


def test_api_is_hidden_without_a_session(xui):
    assert requests.get(f"{xui.base_url}panel/api/inbounds/list", timeout=5).status_code == 404
    assert requests.get(f"{xui.url}/login", timeout=5).status_code == 404
    session, _ = _login(xui)
    listed = _api(xui, session, "GET", "inbounds/list").json()
    assert listed["success"] is True and [i["id"] for i in listed["obj"]] == [1]


def test_every_cookie_post_needs_the_csrf_token(xui):
    session, _ = _login(xui)
    body = {"client": CLIENT, "inboundIds": [1]}
    missing = requests.post(f"{xui.base_url}panel/api/clients/add", json=body, cookies=session.cookies, timeout=5)
    assert missing.status_code == 403 and missing.content == b""
    stale = _api(xui, session, "POST", "clients/add", json=body, headers={"X-CSRF-Token": "stale"})
    assert stale.status_code == 403
    assert _api(xui, session, "POST", "clients/add", json=body).json()["success"] is True


def test_new_routes_add_get_update_delete(xui):
    session, _ = _login(xui)
    added = _api(xui, session, "POST", "clients/add", json={"client": CLIENT, "inboundIds": [1]}).json()
    assert added == {"success": True, "msg": "Inbound client(s) have been added.", "obj": None}
    got = _api(xui, session, "GET", "clients/get/tg_5551234").json()["obj"]
    assert got["inboundIds"] == [1] and isinstance(got["client"]["id"], int)
    record = got["client"]
    assert record["uuid"] == CLIENT["id"] and record["subId"] == CLIENT["subId"]
    assert (record["totalGB"], record["expiryTime"], record["tgId"]) == (50 * 1024 ** 3, 1_900_000_000_000, 5551234)
    settings = json.loads(_api(xui, session, "GET", "inbounds/get/1").json()["obj"]["settings"])
    assert [c["email"] for c in settings["clients"]] == ["tg_5551234"]
    renewed = {**CLIENT, "expiryTime": 1_950_000_000_000}
    del renewed["id"]
    assert _api(xui, session, "POST", "clients/update/tg_5551234", json=renewed).json()["success"] is True
    assert xui.client("tg_5551234")["expiryTime"] == 1_950_000_000_000
    assert xui.client("tg_5551234")["id"] == CLIENT["id"]
    assert _api(xui, session, "POST", "clients/del/tg_5551234").json()["msg"] == "Inbound client has been deleted."
    gone = _api(xui, session, "GET", "clients/get/tg_5551234").json()
    assert gone["success"] is False and "record not found" in gone["msg"]


def test_new_add_fills_defaults_and_forces_enable(xui):
    session, _ = _login(xui)
    _api(xui, session, "POST", "clients/add", json={"client": {"email": "bare", "enable": False}, "inboundIds": [1]})
    stored = xui.client("bare")
    assert uuid.UUID(stored["id"]) and uuid.UUID(stored["subId"]) and stored["enable"] is True


def test_new_update_is_a_full_replace(xui):
    session, _ = _login(xui)
    _api(xui, session, "POST", "clients/add", json={"client": CLIENT, "inboundIds": [1]})
    partial = _api(xui, session, "POST", "clients/update/tg_5551234", json={"expiryTime": 1}).json()
    assert partial["success"] is False and "client email is required" in partial["msg"]
    _api(xui, session, "POST", "clients/update/tg_5551234", json={"email": "tg_5551234", "expiryTime": 1})
    assert xui.client("tg_5551234")["enable"] is False and xui.client("tg_5551234")["totalGB"] == 0


@pytest.mark.parametrize(("body", "text"), [
    ({"client": CLIENT, "inboundIds": []}, "at least one inbound is required"),
    ({"client": CLIENT, "inboundIds": [9]}, "record not found"),
    ({"client": {**CLIENT, "email": ""}, "inboundIds": [1]}, "client email is required"),
    ({"client": {**CLIENT, "totalGB": "50"}, "inboundIds": [1]}, "cannot unmarshal string into Go struct field"),
    ({"client": {**CLIENT, "expiryTime": 1.9e12}, "inboundIds": [1]}, "of type int64"),
    ({"client": {**CLIENT, "enable": 1}, "inboundIds": [1]}, "of type bool"),
])
def test_new_add_failures_are_http_200_with_success_false(xui, body, text):
    session, _ = _login(xui)
    resp = _api(xui, session, "POST", "clients/add", json=body)
    assert resp.status_code == 200 and resp.json()["success"] is False and text in resp.json()["msg"]
    assert not xui.clients


def test_new_add_duplicate_email_unless_same_sub_id(xui):
    xui.inbounds[2] = {"protocol": "vless", "port": 8443, "remark": "second"}
    session, _ = _login(xui)
    _api(xui, session, "POST", "clients/add", json={"client": CLIENT, "inboundIds": [1]})
    other = _api(xui, session, "POST", "clients/add", json={"client": {**CLIENT, "subId": "x"}, "inboundIds": [1]})
    assert other.json()["success"] is False and "email already in use: tg_5551234" in other.json()["msg"]
    _api(xui, session, "POST", "clients/add", json={"client": CLIENT, "inboundIds": [2]})
    assert xui.client("tg_5551234")["inboundIds"] == [1, 2]


@pytest.mark.parametrize("path", ["inbounds/addClient", "inbounds/getClientTraffics/tg_5551234"])
def test_new_panel_has_no_legacy_routes(xui, path):
    session, _ = _login(xui)
    method = "POST" if path.endswith("addClient") else "GET"
    assert _api(xui, session, method, path, json={}).status_code == 404


def _legacy_add(panel, session, *clients, inbound_id=1):
    return _api(panel, session, "POST", "inbounds/addClient",
                json={"id": inbound_id, "settings": json.dumps({"clients": list(clients)})})


def test_legacy_panel_logs_in_without_csrf_and_adds_clients(xui_legacy):
    assert requests.get(f"{xui_legacy.base_url}csrf-token", timeout=5).status_code == 404
    session, resp = _login(xui_legacy)
    assert resp.json()["success"] is True and "3x-ui" in session.cookies
    assert _legacy_add(xui_legacy, session, CLIENT).json()["success"] is True
    traffic = _api(xui_legacy, session, "GET", "inbounds/getClientTraffics/tg_5551234").json()["obj"]
    assert traffic["email"] == "tg_5551234" and traffic["uuid"] == CLIENT["id"] and traffic["inboundId"] == 1
    assert (traffic["total"], traffic["expiryTime"]) == (CLIENT["totalGB"], CLIENT["expiryTime"])
    unknown = _api(xui_legacy, session, "GET", "inbounds/getClientTraffics/nobody").json()
    assert unknown == {"success": True, "msg": "", "obj": None}
    inbound = _api(xui_legacy, session, "GET", "inbounds/get/1").json()["obj"]
    assert isinstance(inbound["settings"], str)
    assert json.loads(inbound["settings"])["clients"][0]["id"] == CLIENT["id"]
    assert inbound["clientStats"][0]["email"] == "tg_5551234"


def test_legacy_update_replaces_the_client_by_uuid(xui_legacy):
    session, _ = _login(xui_legacy)
    _legacy_add(xui_legacy, session, CLIENT)
    renewed = {**CLIENT, "expiryTime": 1_950_000_000_000}
    body = {"id": 1, "settings": json.dumps({"clients": [renewed]})}
    resp = _api(xui_legacy, session, "POST", f"inbounds/updateClient/{CLIENT['id']}", json=body).json()
    assert resp["success"] is True and xui_legacy.client("tg_5551234")["expiryTime"] == 1_950_000_000_000
    unknown = _api(xui_legacy, session, "POST", f"inbounds/updateClient/{uuid.uuid4()}", json=body).json()
    assert unknown["success"] is False and "empty client ID" in unknown["msg"]


@pytest.mark.parametrize(("body", "text"), [
    ({"id": 1, "settings": {"clients": [CLIENT]}}, "cannot unmarshal object into Go struct field Inbound.settings"),
    ({"id": 1, "settings": "{not json"}, "Something went wrong"),
    ({"id": 7, "settings": json.dumps({"clients": [CLIENT]})}, "record not found"),
    ({"id": 1, "settings": json.dumps({"clients": [{**CLIENT, "id": ""}]})}, "empty client ID"),
])
def test_legacy_add_failures(xui_legacy, body, text):
    session, _ = _login(xui_legacy)
    resp = _api(xui_legacy, session, "POST", "inbounds/addClient", json=body)
    assert resp.status_code == 200 and resp.json()["success"] is False and text in resp.json()["msg"]


def test_legacy_duplicate_email(xui_legacy):
    session, _ = _login(xui_legacy)
    _legacy_add(xui_legacy, session, CLIENT)
    dup = _legacy_add(xui_legacy, session, {**CLIENT, "id": str(uuid.uuid4())}).json()
    assert dup["success"] is False and "Duplicate email: tg_5551234" in dup["msg"]


@pytest.mark.parametrize("path", ["clients/add", "clients/get/tg_5551234"])
def test_legacy_panel_has_no_new_routes(xui_legacy, path):
    session, _ = _login(xui_legacy)
    method = "POST" if path == "clients/add" else "GET"
    assert _api(xui_legacy, session, method, path, json={}).status_code == 404


def test_expired_session_gets_404_or_401_for_xhr_and_relogin_works(xui):
    session, _ = _login(xui)
    xui.expire_sessions()
    assert _api(xui, session, "GET", "clients/get/x").status_code == 404
    xhr = _api(xui, session, "GET", "clients/get/x", headers={"X-Requested-With": "XMLHttpRequest"})
    assert xhr.status_code == 401 and xhr.content == b""
    assert _api(xui, session, "POST", "clients/add", json={}).status_code == 404
    _login(xui, session)
    assert _api(xui, session, "GET", "clients/get/x").json()["success"] is False
    assert xui.logins == 2


def test_bearer_api_token_skips_login_and_csrf():
    with FakeXui(base_path="/abc123/", api_token="tok-123") as panel:
        body = {"client": CLIENT, "inboundIds": [1]}
        url = f"{panel.base_url}panel/api/clients/add"
        ok = requests.post(url, json=body, headers={"Authorization": "Bearer tok-123"}, timeout=5)
        assert ok.json()["success"] is True
        assert requests.post(url, json=body, headers={"Authorization": "Bearer bad"}, timeout=5).status_code == 404


def test_failures_timeout_and_down(xui):
    session, _ = _login(xui)
    xui.fail_next(1)
    failed = _api(xui, session, "GET", "inbounds/list")
    assert failed.status_code == 502 and failed.content == b""
    xui.fail_next(1, status=500, path="/clients/add")
    assert _api(xui, session, "GET", "inbounds/list").status_code == 200
    assert _api(xui, session, "POST", "clients/add", json={}).status_code == 500
    xui.delay_seconds = 5
    with pytest.raises(requests.ReadTimeout):
        session.get(f"{xui.base_url}panel/api/inbounds/list", timeout=(5, 0.2))
    xui.delay_seconds = 0
    xui.down()
    with pytest.raises(requests.ConnectionError):
        _api(xui, session, "GET", "inbounds/list")
    xui.up()
    assert _api(xui, session, "GET", "inbounds/list").json()["success"] is True
