"""`flask --app wsgi orders …`: look up orders and their timelines from a shell."""

from __future__ import annotations

import click
import simplejson
from flask.cli import AppGroup

from services import timeline
from services.errors import GatewayError
from services.money import normalized
from services.schemas import ORDER_STATUSES

group = AppGroup("orders", help="Look up orders and their history.")


@group.command("show")
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
def show(order_id: str, as_json: bool) -> None:
    """Print an order and its timeline: events, fulfilments, messages with their attempts, staff actions."""
    try:
        found = timeline.order_timeline(order_id)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    order, purchase = found["order"], found["purchase"]
    if as_json:
        document = {"orderId": order.order_id, "status": order.status, "amount": normalized(order.amount),
                    "currency": order.currency, "provider": order.provider,
                    "purchaseId": purchase.id if purchase else None,
                    "subscriptionUrl": purchase.subscription_url if purchase else None,
                    "timeline": found["entries"]}
        click.echo(simplejson.dumps(timeline.as_plain(document), use_decimal=True, ensure_ascii=False, indent=2))
        return
    click.echo(f"Order {order.order_id}: {order.status}, {normalized(order.amount)} {order.currency} "
               f"via {order.provider}")
    if purchase:
        click.echo(f"Subscription {purchase.plan} (purchase {purchase.id}) until {_time(purchase.expires_at)}: "
                   f"{purchase.subscription_url or 'no link yet'}")
    for entry in found["entries"]:
        click.echo(f"{_time(entry['at'])}  {entry['kind']:<17} {entry['title']} [{entry['status']}]")
        for key, value in entry["details"].items():
            click.echo(f"{'':22}{key}: {_time(value)}")
        for attempt in entry.get("attempts", []):
            code = f" HTTP {attempt['statusCode']}" if attempt["statusCode"] else ""
            error = f" {attempt['error']}" if attempt["error"] else ""
            click.echo(f"{'':22}attempt {attempt['number']}: {attempt['outcome']}{code}{error}")


@group.command("list")
@click.option("--status", type=click.Choice(ORDER_STATUSES), help="Only orders in this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_orders(status: str | None, limit: int, as_json: bool) -> None:
    """List the newest orders, one per line."""
    for order in timeline.list_orders(status, limit):
        row = {"orderId": order.order_id, "status": order.status, "amount": normalized(order.amount),
               "currency": order.currency, "provider": order.provider, "telegramId": order.telegram_id,
               "createdAt": order.created_at, "paidAt": order.paid_at}
        if as_json:
            click.echo(simplejson.dumps(timeline.as_plain(row), use_decimal=True, ensure_ascii=False))
        else:
            click.echo(f"{order.order_id}\t{order.status}\t{normalized(order.amount)} {order.currency}\t"
                       f"{order.provider}\t"
                       f"{_time(order.created_at)}")


def _time(value):
    return timeline.as_plain(value)
