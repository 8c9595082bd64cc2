"""Outbox handlers by channel and kind prefix, listed explicitly so every delivery path is visible here."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from services.worker.runtime import Handler
from webhook_config import Settings

# channel → {kind prefix → "module:factory"}; a factory takes Settings and returns a Handler.
# The longest matching prefix wins. A channel with no entry keeps its rows pending (and its
# worker says so once), so messages queued before a handler exists are delivered once it does.
HANDLERS: dict[str, dict[str, str]] = {
    "merchant": {"order.": "services.worker.merchant:MerchantWebhooks"},
    "telegram": {
        "notify.": "services.worker.telegram:BuyerMessages",
        "forward.": "services.worker.telegram:UpdateForwarder",
    },
    "panel": {"panel.": "services.panel:PanelSync"},
}

HandlerFactory = Callable[[Settings], Handler]


def build_handlers(channel: str, settings: Settings) -> dict[str, Handler]:
    """The channel's handlers by kind prefix, built once per worker."""
    built: dict[str, Handler] = {}
    for prefix, target in HANDLERS.get(channel, {}).items():
        module, _, name = target.partition(":")
        factory: HandlerFactory = getattr(import_module(module), name)
        built[prefix] = factory(settings)
    return built


def handler_for(handlers: dict[str, Handler], kind: str) -> Handler | None:
    """The handler whose prefix is the longest one `kind` starts with, or None."""
    matches = [prefix for prefix in handlers if kind.startswith(prefix)]
    return handlers[max(matches, key=len)] if matches else None
