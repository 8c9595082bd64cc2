"""Settings: defaults, validation with one clear line naming the variable, production rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from webhook_config import ConfigError, load_settings

INSTANCE = Path("/tmp/instance")
STRONG = "s" * 32


def test_defaults_follow_the_spec():
    settings = load_settings({}, INSTANCE)
    assert settings.database_url == "sqlite:////tmp/instance/webhook.db"
    assert (settings.sbp_gateway, settings.credit_unit, settings.order_ttl_seconds) == ("sandbox", "NDN", 900)
    assert settings.max_body_bytes == 65536
    assert settings.outbox_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.api_tokens == () and settings.server_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("env, size", [
    ({}, 6),  # one request at a time, 4 parallel panel calls, one read outside the session
    ({"GUNICORN_THREADS": "8", "PANEL_REFRESH_CONCURRENCY": "2"}, 11),
    ({"GUNICORN_THREADS": "8", "DATABASE_POOL_SIZE": "3"}, 3),
])
def test_database_pool_holds_every_connection_a_process_may_use_at_once(env, size):
    assert load_settings(env, INSTANCE).database_pool_size == size


def test_tokens_are_comma_separated_for_rotation():
    assert load_settings({"WEBHOOK_API_TOKEN": " a , b,"}, INSTANCE).api_tokens == ("a", "b")


@pytest.mark.parametrize("env, variable", [
    ({"ORDER_TTL_SECONDS": "soon"}, "ORDER_TTL_SECONDS"),
    ({"ORDER_TTL_SECONDS": "0"}, "ORDER_TTL_SECONDS"),
    ({"SBP_GATEWAY": "paypal"}, "SBP_GATEWAY"),
    ({"SBP_GATEWAY": "tbank"}, "TBANK_TERMINAL_KEY"),
    ({"SERVER_URL": "ftp://x"}, "SERVER_URL"),
    ({"OUTBOX_RETRY_SCHEDULE": "5,x"}, "OUTBOX_RETRY_SCHEDULE"),
    ({"MERCHANT_WEBHOOK_URL": "https://m.example"}, "MERCHANT_WEBHOOK_SECRET"),
    ({"MERCHANT_WEBHOOK_URL": "https://m.example", "MERCHANT_WEBHOOK_SECRET": "plain"}, "MERCHANT_WEBHOOK_SECRET"),
    ({"PANEL_TYPE": "marzban"}, "MARZBAN_URL"),
    ({"TELEGRAM_WEBHOOK_SECRET": "has space"}, "TELEGRAM_WEBHOOK_SECRET"),
    ({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE"),
    ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS"),
    ({"DATABASE_LOCK_TIMEOUT_SECONDS": "11"}, "DATABASE_LOCK_TIMEOUT_SECONDS"),
    ({"DATABASE_LOCK_TIMEOUT_SECONDS": "5", "GUNICORN_TIMEOUT": "12"}, "DATABASE_LOCK_TIMEOUT_SECONDS"),
    ({"APP_ENV": "production", "SECRET_KEY": STRONG, "WEBHOOK_API_TOKEN": f"{STRONG},short"}, "WEBHOOK_API_TOKEN"),
    ({"APP_ENV": "production"}, "SECRET_KEY"),
])
def test_bad_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env, INSTANCE)


PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": STRONG, "SBP_GATEWAY": "tbank",
              "TBANK_TERMINAL_KEY": "terminal", "TBANK_PASSWORD": "short-issued"}


def test_production_accepts_long_secrets():
    settings = load_settings({**PRODUCTION, "WEBHOOK_API_TOKEN": STRONG, "ADMIN_API_KEY": "a" * 32}, INSTANCE)
    assert settings.production


@pytest.mark.parametrize("env, variable", [
    ({"SBP_GATEWAY": "sandbox"}, "SBP_GATEWAY"),
    ({"SBP_GATEWAY": ""}, "SBP_GATEWAY"),  # sandbox by default
    ({"WEBHOOK_API_TOKEN": STRONG, "ADMIN_API_KEY": STRONG}, "ADMIN_API_KEY"),
    ({"WEBHOOK_API_TOKEN": f"{'t' * 32},{STRONG}", "ADMIN_API_KEY": f"{STRONG},{'a' * 32}"}, "ADMIN_API_KEY"),
])
def test_production_refuses_the_sandbox_and_an_api_token_that_is_an_admin_key(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**PRODUCTION, **env}, INSTANCE)


def test_production_startup_with_the_sandbox_prints_one_line(repo_root, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "APP_ENV": "production", "SECRET_KEY": STRONG,
           "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("configuration error: SBP_GATEWAY=sandbox is refused in production")
    assert "\n" not in result.stderr.strip()


def test_secrets_are_not_in_the_repr():
    secrets = {"TBANK_PASSWORD": "hunter2-secret", "CRYPTOBOT_TOKEN": "1:tok", "WEBHOOK_API_TOKEN": "api-tok",
               "ADMIN_API_KEY": "adm-key", "SECRET_KEY": "sess-key", "DATABASE_URL": "postgresql://u:pw@h/db",
               "BMC_WEBHOOK_SECRET": "bmc-sec", "TELEGRAM_BOT_TOKEN": "1:bot", "MARZBAN_PASSWORD": "mz-pw"}
    text = repr(load_settings(secrets, INSTANCE))
    assert not [value for value in secrets.values() if value in text]


def test_startup_with_bad_setting_prints_one_line(repo_root, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ORDER_TTL_SECONDS": "never", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == "configuration error: ORDER_TTL_SECONDS must be a whole number, got 'never'"
