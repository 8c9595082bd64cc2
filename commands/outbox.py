"""`flask --app wsgi outbox …`: operate the outbox of notifications, merchant webhooks and panel calls."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from services import admin, audit
from services.db import utcnow

def now():
    """The current time; tests replace the clock through app.config["CLOCK"]."""
    return current_app.config.get("CLOCK", utcnow)()


group = AppGroup("outbox", help="Outbound messages (notifications, merchant webhooks, panel calls).")


@group.command("retry")
@click.option("--dead", is_flag=True, required=True, help="Retry dead-lettered messages (required).")
@click.option("--channel", help="Only this channel (telegram, merchant, panel, …).")
def retry(dead: bool, channel: str | None) -> None:
    """Put dead-lettered messages back in the queue, due now, with a fresh retry schedule."""
    count = admin.retry_dead(channel, audit.cli_actor(), now())
    click.echo(f"Queued {count} dead-lettered message(s) again{f' on channel {channel}' if channel else ''}.")
