"""The Remnawave adapter against the fake panel: create or set an absolute expiry, revoke, errors, proxy check."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.errors import NotConfigured, ProviderRejected, ProviderUnavailable
from services.panels.base import PanelUnreachable, panel_username
from services.panels.remnawave import RemnawavePanel
from tests.fakes.remnawave import DEFAULT_SQUAD
from webhook_config import load_settings

NOW = datetime.now(timezone.utc).replace(microsecond=0)
EXPIRY = NOW + timedelta(days=30)


def panel(fake, clock=lambda: NOW, **env: str) -> RemnawavePanel:
    settings = load_settings({"PANEL_TYPE": "remnawave", "REMNAWAVE_URL": fake.url, "REMNAWAVE_TOKEN": fake.token,
                              "HTTP_TIMEOUT_SECONDS": "2", **env}, Path("/tmp"))
    return RemnawavePanel(settings, clock=clock)


def expire_at(fake, username: str) -> datetime:
    return datetime.fromisoformat(fake.user(username)["expireAt"])


def test_ensure_user_creates_a_missing_user_for_the_buyer(remnawave):
    url = panel(remnawave, REMNAWAVE_SQUADS=DEFAULT_SQUAD).ensure_user("tg42_pro", EXPIRY, telegram_id=42)
    user = remnawave.user("tg42_pro")
    assert expire_at(remnawave, "tg42_pro") == EXPIRY and user["status"] == "ACTIVE"
    assert user["telegramId"] == 42
    assert [squad["uuid"] for squad in user["activeInternalSquads"]] == [DEFAULT_SQUAD]
    assert url == user["subscriptionUrl"] and remnawave.subscription_is_current(url)


def test_ensure_user_sets_the_expiry_of_an_existing_user_without_revoking(remnawave):
    first = panel(remnawave).ensure_user("tg42_pro", EXPIRY, telegram_id=42)
    later = EXPIRY + timedelta(days=30)
    assert panel(remnawave).ensure_user("tg42_pro", later, telegram_id=42) == first
    assert expire_at(remnawave, "tg42_pro") == later and remnawave.subscription_is_current(first)
    assert [r.method for r in remnawave.requests if r.path == "/api/users"] == ["POST", "PATCH"]


def test_repeating_a_call_never_adds_time(remnawave):
    for _ in range(3):
        panel(remnawave).ensure_user("tg42_pro", EXPIRY, telegram_id=42)
    assert expire_at(remnawave, "tg42_pro") == EXPIRY
    assert remnawave.extend_calls == 0 and not [r for r in remnawave.requests if "/extend" in r.path]


def test_a_new_expiry_revives_an_expired_user(remnawave):
    panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    remnawave.expire("tg42_pro")
    panel(remnawave).ensure_user("tg42_pro", EXPIRY + timedelta(days=1))
    assert remnawave.user("tg42_pro")["status"] == "ACTIVE"


def test_an_ended_expiry_disables_the_user_and_a_paid_one_enables_it_again(remnawave):
    panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    panel(remnawave).ensure_user("tg42_pro", NOW)
    assert remnawave.user("tg42_pro")["status"] == "DISABLED"
    panel(remnawave).ensure_user("tg42_pro", EXPIRY + timedelta(days=5))
    assert remnawave.user("tg42_pro")["status"] == "ACTIVE"
    assert expire_at(remnawave, "tg42_pro") == EXPIRY + timedelta(days=5)


def test_a_user_created_by_a_concurrent_sync_gets_the_expiry(remnawave):
    panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    remnawave.fail_next(status=404, path="/by-username/tg42_pro", body={
        "timestamp": "2026-01-01T00:00:00.000Z", "path": "/api/users", "message": "User not found",
        "errorCode": "A025"})
    panel(remnawave).ensure_user("tg42_pro", EXPIRY + timedelta(days=2))
    assert expire_at(remnawave, "tg42_pro") == EXPIRY + timedelta(days=2)


def test_revoke_returns_a_new_link_and_invalidates_the_old_one(remnawave):
    old = panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    new = panel(remnawave).revoke("tg42_pro")
    assert new != old and remnawave.subscription_is_current(new) and not remnawave.subscription_is_current(old)
    assert expire_at(remnawave, "tg42_pro") == EXPIRY


def test_revoking_an_unknown_user_is_refused(remnawave):
    with pytest.raises(ProviderRejected, match="no user"):
        panel(remnawave).revoke("tg9_nobody")


def test_a_panel_called_directly_gets_the_proxy_headers(remnawave):
    remnawave.require_proxy_headers = True
    panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    assert {(r.headers["x-forwarded-for"], r.headers["x-forwarded-proto"]) for r in remnawave.requests} == {
        ("127.0.0.1", "https")}


@pytest.mark.parametrize("arrange", [lambda fake: setattr(fake, "token", "another-token"),
                                     lambda fake: fake.forbidden_tokens.add(fake.token)])
def test_a_refused_token_is_a_configuration_problem(remnawave, arrange):
    token = remnawave.token
    arrange(remnawave)
    with pytest.raises(NotConfigured, match="REMNAWAVE_TOKEN") as caught:
        panel(remnawave, REMNAWAVE_TOKEN=token).ensure_user("tg42_pro", EXPIRY)
    assert token not in caught.value.message


def test_server_error_is_retryable_but_not_a_connection_error(remnawave):
    remnawave.fail_next(status=500)
    with pytest.raises(ProviderUnavailable) as caught:
        panel(remnawave).ensure_user("tg42_pro", EXPIRY)
    assert not isinstance(caught.value, PanelUnreachable)


def test_panel_down_is_a_connection_error(remnawave):
    remnawave.down()
    with pytest.raises(PanelUnreachable):
        panel(remnawave).ensure_user("tg42_pro", EXPIRY)


def test_a_slow_panel_times_out_as_a_connection_error(remnawave):
    remnawave.delay_seconds = 2
    with pytest.raises(PanelUnreachable, match="within 0.5 s"):
        panel(remnawave, HTTP_TIMEOUT_SECONDS="0.5").ensure_user("tg42_pro", EXPIRY)


def test_a_validation_error_is_refused_with_its_fields(remnawave):
    with pytest.raises(ProviderRejected, match="username") as caught:
        panel(remnawave).ensure_user("Bad Name!", EXPIRY)
    assert "400" in caught.value.message


@pytest.mark.parametrize("plan", ["pro", "Pro", "vpn-premium", "Премиум", "a" * 40, "x.y z"])
def test_panel_usernames_are_valid_remnawave_usernames(plan):
    assert re.fullmatch(r"[A-Za-z0-9_-]{6,36}", panel_username(12345, plan))
