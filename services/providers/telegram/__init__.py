"""Telegram: Stars payments through the bot's webhook, and the Bot API that messages buyers."""

from __future__ import annotations

from services import renewals
from services.openapi import ACKNOWLEDGEMENT, webhook
from services.providers.base import STARS_PRICE, Notifier, ProviderPlugin
from services.providers.telegram import cli, client, inbound, protocol, sample, worker
from webhook_config import Settings

# The webhook answers with an acknowledgement, {"ok": true}, or a Bot API call riding on the response.
REPLY = {"oneOf": [
    ACKNOWLEDGEMENT,
    {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean", "enum": [True]}},
     "additionalProperties": False},
    {"type": "object", "required": ["method", "pre_checkout_query_id", "ok"], "properties": {
        "method": {"type": "string", "enum": ["answerPreCheckoutQuery"]},
        "pre_checkout_query_id": {"type": "string"}, "ok": {"type": "boolean"},
        "error_message": {"type": "string"}}},
]}


def _messages_buyers(settings: Settings) -> bool:
    return bool(settings.telegram_bot_token)


PLUGIN = ProviderPlugin(
    name=protocol.PROVIDER,
    payments=client.TelegramStars,
    read_stored=inbound.read_stored,
    handlers={"notify.": worker.BuyerMessages, "forward.": worker.UpdateForwarder,
              "renewal.": renewals.QueuedCancellation},
    samples={"telegram": sample.successful_payment},
    commands=cli.group,
    catalog_price=STARS_PRICE,
    renewal_days=protocol.SUBSCRIPTION_PERIOD_SECONDS // 86400,
    cancel_renewal=client.cancel_renewal,
    operations={("POST", "/webhook/telegram"): webhook(
        "Telegram Bot API update", "X-Telegram-Bot-Api-Secret-Token",
        "The secret_token given to setWebhook (TELEGRAM_WEBHOOK_SECRET).", REPLY)},
    refund=inbound.refund,
)
NOTIFIER = Notifier(channel=protocol.PROVIDER, enabled=_messages_buyers)
