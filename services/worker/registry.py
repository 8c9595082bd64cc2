"""Outbox handlers by channel and kind prefix: the core's channels here, each provider's from its plugin."""

from __future__ import annotations

from typing import Callable

from services import merchant, outbox
from services.outbox import Handler
from services.panels import sync
from services.providers import registry
from webhook_config import Settings

HandlerFactory = Callable[[Settings], Handler]

# The longest matching prefix wins. A channel with no entry keeps its rows pending (and its worker
# says so once), so messages queued before a handler exists are delivered once it does.
CORE_HANDLERS: dict[str, dict[str, HandlerFactory]] = {
    outbox.MERCHANT: {"order.": merchant.MerchantWebhooks},
    outbox.PANEL: {"panel.": sync.PanelSync},
}


def handler_factories(channel: str) -> dict[str, HandlerFactory]:
    if channel in CORE_HANDLERS:
        return CORE_HANDLERS[channel]
    return registry.plugin(channel).handlers if channel in registry.NAMES else {}


def build_handlers(channel: str, settings: Settings) -> dict[str, Handler]:
    """The channel's handlers by kind prefix, built once per worker."""
    return {prefix: factory(settings) for prefix, factory in handler_factories(channel).items()}


def handler_for(handlers: dict[str, Handler], kind: str) -> Handler | None:
    """The handler whose prefix is the longest one `kind` starts with, or None."""
    matches = [prefix for prefix in handlers if kind.startswith(prefix)]
    return handlers[max(matches, key=len)] if matches else None
