"""The Remnawave fake speaks the v2.x panel API and signs webhooks as PROTOCOLS.md §8 describes."""

from __future__ import annotations

import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from .remnawave import DEFAULT_SQUAD, remnawave_signature

WEBHOOK_BODY = (b'{"scope":"user","event":"user.expired","timestamp":"2026-01-07T11:57:29.426Z",'
                b'"data":{"id":42,"username":"tg_123456789","status":"EXPIRED"},"meta":null}')


def _iso(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _call(panel, method, path, token=None, **kwargs):
    return requests.request(method, f"{panel.url}{path}", timeout=5,
                            headers={"Authorization": f"Bearer {token or panel.token}", **kwargs.pop("headers", {})},
                            **kwargs)


def _create(panel, username="tg_5551234", **fields):
    body = {"username": username, "expireAt": _iso(30), "telegramId": 5551234,
            "activeInternalSquads": [DEFAULT_SQUAD], "trafficLimitBytes": 0, "trafficLimitStrategy": "NO_RESET",
            **fields}
    return _call(panel, "POST", "/api/users", json=body)


def test_webhook_signature_vector(remnawave):
    expected = "0ec7b7fb531f09e9ca68753bbc0604c6ca37e18076cf03f3870e9b5bf03e4b4d"
    assert remnawave_signature("TestWebhookSecret123", WEBHOOK_BODY) == expected


def test_create_user_answers_the_user_in_the_envelope(remnawave):
    resp = _create(remnawave)
    assert resp.status_code == 201
    user = resp.json()["response"]
    assert user["username"] == "tg_5551234" and user["status"] == "ACTIVE" and user["telegramId"] == 5551234
    assert user["uuid"] and user["shortUuid"] and user["trafficLimitStrategy"] == "NO_RESET"
    assert user["subscriptionUrl"] == f"https://sub.example.com/{user['shortUuid']}"
    assert user["activeInternalSquads"] == [{"uuid": DEFAULT_SQUAD, "name": "Default-Squad"}]
    assert user["expireAt"].endswith("Z")
    found = _call(remnawave, "GET", "/api/users/by-username/tg_5551234").json()["response"]
    assert found == user
    assert _call(remnawave, "GET", f"/api/users/{user['uuid']}").json()["response"]["username"] == "tg_5551234"
    assert remnawave.requests[0].headers["authorization"] == "Bearer remnawave-api-token"


@pytest.mark.parametrize(("change", "field"), [
    ({"username": "ab"}, "username"), ({"username": "x" * 37}, "username"), ({"username": "bad name"}, "username"),
    ({"expireAt": None}, "expireAt"), ({"expireAt": "tomorrow"}, "expireAt"),
    ({"expireAt": "2030-01-01T00:00:00"}, "expireAt"), ({"telegramId": "5551234"}, "telegramId"),
    ({"trafficLimitBytes": -1}, "trafficLimitBytes"), ({"trafficLimitStrategy": "YEAR"}, "trafficLimitStrategy"),
    ({"activeInternalSquads": ["not-a-uuid"]}, "activeInternalSquads"), ({"status": "BANNED"}, "status"),
    ({"tag": "lower"}, "tag"),
])
def test_create_user_validation(remnawave, change, field):
    resp = _create(remnawave, **change)
    assert resp.status_code == 400
    assert resp.json()["message"] == "Validation failed"
    assert [e["path"] for e in resp.json()["errors"]] == [[field]]
    assert not remnawave.users


def test_existing_username_and_unknown_squad(remnawave):
    _create(remnawave)
    taken = _create(remnawave)
    assert taken.status_code == 400
    error = taken.json()
    assert error["errorCode"] == "A019" and error["message"] == "User username already exists"
    assert error["path"] == "/api/users" and error["timestamp"].endswith("Z")
    squad = _create(remnawave, username="other", activeInternalSquads=["00000000-0000-4000-8000-0000000000ff"])
    assert squad.status_code == 500 and squad.json()["errorCode"] == "A123"


def test_unknown_user_is_404_a025(remnawave):
    resp = _call(remnawave, "GET", "/api/users/by-username/nobody")
    assert resp.status_code == 404
    assert resp.json()["errorCode"] == "A025" and resp.json()["message"] == "User not found"
    assert _call(remnawave, "GET", "/api/users/not-a-uuid").status_code == 400


@pytest.mark.parametrize(("token", "status", "message"), [
    (None, 401, "Unauthorized"), ("wrong", 401, "Unauthorized"), ("read-only", 403, "Forbidden")])
def test_bearer_token_is_checked(remnawave, token, status, message):
    remnawave.forbidden_tokens.add("read-only")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    resp = requests.get(f"{remnawave.url}/api/users/by-username/x", headers=headers, timeout=5)
    assert resp.status_code == status
    assert set(resp.json()) == {"timestamp", "path", "message", "errorCode"} and resp.json()["message"] == message


def test_patch_sets_an_absolute_future_expiry(remnawave):
    user = _create(remnawave).json()["response"]
    new_expiry = _iso(60)
    by_uuid = _call(remnawave, "PATCH", "/api/users", json={"uuid": user["uuid"], "expireAt": new_expiry})
    assert by_uuid.status_code == 200
    assert by_uuid.json()["response"]["expireAt"][:19] == new_expiry[:19]
    by_name = _call(remnawave, "PATCH", "/api/users", json={"username": "tg_5551234", "telegramId": 7})
    assert by_name.json()["response"]["telegramId"] == 7
    past = _call(remnawave, "PATCH", "/api/users", json={"uuid": user["uuid"], "expireAt": _iso(-1)})
    assert past.status_code == 400 and past.json()["errors"][0]["path"] == ["expireAt"]
    limited = _call(remnawave, "PATCH", "/api/users", json={"uuid": user["uuid"], "status": "LIMITED"})
    assert limited.status_code == 400 and limited.json()["errorCode"] == "A089"
    missing = _call(remnawave, "PATCH", "/api/users", json={"username": "nobody", "expireAt": _iso(1)})
    assert missing.status_code == 404 and missing.json()["errorCode"] == "A025"
    assert _call(remnawave, "PATCH", "/api/users", json={"expireAt": _iso(1)}).status_code == 400


def test_patch_revives_an_expired_user(remnawave):
    _create(remnawave)
    remnawave.expire("tg_5551234")
    assert remnawave.user("tg_5551234")["status"] == "EXPIRED"
    revived = _call(remnawave, "PATCH", "/api/users", json={"username": "tg_5551234", "expireAt": _iso(30)})
    assert revived.json()["response"]["status"] == "ACTIVE"


def test_revoke_changes_the_subscription_url(remnawave):
    user = _create(remnawave).json()["response"]
    revoked = _call(remnawave, "POST", f"/api/users/{user['uuid']}/actions/revoke").json()["response"]
    assert revoked["shortUuid"] != user["shortUuid"] and revoked["subscriptionUrl"] != user["subscriptionUrl"]
    assert revoked["vlessUuid"] != user["vlessUuid"] and revoked["subRevokedAt"]
    assert not remnawave.subscription_is_current(user["subscriptionUrl"])
    assert remnawave.subscription_is_current(revoked["subscriptionUrl"])
    only = _call(remnawave, "POST", f"/api/users/{user['uuid']}/actions/revoke",
                 json={"revokeOnlyPasswords": True}).json()["response"]
    assert only["shortUuid"] == revoked["shortUuid"] and only["vlessUuid"] != revoked["vlessUuid"]


def test_extend_is_relative_and_not_idempotent(remnawave):
    user = _create(remnawave).json()["response"]
    start = datetime.fromisoformat(user["expireAt"])
    path = f"/api/users/{user['uuid']}/actions/extend"
    for _ in range(2):
        assert _call(remnawave, "POST", path, json={"days": 30}).status_code == 200
    extended = datetime.fromisoformat(remnawave.user("tg_5551234")["expireAt"])
    assert extended - start == timedelta(days=60) and remnawave.extend_calls == 2
    remnawave.expire("tg_5551234")
    revived = _call(remnawave, "POST", path, json={"days": 1}).json()["response"]
    assert revived["status"] == "ACTIVE"
    assert datetime.fromisoformat(revived["expireAt"]) > datetime.now(timezone.utc) + timedelta(hours=23)
    assert _call(remnawave, "POST", path, json={"days": 0}).status_code == 400


def test_proxy_check_closes_the_connection(remnawave):
    remnawave.require_proxy_headers = True
    with pytest.raises(requests.ConnectionError):
        _call(remnawave, "GET", "/api/users/by-username/x")
    with pytest.raises(requests.ConnectionError):
        _call(remnawave, "GET", "/api/users/by-username/x",
              headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"})
    proxied = _call(remnawave, "GET", "/api/users/by-username/x",
                    headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
    assert proxied.status_code == 404
    assert [r.status for r in remnawave.requests] == [0, 0, 404]


def test_failures_timeout_and_down(remnawave):
    remnawave.fail_next(1, status=500)
    failed = _create(remnawave)
    assert failed.status_code == 500 and failed.json()["errorCode"] == "A001"
    assert _create(remnawave).status_code == 201
    remnawave.delay_seconds = 5
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{remnawave.url}/api/users/by-username/tg_5551234", timeout=(5, 0.2),
                     headers={"Authorization": f"Bearer {remnawave.token}"})
    remnawave.delay_seconds = 0
    remnawave.down()
    with pytest.raises(requests.ConnectionError):
        _call(remnawave, "GET", "/api/users/by-username/tg_5551234")
    remnawave.up()
    assert _call(remnawave, "GET", "/api/users/by-username/tg_5551234").status_code == 200


def test_webhook_is_signed_like_the_panel(remnawave, sink):
    _create(remnawave)
    body = remnawave.webhook_body("user.modified", "tg_5551234")
    assert remnawave.send_webhook(f"{sink.url}/webhook/remnawave", body).status_code == 200
    received = sink.wait_for()[0]
    assert received.body == body and received.headers["user-agent"] == "Remnawave"
    assert hmac.compare_digest(received.headers["x-remnawave-signature"],
                               remnawave_signature("TestWebhookSecret123", body))
    parsed = json.loads(body)
    assert received.headers["x-remnawave-timestamp"] == parsed["timestamp"]
    assert parsed["scope"] == "user" and parsed["data"]["username"] == "tg_5551234" and parsed["meta"] is None
