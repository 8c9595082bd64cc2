"""The only list of payment providers. Everything else (request schemas, the worker CLI, admin replay,
samples, OpenAPI enums, the console) asks here; nothing in the core imports a provider by name."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

from services.errors import NotConfigured
from services.providers.base import Notifier, PaymentProvider, ProviderPlugin

if TYPE_CHECKING:
    from webhook_config import Settings

# Each name is a package services/providers/<name>/ whose __init__.py defines PLUGIN (a ProviderPlugin).
# Packages are imported on first use, so this module is cheap to import from anywhere.
NAMES: tuple[str, ...] = ("sbp", "cryptobot", "telegram", "bmc", "yookassa")
DEFAULT = "sbp"
# The provider whose API messages buyers.
NOTIFIER = "telegram"


@cache
def plugin(name: str) -> ProviderPlugin:
    """The provider's plugin; KeyError for a name not listed above."""
    if name not in NAMES:
        raise KeyError(name)
    return import_module(f"services.providers.{name}").PLUGIN


def plugins() -> list[ProviderPlugin]:
    return [plugin(name) for name in NAMES]


def payment_provider(name: str, settings: "Settings") -> PaymentProvider:
    """The configured provider that creates payments; NotConfigured (503) for an unknown or unconfigured one."""
    if name not in NAMES:
        raise NotConfigured(f"Payment provider {name!r} is not available.")
    return plugin(name).payments(settings)


@cache
def notifier() -> Notifier:
    return import_module(f"services.providers.{NOTIFIER}").NOTIFIER
