"""YooKassa settings: defaults from SPEC.md §4, the allowed networks validated at startup with one clear line."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from webhook_config import YOOKASSA_PUBLISHED_IPS, ConfigError, load_settings

INSTANCE = Path("/tmp/instance")


def test_defaults():
    settings = load_settings({"SERVER_URL": "https://pay.example/"}, INSTANCE)
    assert (settings.yookassa_shop_id, settings.yookassa_secret_key) == ("", "")
    assert settings.yookassa_api_url == "https://api.yookassa.ru/v3/"
    assert settings.yookassa_return_url == "https://pay.example/paid"
    assert settings.yookassa_allowed_ips == tuple(ipaddress.ip_network(n) for n in YOOKASSA_PUBLISHED_IPS)
    assert load_settings({}, INSTANCE).yookassa_return_url == "http://127.0.0.1:8080/paid"


def test_the_published_list_is_protocols_md():
    assert set(YOOKASSA_PUBLISHED_IPS) == {"185.71.76.0/27", "185.71.77.0/27", "77.75.153.0/25", "77.75.154.128/25",
                                           "77.75.156.11/32", "77.75.156.35/32", "2a02:5180::/32"}


def test_allowed_addresses_are_comma_separated_networks_or_hosts():
    settings = load_settings({"YOOKASSA_ALLOWED_IPS": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,"}, INSTANCE)
    assert [str(network) for network in settings.yookassa_allowed_ips] == ["10.0.0.0/8", "192.0.2.7/32",
                                                                           "2001:db8::/32"]


@pytest.mark.parametrize("value", ["185.71.76.1/27", "localhost", "10.0.0.0/33", "2a02:5180::/129", "1.2.3"])
def test_bad_allowed_addresses_name_the_variable(value):
    with pytest.raises(ConfigError, match="YOOKASSA_ALLOWED_IPS"):
        load_settings({"YOOKASSA_ALLOWED_IPS": value}, INSTANCE)


@pytest.mark.parametrize("env, variable", [
    ({"YOOKASSA_SHOP_ID": "123456"}, "YOOKASSA_SECRET_KEY"),
    ({"YOOKASSA_SECRET_KEY": "test_abc"}, "YOOKASSA_SHOP_ID"),
    ({"YOOKASSA_API_URL": "api.yookassa.ru"}, "YOOKASSA_API_URL"),
    ({"YOOKASSA_RETURN_URL": "/paid"}, "YOOKASSA_RETURN_URL"),
])
def test_incomplete_or_malformed_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env, INSTANCE)


def test_the_secret_key_is_not_in_the_repr():
    settings = load_settings({"YOOKASSA_SHOP_ID": "123456", "YOOKASSA_SECRET_KEY": "live_s3cr3t-key"}, INSTANCE)
    assert "live_s3cr3t-key" not in repr(settings)


def test_startup_with_a_bad_network_prints_one_line(repo_root, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "YOOKASSA_ALLOWED_IPS": "185.71.76.0/27,nowhere",
           "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: YOOKASSA_ALLOWED_IPS must be") and "'nowhere'" in line
