"""`flask --app wsgi telegram …`: register the gateway as the bot's webhook (setWebhook) and check on it."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from services.errors import GatewayError, NotConfigured
from services.providers.telegram.client import TelegramClient
from services.providers.telegram.inbound import FORWARDED_UPDATES, PAYMENT_UPDATES
from webhook_config import Settings


def webhook_url(settings: Settings) -> str:
    return f"{settings.server_url}/webhook/telegram"


def allowed_updates(settings: Settings, requested: tuple[str, ...] | None = None) -> list[str]:
    """Payment updates always; plus the requested ones, or by default what a forwarded-to bot reads."""
    extra = requested if requested is not None else FORWARDED_UPDATES if settings.telegram_forward_url else ()
    return list(dict.fromkeys((*PAYMENT_UPDATES, *extra)))


def register_webhook(settings: Settings, url: str | None = None, requested: tuple[str, ...] | None = None,
                     drop_pending_updates: bool = False, client: TelegramClient | None = None) -> tuple[str, list[str]]:
    """setWebhook with our secret token; returns the URL and the update types registered."""
    if not settings.telegram_webhook_secret:
        raise NotConfigured("TELEGRAM_WEBHOOK_SECRET is not set: the webhook would be refused (503).")
    url = url or webhook_url(settings)
    updates = allowed_updates(settings, requested)
    (client or TelegramClient(settings)).set_webhook(url, settings.telegram_webhook_secret, updates,
                                                     drop_pending_updates)
    return url, updates


def webhook_info(settings: Settings) -> dict[str, Any]:
    """getWebhookInfo: where Telegram delivers, how many updates wait, and its last delivery error."""
    return TelegramClient(settings).get_webhook_info()


group = AppGroup("telegram", help="Telegram bot set-up (Stars payments webhook).")


def _update_types(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(item.strip() for item in value.split(",") if item.strip())


@group.command("set-webhook")
@click.option("--url", help="Webhook URL (default: <SERVER_URL>/webhook/telegram); must be https.")
@click.option("--drop-pending-updates", is_flag=True, help="Discard the updates Telegram holds for the bot.")
@click.option("--allowed-updates", metavar="TYPES",
              help="Comma-separated update types beyond message and pre_checkout_query (which are always "
                   "included). Default: none, or common bot updates when TELEGRAM_FORWARD_URL is set.")
def set_webhook(url: str | None, drop_pending_updates: bool, allowed_updates: str | None) -> None:
    """Point the bot's webhook at this gateway, with TELEGRAM_WEBHOOK_SECRET as its secret_token."""
    try:
        registered, updates = register_webhook(current_app.config["SETTINGS"], url,
                                               _update_types(allowed_updates), drop_pending_updates)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Webhook set: {registered}")
    click.echo(f"Update types: {', '.join(updates)}")
    if drop_pending_updates:
        click.echo("Pending updates were dropped.")


@group.command("webhook-info")
def show_webhook_info() -> None:
    """Show where Telegram delivers the bot's updates, how many wait, and the last delivery error."""
    try:
        info = webhook_info(current_app.config["SETTINGS"])
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"URL: {info.get('url') or '(none)'}")
    click.echo(f"Pending updates: {info.get('pending_update_count', 0)}")
    if info.get("allowed_updates"):
        click.echo(f"Update types: {', '.join(info['allowed_updates'])}")
    if info.get("last_error_message"):
        click.echo(f"Last error: {info['last_error_message']} (at unix time {info.get('last_error_date')})")
