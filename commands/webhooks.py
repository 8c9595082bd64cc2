"""`flask --app wsgi webhooks sample`: print or send a correctly signed provider webhook for an order."""

from __future__ import annotations

import shlex
from decimal import Decimal
from urllib.parse import urlsplit

import click
import requests
from flask import current_app
from flask.cli import AppGroup

from services.db import transaction, utcnow
from services.errors import GatewayError
from services.orders import find_order
from services.samples import SampleOrder, SampleRequest, sample_names, sample_request

group = AppGroup("webhooks", help="Sample provider webhooks for local testing.")


def _order(order_id: str, amount: str | None, currency: str | None) -> SampleOrder:
    # Closed before anything is sent: an open SQLite transaction holds the write lock.
    with transaction():
        order = find_order(order_id)
    if order is not None:
        return SampleOrder(order.order_id, order.amount, order.currency, order.provider_ref)
    if amount is None or currency is None:
        raise click.UsageError(f"Order {order_id!r} is not in the database: give --amount and --currency.")
    return SampleOrder(order_id, Decimal(amount), currency.upper())


def _target(send: str, sample: SampleRequest) -> str:
    """A bare base URL gets the provider's webhook path appended."""
    return send.rstrip("/") + sample.path if urlsplit(send).path in ("", "/") else send


def _curl(url: str, sample: SampleRequest) -> str:
    headers = " ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in sample.headers.items())
    return f"curl -sS -X POST {shlex.quote(url)} {headers} --data-binary {shlex.quote(sample.body.decode())}"


@group.command("sample")
@click.option("--provider", type=click.Choice(sample_names()), required=True)
@click.option("--order", "order_id", required=True, help="orderId the payment settles.")
@click.option("--amount", help="Amount, when the order is not in this database.")
@click.option("--currency", help="Currency, when the order is not in this database.")
@click.option("--send", metavar="URL", help="POST it to URL (a base URL gets the webhook path appended).")
def sample(provider: str, order_id: str, amount: str | None, currency: str | None, send: str | None) -> None:
    """Print a curl command with a correctly signed "paid" webhook, or send it with --send."""
    settings = current_app.config["SETTINGS"]
    try:
        request = sample_request(provider, _order(order_id, amount, currency), settings, utcnow())
    except GatewayError as error:
        raise click.ClickException(error.message) from None
    url = _target(send or settings.server_url, request)
    if not send:
        click.echo(_curl(url, request))
        return
    response = requests.post(url, data=request.body, headers=request.headers, timeout=settings.http_timeout)
    click.echo(f"{response.status_code} {response.text.strip()[:500]}")
    if not response.ok:
        raise SystemExit(1)
