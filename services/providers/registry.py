"""Payment providers by name; an unknown or unconfigured one is refused with a clear message."""

from __future__ import annotations

from typing import Callable

from services.errors import NotConfigured
from services.providers.base import PaymentProvider
from services.providers.bmc import BmcProvider
from services.providers.cryptobot import CryptoBotProvider
from services.providers.sbp_sandbox import SandboxSbp
from services.providers.tbank import TBankSbp
from services.providers.telegram import TelegramStars
from webhook_config import Settings


def _sbp(settings: Settings) -> PaymentProvider:
    return SandboxSbp(settings) if settings.sandbox else TBankSbp(settings)


PAYMENT_PROVIDERS: dict[str, Callable[[Settings], PaymentProvider]] = {
    "sbp": _sbp,
    "cryptobot": CryptoBotProvider,
    "bmc": BmcProvider,
    "telegram": TelegramStars,
}


def payment_provider(name: str, settings: Settings) -> PaymentProvider:
    try:
        factory = PAYMENT_PROVIDERS[name]
    except KeyError:
        raise NotConfigured(f"Payment provider {name!r} is not available.") from None
    return factory(settings)
