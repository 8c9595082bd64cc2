"""Telegram: Stars payments through the bot's webhook, and the Bot API that messages buyers."""

from __future__ import annotations

from services.providers.base import Notifier, ProviderPlugin
from services.providers.telegram import cli, client, inbound, protocol, sample, worker
from webhook_config import Settings


def _messages_buyers(settings: Settings) -> bool:
    return bool(settings.telegram_bot_token)


PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.TelegramStars,
    read_stored=inbound.read_stored,
    handlers={"notify.": worker.BuyerMessages, "forward.": worker.UpdateForwarder},
    samples={"telegram": sample.successful_payment},
    commands=cli.group,
)
NOTIFIER = Notifier(channel=protocol.PROVIDER, enabled=_messages_buyers)
