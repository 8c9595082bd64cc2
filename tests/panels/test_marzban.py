"""The Marzban adapter against the fake panel: login, create or extend, revoke, absolute links, failures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.errors import ProviderRejected, ProviderUnavailable
from services.panels.base import panel_username
from services.panels import marzban as adapter
from services.panels.base import PanelUnreachable
from services.panels.marzban import MarzbanPanel
from webhook_config import load_settings

EXPIRY = datetime(2027, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _fresh_tokens():
    adapter.forget_tokens()
    yield
    adapter.forget_tokens()


def panel(fake, **env: str) -> MarzbanPanel:
    settings = load_settings({"PANEL_TYPE": "marzban", "MARZBAN_URL": fake.url, "MARZBAN_USERNAME": fake.username,
                              "MARZBAN_PASSWORD": fake.password, "HTTP_TIMEOUT_SECONDS": "2", **env}, Path("/tmp"))
    return MarzbanPanel(settings)


def test_ensure_user_creates_a_missing_user_with_the_expiry(marzban):
    url = panel(marzban).ensure_user("tg42_pro", EXPIRY)
    user = marzban.user("tg42_pro")
    assert user["expire"] == int(EXPIRY.timestamp()) and user["status"] == "active"
    assert set(user["proxies"]) == {"vless"}
    assert url.startswith(f"{marzban.url}/sub/") and marzban.subscription_is_current(url)


def test_ensure_user_extends_an_existing_user_without_revoking(marzban):
    first = panel(marzban).ensure_user("tg42_pro", EXPIRY)
    later = EXPIRY + timedelta(days=30)
    panel(marzban).ensure_user("tg42_pro", later)
    assert marzban.user("tg42_pro")["expire"] == int(later.timestamp())
    assert marzban.subscription_is_current(first)


def test_admin_token_is_cached_across_calls(marzban):
    panel(marzban).ensure_user("tg1_a", EXPIRY)
    panel(marzban).ensure_user("tg2_a", EXPIRY)
    assert marzban.logins == 1


def test_expired_token_means_one_new_login(marzban):
    panel(marzban).ensure_user("tg1_a", EXPIRY)
    marzban.expire_tokens()
    panel(marzban).revoke("tg1_a")
    assert marzban.logins == 2


def test_revoke_returns_a_new_link_and_invalidates_the_old_one(marzban):
    old = panel(marzban).ensure_user("tg1_a", EXPIRY)
    new = panel(marzban).revoke("tg1_a")
    assert marzban.subscription_is_current(new) and not marzban.subscription_is_current(old)


def test_relative_link_is_made_absolute_with_the_public_url(marzban):
    url = panel(marzban, MARZBAN_PUBLIC_URL="https://vpn.example.test/").ensure_user("tg1_a", EXPIRY)
    assert url.startswith("https://vpn.example.test/sub/")


def test_absolute_link_from_a_panel_with_a_prefix_is_kept():
    from tests.fakes.marzban import FakeMarzban
    with FakeMarzban(sub_prefix="https://sub.example.test") as fake:
        assert panel(fake).ensure_user("tg1_a", EXPIRY).startswith("https://sub.example.test/sub/")


def test_configured_proxies_and_inbounds_are_used(marzban):
    panel(marzban, MARZBAN_PROXIES='{"vmess": {}, "trojan": {}}',
          MARZBAN_INBOUNDS='{"vmess": ["VMess TCP"], "trojan": ["Trojan Websocket TLS"]}').ensure_user("tg1_a", EXPIRY)
    user = marzban.user("tg1_a")
    assert set(user["proxies"]) == {"vmess", "trojan"} and user["inbounds"]["vmess"] == ["VMess TCP"]


def test_server_error_is_retryable_but_not_a_connection_error(marzban):
    panel(marzban).ensure_user("tg1_a", EXPIRY)
    marzban.fail_next(status=502)
    with pytest.raises(ProviderUnavailable) as caught:
        panel(marzban).revoke("tg1_a")
    assert not isinstance(caught.value, PanelUnreachable) and caught.value.status == 503


def test_panel_down_is_a_connection_error(marzban):
    marzban.down()
    with pytest.raises(PanelUnreachable):
        panel(marzban).ensure_user("tg1_a", EXPIRY)


def test_panel_refusal_is_permanent(marzban):
    with pytest.raises(ProviderRejected) as caught:
        panel(marzban).ensure_user("Bad Name!", EXPIRY)
    assert caught.value.status == 502 and "422" in caught.value.message


def test_wrong_admin_password_is_permanent(marzban):
    with pytest.raises(ProviderRejected, match="login failed"):
        panel(marzban, MARZBAN_PASSWORD="wrong").ensure_user("tg1_a", EXPIRY)


def test_revoking_an_unknown_user_is_refused(marzban):
    with pytest.raises(ProviderRejected, match="404"):
        panel(marzban).revoke("tg9_nobody")


@pytest.mark.parametrize("telegram_id, plan, expected", [
    (42, "pro", "tg42_pro"),
    (42, "basic_1m", "tg42_basic_1m"),
])
def test_panel_username_is_readable_for_clean_plans(telegram_id, plan, expected):
    assert panel_username(telegram_id, plan) == expected


@pytest.mark.parametrize("plan", ["Pro", "vpn-premium", "Премиум", "a" * 40, "x.y z"])
def test_panel_username_fits_marzban_rules_and_is_distinct(plan):
    name = panel_username(9007199254740993, plan)
    assert 3 <= len(name) <= 32 and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    assert name == panel_username(9007199254740993, plan)
    assert name != panel_username(9007199254740993, plan.lower() + "x")
