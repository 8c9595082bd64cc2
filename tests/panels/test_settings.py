"""PANEL_TYPE and each panel's settings (SPEC.md §4): a configured panel without what it needs stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.panels.registry import PANELS
from webhook_config import PANEL_TYPES, ConfigError, load_settings

INSTANCE = Path("/tmp")
SQUAD = "00000000-0000-4000-8000-000000000001"
REMNAWAVE = {"PANEL_TYPE": "remnawave", "REMNAWAVE_URL": "http://127.0.0.1:3000", "REMNAWAVE_TOKEN": "tok"}
XUI = {"PANEL_TYPE": "3x-ui", "XUI_URL": "https://panel.example.test/abc123/", "XUI_USERNAME": "admin",
       "XUI_PASSWORD": "pw", "XUI_INBOUND_ID": "3", "XUI_SUB_URL": "https://panel.example.test:2096/sub/"}


def test_every_panel_type_has_a_panel():
    assert set(PANELS) == set(PANEL_TYPES) - {""}


def test_remnawave_settings():
    settings = load_settings({**REMNAWAVE, "REMNAWAVE_SQUADS": f" {SQUAD} ,"}, INSTANCE)
    assert (settings.panel_type, settings.remnawave_squads) == ("remnawave", (SQUAD,))


def test_xui_settings_with_a_token_need_no_login():
    env = {**XUI, "XUI_USERNAME": "", "XUI_PASSWORD": "", "XUI_TOKEN": "api-token"}
    settings = load_settings(env, INSTANCE)
    assert (settings.xui_inbound_id, settings.xui_token) == (3, "api-token")


@pytest.mark.parametrize("env, variable", [
    ({"PANEL_TYPE": "sui"}, "PANEL_TYPE"),
    ({**REMNAWAVE, "REMNAWAVE_URL": ""}, "REMNAWAVE_URL"),
    ({**REMNAWAVE, "REMNAWAVE_URL": "panel:3000"}, "REMNAWAVE_URL"),
    ({**REMNAWAVE, "REMNAWAVE_TOKEN": ""}, "REMNAWAVE_TOKEN"),
    ({**REMNAWAVE, "REMNAWAVE_SQUADS": "default"}, "REMNAWAVE_SQUADS"),
    ({**XUI, "XUI_URL": ""}, "XUI_URL"),
    ({**XUI, "XUI_INBOUND_ID": ""}, "XUI_INBOUND_ID"),
    ({**XUI, "XUI_INBOUND_ID": "0"}, "XUI_INBOUND_ID"),
    ({**XUI, "XUI_INBOUND_ID": "first"}, "XUI_INBOUND_ID"),
    ({**XUI, "XUI_SUB_URL": ""}, "XUI_SUB_URL"),
    ({**XUI, "XUI_USERNAME": ""}, "XUI_USERNAME"),
    ({**XUI, "XUI_PASSWORD": ""}, "XUI_PASSWORD"),
    ({"APP_ENV": "production", "SECRET_KEY": "k" * 32, "REMNAWAVE_WEBHOOK_SECRET": "short"},
     "REMNAWAVE_WEBHOOK_SECRET"),
])
def test_bad_panel_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env, INSTANCE)


def test_panel_secrets_stay_out_of_the_settings_repr():
    secrets = {"REMNAWAVE_TOKEN": "rw-token-value", "REMNAWAVE_WEBHOOK_SECRET": "rw-hook-secret",
               "XUI_PASSWORD": "xui-password-value", "XUI_TOKEN": "xui-token-value"}
    text = repr(load_settings({**REMNAWAVE, **secrets}, INSTANCE))
    assert not [value for value in secrets.values() if value in text]
