"""All settings of the gateway, read once from the environment (and `.env`) and validated."""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

from services.miniapp.catalog import Catalog, CatalogError, load_catalog

MIN_SECRET_LENGTH = 32
# The names services/panels/registry.py lists; "" is no panel.
PANEL_TYPES = ("", "marzban", "remnawave", "3x-ui")
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
# A stored event whose processing failed (a bug, a data surprise) is tried again for about 8 hours.
DEFAULT_EVENT_RETRY_SCHEDULE = (60, 300, 1800, 7200, 21600)
# Where YooKassa sends HTTP notifications from, as it publishes them (PROTOCOLS.md §7).
YOOKASSA_PUBLISHED_IPS = ("185.71.76.0/27", "185.71.77.0/27", "77.75.153.0/25", "77.75.154.128/25",
                          "77.75.156.11/32", "77.75.156.35/32", "2a02:5180::/32")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Typed, validated settings; one instance per app, stored in app.config["SETTINGS"]."""

    app_env: str = "development"
    secret_key: str = field(default="", repr=False)
    database_url: str = field(default="", repr=False)
    database_pool_size: int = 6
    database_lock_timeout: float = 5.0
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    server_url: str = "http://127.0.0.1:8080"
    proxy_hops: int = 0
    log_level: str = "INFO"
    http_timeout: float = 10.0

    sbp_gateway: str = "sandbox"
    tbank_terminal_key: str = ""
    tbank_password: str = field(default="", repr=False)
    tbank_api_url: str = "https://securepay.tinkoff.ru/v2/"

    cryptobot_token: str = field(default="", repr=False)
    cryptobot_api_url: str = "https://testnet-pay.crypt.bot/api/"

    telegram_bot_token: str = field(default="", repr=False)
    telegram_webhook_secret: str = field(default="", repr=False)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_forward_url: str = ""

    bmc_webhook_secret: str = field(default="", repr=False)
    bmc_page_url: str = ""
    bmc_currency: str = "USD"

    yookassa_shop_id: str = ""
    yookassa_secret_key: str = field(default="", repr=False)
    yookassa_api_url: str = "https://api.yookassa.ru/v3/"
    yookassa_allowed_ips: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in YOOKASSA_PUBLISHED_IPS)
    yookassa_return_url: str = ""

    merchant_webhook_url: str = ""
    merchant_webhook_secret: str = field(default="", repr=False)

    panel_type: str = ""
    marzban_url: str = ""
    marzban_public_url: str = ""
    marzban_username: str = ""
    marzban_password: str = field(default="", repr=False)
    marzban_proxies: dict = field(default_factory=lambda: {"vless": {}}, hash=False)
    marzban_inbounds: dict = field(default_factory=dict, hash=False)
    remnawave_url: str = ""
    remnawave_token: str = field(default="", repr=False)
    remnawave_squads: tuple[str, ...] = ()
    remnawave_webhook_secret: str = field(default="", repr=False)
    xui_url: str = ""
    xui_username: str = ""
    xui_password: str = field(default="", repr=False)
    xui_token: str = field(default="", repr=False)
    xui_inbound_id: int = 0
    xui_sub_url: str = ""
    panel_refresh_concurrency: int = 4

    console_lockout_attempts: int = 5
    console_lockout_seconds: int = 900
    console_session_seconds: int = 43200

    catalog: Catalog | None = field(default=None, repr=False)
    miniapp_auth_max_age: int = 86400
    miniapp_bot_ids: tuple[int, ...] = ()

    credit_unit: str = "NDN"
    order_ttl_seconds: int = 900
    max_body_bytes: int = 65536
    outbox_retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    event_retry_schedule: tuple[int, ...] = DEFAULT_EVENT_RETRY_SCHEDULE
    reconcile_after_seconds: int = 60
    reconcile_interval_seconds: int = 60
    outbox_lease_seconds: int = 60
    worker_poll_seconds: float = 1.0

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def sandbox(self) -> bool:
        return self.sbp_gateway == "sandbox"


def _text(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default).strip() or default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _text(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _decimal_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name)
    if not raw:
        return default
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return float(value)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _uuids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    values = _list(env, name)
    for value in values:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ConfigError(f"{name} must list UUIDs (comma-separated), got {value!r}") from None
    return values


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _text(env, name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _url(env: Mapping[str, str], name: str, default: str = "") -> str:
    value = _text(env, name, default)
    if value and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    items = _list(env, name) or default
    try:
        # strict: a network written with host bits (185.71.76.1/27) is a typo to fix, not a range to guess.
        return tuple(ipaddress.ip_network(item, strict=True) for item in items)
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated IP addresses or CIDR networks: {exc}") from None


def _schedule(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = _text(env, name)
    if not raw:
        return default
    try:
        schedule = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole seconds, got {raw!r}") from None
    if not schedule or any(step <= 0 for step in schedule):
        raise ConfigError(f"{name} must list positive seconds")
    return schedule


def _json_object(env: Mapping[str, str], name: str, default: dict) -> dict:
    raw = _text(env, name)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object, got {raw!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {raw!r}")
    return value


def _bot_ids(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    ids = _list(env, name)
    if not all(item.isascii() and item.isdigit() and int(item) > 0 for item in ids):
        raise ConfigError(f"{name} must be comma-separated bot ids (the digits before ':' in a bot token)")
    return tuple(int(item) for item in ids)


def _catalog(env: Mapping[str, str], name: str) -> Catalog | None:
    path = _text(env, name)
    if not path:
        return None
    try:
        return load_catalog(Path(path))
    except CatalogError as exc:
        raise ConfigError(f"{name} {path}: {exc}") from None


def _connections_in_use(env: Mapping[str, str]) -> int:
    """Connections one process may hold at once: a request per gunicorn thread, the bulk panel refresh's
    parallel calls, and a read outside the request's session (GET /api/status)."""
    threads = _int(env, "GUNICORN_THREADS", 1, minimum=1)
    return threads + _int(env, "PANEL_REFRESH_CONCURRENCY", 4, minimum=1) + 1


def _lock_wait(env: Mapping[str, str]) -> float:
    """How long a statement may wait for a lock (or a pooled connection): well under gunicorn's request
    timeout, so a long wait ends as a 503 the caller retries, not as a killed worker and a dropped connection."""
    wait = _decimal_seconds(env, "DATABASE_LOCK_TIMEOUT_SECONDS", 5.0)
    request_timeout = _int(env, "GUNICORN_TIMEOUT", 30, minimum=1)
    if wait > request_timeout / 3:
        raise ConfigError(f"DATABASE_LOCK_TIMEOUT_SECONDS must be at most a third of GUNICORN_TIMEOUT "
                          f"({request_timeout} s), got {wait:g}")
    return wait


def default_database_url(instance_path: Path) -> str:
    return f"sqlite:///{instance_path / 'webhook.db'}"


def load_settings(environ: Mapping[str, str], instance_path: Path) -> Settings:
    """Build Settings from a mapping of environment variables; raise ConfigError on bad input."""
    env = dict(environ)
    settings = Settings(
        app_env=_choice(env, "APP_ENV", "development", ("development", "production", "testing")),
        secret_key=_text(env, "SECRET_KEY"),
        database_url=_text(env, "DATABASE_URL") or default_database_url(instance_path),
        database_pool_size=_int(env, "DATABASE_POOL_SIZE", _connections_in_use(env), minimum=1),
        database_lock_timeout=_lock_wait(env),
        api_tokens=_list(env, "WEBHOOK_API_TOKEN"),
        admin_keys=_list(env, "ADMIN_API_KEY"),
        server_url=_url(env, "SERVER_URL", "http://127.0.0.1:8080").rstrip("/"),
        proxy_hops=_int(env, "PROXY_HOPS", 0),
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        http_timeout=_decimal_seconds(env, "HTTP_TIMEOUT_SECONDS", 10.0),
        sbp_gateway=_choice(env, "SBP_GATEWAY", "sandbox", ("sandbox", "tbank")),
        tbank_terminal_key=_text(env, "TBANK_TERMINAL_KEY"),
        tbank_password=_text(env, "TBANK_PASSWORD"),
        tbank_api_url=_url(env, "TBANK_API_URL", "https://securepay.tinkoff.ru/v2/"),
        cryptobot_token=_text(env, "CRYPTOBOT_TOKEN"),
        cryptobot_api_url=_url(env, "CRYPTOBOT_API_URL", "https://testnet-pay.crypt.bot/api/"),
        telegram_bot_token=_text(env, "TELEGRAM_BOT_TOKEN"),
        telegram_webhook_secret=_text(env, "TELEGRAM_WEBHOOK_SECRET"),
        telegram_api_url=_url(env, "TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/"),
        telegram_forward_url=_url(env, "TELEGRAM_FORWARD_URL"),
        bmc_webhook_secret=_text(env, "BMC_WEBHOOK_SECRET"),
        bmc_page_url=_url(env, "BMC_PAGE_URL"),
        bmc_currency=_text(env, "BMC_CURRENCY", "USD").upper(),
        yookassa_shop_id=_text(env, "YOOKASSA_SHOP_ID"),
        yookassa_secret_key=_text(env, "YOOKASSA_SECRET_KEY"),
        yookassa_api_url=_url(env, "YOOKASSA_API_URL", "https://api.yookassa.ru/v3/"),
        yookassa_allowed_ips=_networks(env, "YOOKASSA_ALLOWED_IPS", YOOKASSA_PUBLISHED_IPS),
        yookassa_return_url=_url(env, "YOOKASSA_RETURN_URL",
                                 _url(env, "SERVER_URL", "http://127.0.0.1:8080").rstrip("/") + "/paid"),
        merchant_webhook_url=_url(env, "MERCHANT_WEBHOOK_URL"),
        merchant_webhook_secret=_text(env, "MERCHANT_WEBHOOK_SECRET"),
        panel_type=_choice(env, "PANEL_TYPE", "", PANEL_TYPES),
        marzban_url=_url(env, "MARZBAN_URL").rstrip("/"),
        marzban_public_url=_url(env, "MARZBAN_PUBLIC_URL").rstrip("/"),
        marzban_username=_text(env, "MARZBAN_USERNAME"),
        marzban_password=_text(env, "MARZBAN_PASSWORD"),
        marzban_proxies=_json_object(env, "MARZBAN_PROXIES", {"vless": {}}),
        marzban_inbounds=_json_object(env, "MARZBAN_INBOUNDS", {}),
        remnawave_url=_url(env, "REMNAWAVE_URL").rstrip("/"),
        remnawave_token=_text(env, "REMNAWAVE_TOKEN"),
        remnawave_squads=_uuids(env, "REMNAWAVE_SQUADS"),
        remnawave_webhook_secret=_text(env, "REMNAWAVE_WEBHOOK_SECRET"),
        xui_url=_url(env, "XUI_URL"),
        xui_username=_text(env, "XUI_USERNAME"),
        xui_password=_text(env, "XUI_PASSWORD"),
        xui_token=_text(env, "XUI_TOKEN"),
        xui_inbound_id=_int(env, "XUI_INBOUND_ID", 0, minimum=1),
        xui_sub_url=_url(env, "XUI_SUB_URL"),
        panel_refresh_concurrency=_int(env, "PANEL_REFRESH_CONCURRENCY", 4, minimum=1),
        console_lockout_attempts=_int(env, "CONSOLE_LOCKOUT_ATTEMPTS", 5, minimum=1),
        console_lockout_seconds=_int(env, "CONSOLE_LOCKOUT_SECONDS", 900, minimum=1),
        console_session_seconds=_int(env, "CONSOLE_SESSION_SECONDS", 43200, minimum=60),
        catalog=_catalog(env, "CATALOG_FILE"),
        miniapp_auth_max_age=_int(env, "MINIAPP_AUTH_MAX_AGE", 86400, minimum=1),
        miniapp_bot_ids=_bot_ids(env, "MINIAPP_BOT_IDS"),
        credit_unit=_text(env, "CREDIT_UNIT", "NDN"),
        order_ttl_seconds=_int(env, "ORDER_TTL_SECONDS", 900, minimum=1),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 65536, minimum=1024),
        outbox_retry_schedule=_schedule(env, "OUTBOX_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE),
        event_retry_schedule=_schedule(env, "EVENT_RETRY_SCHEDULE", DEFAULT_EVENT_RETRY_SCHEDULE),
        reconcile_after_seconds=_int(env, "RECONCILE_AFTER_SECONDS", 60, minimum=1),
        reconcile_interval_seconds=_int(env, "RECONCILE_INTERVAL_SECONDS", 60, minimum=1),
        outbox_lease_seconds=_int(env, "OUTBOX_LEASE_SECONDS", 60, minimum=1),
        worker_poll_seconds=_decimal_seconds(env, "WORKER_POLL_SECONDS", 1.0),
    )
    _validate(settings)
    return settings


def _require(settings: Settings, names: tuple[str, ...], feature: str) -> None:
    for name in names:
        if not getattr(settings, name.lower()):
            raise ConfigError(f"{name} is required when {feature}")


# Secrets the operator chooses; provider-issued ones (T-Bank password, BMC and
# Crypto Pay tokens) have whatever length the provider gives and are exempt.
_CHOSEN_SECRETS = {
    "WEBHOOK_API_TOKEN": "api_tokens",
    "ADMIN_API_KEY": "admin_keys",
    "SECRET_KEY": "secret_key",
    "TELEGRAM_WEBHOOK_SECRET": "telegram_webhook_secret",
    "MERCHANT_WEBHOOK_SECRET": "merchant_webhook_secret",
    "REMNAWAVE_WEBHOOK_SECRET": "remnawave_webhook_secret",
}


def _validate(settings: Settings) -> None:
    # A lease shorter than one outbound call would let a second worker deliver the same message.
    if settings.outbox_lease_seconds <= settings.http_timeout:
        raise ConfigError("OUTBOX_LEASE_SECONDS must be longer than HTTP_TIMEOUT_SECONDS")
    if settings.sbp_gateway == "tbank":
        _require(settings, ("TBANK_TERMINAL_KEY", "TBANK_PASSWORD"), "SBP_GATEWAY=tbank")
    if settings.merchant_webhook_url:
        _require(settings, ("MERCHANT_WEBHOOK_SECRET",), "MERCHANT_WEBHOOK_URL is set")
        if not settings.merchant_webhook_secret.startswith("whsec_"):
            raise ConfigError("MERCHANT_WEBHOOK_SECRET must be a Standard Webhooks secret (whsec_...)")
    if settings.panel_type == "marzban":
        _require(settings, ("MARZBAN_URL", "MARZBAN_USERNAME", "MARZBAN_PASSWORD"), "PANEL_TYPE=marzban")
        _require(settings, ("MARZBAN_PROXIES",), "PANEL_TYPE=marzban")
    if settings.catalog is not None and not (settings.telegram_bot_token or settings.miniapp_bot_ids):
        raise ConfigError("TELEGRAM_BOT_TOKEN or MINIAPP_BOT_IDS is required when CATALOG_FILE is set "
                          "(the Mini App's init data is checked with one of them)")
    if settings.panel_type == "remnawave":
        _require(settings, ("REMNAWAVE_URL", "REMNAWAVE_TOKEN"), "PANEL_TYPE=remnawave")
    if settings.panel_type == "3x-ui":
        _require(settings, ("XUI_URL", "XUI_INBOUND_ID", "XUI_SUB_URL"), "PANEL_TYPE=3x-ui")
        if not settings.xui_token:
            _require(settings, ("XUI_USERNAME", "XUI_PASSWORD"), "PANEL_TYPE=3x-ui and XUI_TOKEN is not set")
    if settings.yookassa_shop_id or settings.yookassa_secret_key:
        _require(settings, ("YOOKASSA_SHOP_ID", "YOOKASSA_SECRET_KEY"), "either YooKassa setting is set")
    if settings.telegram_webhook_secret and not _is_telegram_secret(settings.telegram_webhook_secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    if settings.production:
        _require(settings, ("SECRET_KEY",), "APP_ENV=production")
        for name, attr in _CHOSEN_SECRETS.items():
            value = getattr(settings, attr)
            values = value if isinstance(value, tuple) else (value,) if value else ()
            if any(len(item) < MIN_SECRET_LENGTH for item in values):
                raise ConfigError(f"{name} must be at least {MIN_SECRET_LENGTH} characters in production")
        _validate_production_roles(settings)


def _validate_production_roles(settings: Settings) -> None:
    # The sandbox lets any holder of WEBHOOK_API_TOKEN mark a payment paid: free goods in production.
    if settings.sandbox:
        raise ConfigError("SBP_GATEWAY=sandbox is refused in production (holders of WEBHOOK_API_TOKEN could mark "
                          "payments paid): set SBP_GATEWAY=tbank")
    # Payment callers must not hold the admin key (refunds, assignments, panel changes).
    if set(settings.api_tokens) & set(settings.admin_keys):
        raise ConfigError("ADMIN_API_KEY must differ from every WEBHOOK_API_TOKEN in production")


def _is_telegram_secret(value: str) -> bool:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    return 1 <= len(value) <= 256 and set(value) <= allowed


def read_environment(env_file: Path | None) -> dict[str, str]:
    """The process environment over the optional `.env` file (real variables win)."""
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged

