"""The 3x-ui adapter against the fake panel, current and legacy: login and CSRF, route fallback, expiry, links."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.errors import NotConfigured, ProviderRejected, ProviderUnavailable
from services.panels import xui as adapter
from services.panels.base import PanelUnreachable
from services.panels.xui import XuiPanel
from tests.fakes.xui import FakeXui
from webhook_config import load_settings

EXPIRY = datetime(2027, 1, 1, tzinfo=timezone.utc)
SUB_URL = "https://vpn.example.test:2096/sub/"


@pytest.fixture(autouse=True)
def _fresh_logins():
    adapter.forget_logins()
    yield
    adapter.forget_logins()


@pytest.fixture(params=["xui", "xui_legacy"])
def fake(request) -> FakeXui:
    """Each behaviour on a current panel (client routes, CSRF) and on a v2.x one (inbound routes, no CSRF)."""
    return request.getfixturevalue(request.param)


def panel(fake: FakeXui, **env: str) -> XuiPanel:
    settings = load_settings({"PANEL_TYPE": "3x-ui", "XUI_URL": fake.base_url, "XUI_USERNAME": fake.username,
                              "XUI_PASSWORD": fake.password, "XUI_INBOUND_ID": "1", "XUI_SUB_URL": SUB_URL,
                              "HTTP_TIMEOUT_SECONDS": "2", **env}, Path("/tmp"))
    return XuiPanel(settings)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_ensure_user_adds_a_client_to_the_inbound(fake):
    url = panel(fake).ensure_user("tg42_pro", EXPIRY, telegram_id=42)
    client = fake.client("tg42_pro")
    assert client["expiryTime"] == millis(EXPIRY) and client["enable"] is True and client["tgId"] == 42
    assert client["inboundIds"] == [1] and client["id"]
    assert url == SUB_URL + client["subId"]


def test_ensure_user_sets_the_expiry_of_an_existing_client_and_keeps_it_whole(fake):
    first = panel(fake).ensure_user("tg42_pro", EXPIRY, telegram_id=42)
    before = fake.client("tg42_pro")
    later = EXPIRY + timedelta(days=30)
    assert panel(fake).ensure_user("tg42_pro", later, telegram_id=42) == first
    after = fake.client("tg42_pro")
    assert after["expiryTime"] == millis(later)
    assert {**after, "expiryTime": 0, "updated_at": 0} == {**before, "expiryTime": 0, "updated_at": 0}


def test_repeating_a_call_never_adds_time(fake):
    for _ in range(3):
        panel(fake).ensure_user("tg42_pro", EXPIRY)
    assert fake.client("tg42_pro")["expiryTime"] == millis(EXPIRY)


def test_an_expired_client_is_enabled_again_by_a_new_expiry(fake):
    panel(fake).ensure_user("tg42_pro", EXPIRY)
    with fake._lock:
        fake.clients["tg42_pro"]["enable"] = False  # what the panel's expiry job does
    panel(fake).ensure_user("tg42_pro", EXPIRY + timedelta(days=1))
    assert fake.client("tg42_pro")["enable"] is True


def test_revoke_rotates_the_link_and_the_credentials(fake):
    old_url = panel(fake).ensure_user("tg42_pro", EXPIRY)
    old = fake.client("tg42_pro")
    new_url = panel(fake).revoke("tg42_pro")
    new = fake.client("tg42_pro")
    assert new_url == SUB_URL + new["subId"] and new_url != old_url
    assert new["id"] != old["id"] and new["expiryTime"] == millis(EXPIRY)


def test_revoking_an_unknown_client_is_refused(fake):
    with pytest.raises(ProviderRejected, match="no client"):
        panel(fake).revoke("tg9_nobody")


def test_login_carries_the_csrf_token_on_current_releases(xui):
    panel(xui).ensure_user("tg42_pro", EXPIRY)
    token = xui.requests[0]
    assert (token.method, token.path) == ("GET", "/abc123/csrf-token")
    posts = [r for r in xui.requests if r.method == "POST"]
    assert posts and all(r.headers.get("x-csrf-token") for r in posts) and posts[0].path == "/abc123/login"


def test_legacy_panels_log_in_without_csrf_and_fall_back_to_inbound_routes_once(xui_legacy):
    panel(xui_legacy).ensure_user("tg1_a", EXPIRY)
    assert [r.status for r in xui_legacy.requests if "/clients/" in r.path] == [404]
    xui_legacy.clear_requests()
    panel(xui_legacy).ensure_user("tg2_a", EXPIRY)
    assert not [r for r in xui_legacy.requests if "/clients/" in r.path]
    assert not [r for r in xui_legacy.requests if r.headers.get("x-csrf-token")]
    assert set(xui_legacy.clients) == {"tg1_a", "tg2_a"} and xui_legacy.logins == 1


def test_the_session_is_cached_across_panels(fake):
    panel(fake).ensure_user("tg1_a", EXPIRY)
    panel(fake).ensure_user("tg2_a", EXPIRY)
    assert fake.logins == 1


def test_a_forgotten_session_means_one_new_login(fake):
    panel(fake).ensure_user("tg1_a", EXPIRY)
    fake.expire_sessions()
    panel(fake).ensure_user("tg1_a", EXPIRY + timedelta(days=1))
    assert fake.logins == 2 and fake.client("tg1_a")["expiryTime"] == millis(EXPIRY + timedelta(days=1))


def test_threads_share_one_login(xui):
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: panel(xui).ensure_user(f"tg{n}_a", EXPIRY), range(8)))
    assert xui.logins == 1 and len(xui.clients) == 8


def test_threads_share_one_new_login_after_the_panel_forgot_the_session(fake):
    panel(fake).ensure_user("tg0_a", EXPIRY)
    fake.expire_sessions()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: panel(fake).ensure_user(f"tg{n}_a", EXPIRY), range(1, 9)))
    assert fake.logins == 2 and len(fake.clients) == 9


def test_an_api_token_replaces_the_login():
    with FakeXui(base_path="/abc123/", api_token="xui-api-token") as fake:
        panel(fake, XUI_USERNAME="", XUI_PASSWORD="", XUI_TOKEN="xui-api-token").ensure_user("tg1_a", EXPIRY)
        assert fake.logins == 0 and "tg1_a" in fake.clients
        assert {r.headers["authorization"] for r in fake.requests} == {"Bearer xui-api-token"}


def test_a_wrong_password_is_a_configuration_problem(fake):
    with pytest.raises(NotConfigured, match="XUI_PASSWORD") as caught:
        panel(fake, XUI_PASSWORD="wrong-password").ensure_user("tg1_a", EXPIRY)
    assert "wrong-password" not in caught.value.message


def test_a_client_added_by_a_concurrent_sync_gets_the_expiry(xui):
    panel(xui).ensure_user("tg42_pro", EXPIRY)
    xui.fail_next(status=200, path="clients/get/tg42_pro", body={"success": False, "msg": "record not found"})
    panel(xui).ensure_user("tg42_pro", EXPIRY + timedelta(days=2))
    assert xui.client("tg42_pro")["expiryTime"] == millis(EXPIRY + timedelta(days=2))


def test_a_trojan_client_is_updated_by_its_password(xui_legacy):
    xui_legacy.inbounds[1]["protocol"] = "trojan"
    panel(xui_legacy).ensure_user("tg42_pro", EXPIRY)
    panel(xui_legacy).ensure_user("tg42_pro", EXPIRY + timedelta(days=1))
    password = xui_legacy.client("tg42_pro")["password"]
    assert [r.path for r in xui_legacy.requests if "updateClient" in r.path] == [
        f"/abc123/panel/api/inbounds/updateClient/{password}"]


def test_an_unknown_inbound_is_refused(fake):
    with pytest.raises(ProviderRejected):
        panel(fake, XUI_INBOUND_ID="9").ensure_user("tg1_a", EXPIRY)


def test_a_wrong_base_path_is_refused_naming_the_setting(fake):
    with pytest.raises((ProviderRejected, NotConfigured), match="XUI_"):
        panel(fake, XUI_URL=fake.url + "/wrong/").ensure_user("tg1_a", EXPIRY)


def test_server_error_is_retryable_but_not_a_connection_error(fake):
    panel(fake).ensure_user("tg1_a", EXPIRY)
    fake.fail_next(status=502)
    with pytest.raises(ProviderUnavailable) as caught:
        panel(fake).ensure_user("tg1_a", EXPIRY)
    assert not isinstance(caught.value, PanelUnreachable)


def test_panel_down_is_a_connection_error(fake):
    fake.down()
    with pytest.raises(PanelUnreachable):
        panel(fake).ensure_user("tg1_a", EXPIRY)
