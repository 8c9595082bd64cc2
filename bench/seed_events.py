"""Database side of the HTTP benchmark: seed orders and signed webhooks, bulk-load history, count.

Run with the bench environment (DATABASE_URL, CRYPTOBOT_TOKEN, TBANK_TERMINAL_KEY, ...), as
bench/run_wrk.py does:

    python bench/seed_events.py cryptobot --prefix r1 --count 20000 --first-invoice-id 10000000 --out bodies.tsv
    python bench/seed_events.py orders --prefix r1u --count 20000 --first-payment-id 10000000 --out bodies.txt
    python bench/seed_events.py events --count 1000000
    python bench/seed_events.py check --prefix r1u [--paid-out paid.txt]
    python bench/seed_events.py reset            # PostgreSQL only, and only a database named bench*

Rows go in through SQLAlchemy Core with the gateway's own models and column types (so amounts and
timestamps are stored exactly as the app stores them); webhooks are signed with the gateway's own
signers (CryptoBot: one line per order, `orderId<TAB>signature<TAB>body`, for bench/lua/cryptobot.lua;
T-Bank: one body per line).  PostgreSQL bulk loads use COPY.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from services.db import db  # noqa: E402
from services.models import LedgerEntry, Order, OutboxMessage, ProviderEvent  # noqa: E402
from services.providers.cryptobot import protocol as cryptobot  # noqa: E402
from services.providers.sbp import protocol as tbank  # noqa: E402
from webhook_app import create_app  # noqa: E402

AMOUNT = Decimal("100.00")
KOPECKS = 10000
CREDIT = 100
# Payment ids of the bulk-loaded history; the ingest runs use ids far below these.
HISTORY_FIRST_PAYMENT_ID = 9_000_000_000
CHUNK = 10_000


def notification(order_id: str, payment_id: int, settings) -> str:
    """A CONFIRMED notification as T-Bank sends it, Token included, as one JSON line."""
    body: dict[str, Any] = {
        "TerminalKey": settings.tbank_terminal_key, "OrderId": order_id, "Success": True,
        "Status": "CONFIRMED", "PaymentId": payment_id, "ErrorCode": "0", "Amount": KOPECKS,
        "CardId": 31, "Pan": "200000******0016", "ExpDate": "1130",
    }
    body["Token"] = tbank.token(body, settings.tbank_password)
    return json.dumps(body, separators=(",", ":"))


def _order_row(order_id: str, payment_id: int, status: str, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order_id, "provider": "sbp", "status": status, "amount": AMOUNT, "currency": "RUB",
        "description": "benchmark order", "telegram_id": 700_000_000 + payment_id % 100_000, "credit": CREDIT,
        "metadata": {}, "provider_ref": str(payment_id), "provider_data": {"paymentId": str(payment_id)},
        "created_at": now, "updated_at": now, "expires_at": now + timedelta(days=1),
        "paid_at": now if status == "paid" else None,
    }


def _seed(prefix: str, count: int, first_id: int, out: Path,
          order_and_line: Callable[[str, int, datetime], tuple[dict[str, Any], str]]) -> None:
    """Pending orders bench-<prefix>-<i> (provider ids from first_id) inserted in chunks, one request line each."""
    now = datetime.now(timezone.utc)
    lines = []
    with db.engine.begin() as connection:
        for start in range(0, count, CHUNK):
            rows = []
            for index in range(start, min(start + CHUNK, count)):
                row, line = order_and_line(f"bench-{prefix}-{index}", first_id + index, now)
                rows.append(row)
                lines.append(line)
            connection.execute(insert(Order.__table__), rows)
    out.write_text("\n".join(lines) + "\n")


def seed_orders(prefix: str, count: int, first_payment_id: int, out: Path, settings) -> None:
    """Pending SBP orders with PaymentIds from first_payment_id, and their notifications."""
    _seed(prefix, count, first_payment_id, out, lambda order_id, payment_id, now: (
        _order_row(order_id, payment_id, "pending", now), notification(order_id, payment_id, settings)))


CRYPTO_AMOUNT = Decimal("1.5")
CRYPTO_ASSET = "USDT"


def cryptobot_update(order_id: str, invoice_id: int, now: datetime) -> str:
    """An invoice_paid update as Crypto Pay sends it (compact JSON, the invoice paid in its own asset)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    amount = format(CRYPTO_AMOUNT, "f")
    invoice = {
        "invoice_id": invoice_id, "hash": f"IV{invoice_id:010x}", "currency_type": "crypto", "asset": CRYPTO_ASSET,
        "amount": amount, "status": "paid", "paid_asset": CRYPTO_ASSET, "paid_amount": amount,
        "fee_asset": CRYPTO_ASSET, "fee_amount": "0.045", "paid_usd_rate": "1.00", "paid_anonymously": False,
        "allow_comments": True, "allow_anonymous": True, "created_at": stamp, "paid_at": stamp,
        "description": "benchmark order", "payload": order_id,
    }
    update = {"update_id": invoice_id, "update_type": "invoice_paid", "request_date": stamp, "payload": invoice}
    return json.dumps(update, separators=(",", ":"))


def seed_cryptobot(prefix: str, count: int, first_invoice_id: int, out: Path, settings) -> None:
    """Pending CryptoBot orders (invoice ids from first_invoice_id) and their signed updates."""
    def order_and_line(order_id: str, invoice_id: int, now: datetime) -> tuple[dict[str, Any], str]:
        row = {**_order_row(order_id, invoice_id, "pending", now), "provider": "cryptobot", "amount": CRYPTO_AMOUNT,
               "currency": CRYPTO_ASSET, "provider_data": {"invoiceId": invoice_id}}
        body = cryptobot_update(order_id, invoice_id, now)
        return row, f"{order_id}\t{cryptobot.signature(body.encode(), settings.cryptobot_token)}\t{body}"

    _seed(prefix, count, first_invoice_id, out, order_and_line)


def _history(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield _order_row(f"hist-{index}", HISTORY_FIRST_PAYMENT_ID + index, "paid", now)


def _event_row(order_pk: int, order: dict[str, Any], settings) -> dict[str, Any]:
    body = notification(order["order_id"], int(order["provider_ref"]), settings).encode()
    return {
        "provider": "sbp", "event_key": f"{order['provider_ref']}:CONFIRMED", "event_type": "CONFIRMED",
        "status": "processed", "claimed_order_id": order["order_id"], "order_pk": order_pk,
        "amount": AMOUNT, "currency": "RUB", "provider_payment_id": order["provider_ref"],
        "verification": "valid", "details": {"errorCode": "0", "success": True},
        "headers": {"Content-Type": "application/json", "User-Agent": "T-Bank"}, "body": body,
        "remote_addr": "127.0.0.1", "error": None, "processing_attempts": 1,
        "received_at": order["paid_at"], "processed_at": order["paid_at"],
    }


def seed_history(count: int, settings) -> None:
    """`count` paid orders, each with its processed CONFIRMED event: a database that has run for years."""
    now = datetime.now(timezone.utc) - timedelta(days=1)
    orders_table, events_table = Order.__table__, ProviderEvent.__table__
    returning = insert(orders_table).returning(orders_table.c.id, sort_by_parameter_order=True)
    history = _history(count, now)
    with db.engine.begin() as connection:
        while True:
            chunk = _take(history, CHUNK)
            if not chunk:
                break
            ids = connection.execute(returning, chunk).scalars().all()
            events = [_event_row(pk, row, settings) for pk, row in zip(ids, chunk)]
            if connection.dialect.name == "postgresql":
                _copy(connection, events_table, events)
            else:
                connection.execute(insert(events_table), events)
    if db.engine.dialect.name == "postgresql":
        # Planner statistics as autovacuum would have them on a database that grew over time.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))


def _take(iterator: Iterator, size: int) -> list:
    chunk = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) == size:
            break
    return chunk


def _copy(connection, table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL COPY, several times faster than INSERT for the big table; JSON columns go as text."""
    columns = list(rows[0])
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(value) if isinstance(value, dict) else value for value in row.values()])


def check(prefix: str, paid_out: Path | None = None) -> dict[str, Any]:
    """What the ingest runs of `prefix` left behind: orders and events by status, ledger entries and their sum,
    outbox rows; with `paid_out`, the paid orderIds are written there (the bodies a repeat run may resend)."""
    like = f"bench-{prefix}-%"
    with db.engine.connect() as connection:
        orders = dict(connection.execute(
            select(Order.status, func.count()).where(Order.order_id.like(like)).group_by(Order.status)).all())
        events = dict(connection.execute(
            select(ProviderEvent.status, func.count()).where(ProviderEvent.claimed_order_id.like(like))
            .group_by(ProviderEvent.status)).all())
        credited, balance = connection.execute(
            select(func.count(), func.coalesce(func.sum(LedgerEntry.amount), 0)).select_from(LedgerEntry)
            .join(Order, Order.id == LedgerEntry.order_pk).where(Order.order_id.like(like))).one()
        outbox = connection.execute(
            select(func.count()).select_from(OutboxMessage).join(Order, Order.id == OutboxMessage.order_pk)
            .where(Order.order_id.like(like))).scalar_one()
        totals = {table: connection.execute(select(func.count()).select_from(model)).scalar_one()
                  for table, model in (("orders", Order), ("provider_events", ProviderEvent))}
        if paid_out is not None:
            paid = connection.execute(select(Order.order_id).where(Order.order_id.like(like),
                                                                   Order.status == "paid")).scalars()
            paid_out.write_text("".join(f"{order_id}\n" for order_id in paid))
    return {"orders": orders, "events": events, "ledger_entries": credited, "balance": int(balance),
            "outbox_rows": outbox, "totals": totals}


def reset(url: str) -> None:
    """Empty a PostgreSQL benchmark database so the migrations build it afresh."""
    name = make_url(url).database or ""
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to reset database {name!r}: benchmark databases are named bench*")
    with db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    orders = commands.add_parser("orders", help="pending orders plus their signed notifications")
    orders.add_argument("--prefix", required=True)
    orders.add_argument("--count", type=int, required=True)
    orders.add_argument("--first-payment-id", type=int, required=True)
    orders.add_argument("--out", type=Path, required=True)
    crypto = commands.add_parser("cryptobot", help="pending CryptoBot orders plus their signed invoice_paid updates")
    crypto.add_argument("--prefix", required=True)
    crypto.add_argument("--count", type=int, required=True)
    crypto.add_argument("--first-invoice-id", type=int, required=True)
    crypto.add_argument("--out", type=Path, required=True)
    events = commands.add_parser("events", help="bulk-load paid orders and their processed events")
    events.add_argument("--count", type=int, default=1_000_000)
    counts = commands.add_parser("check", help="print what an ingest run left behind, as JSON")
    counts.add_argument("--prefix", required=True)
    counts.add_argument("--paid-out", type=Path, help="write the paid orderIds of the prefix to this file")
    commands.add_parser("reset", help="drop and recreate the public schema (PostgreSQL bench* databases)")
    args = parser.parse_args(argv)

    app = create_app()
    settings = app.config["SETTINGS"]
    with app.app_context():
        started = time.monotonic()
        if args.command == "orders":
            seed_orders(args.prefix, args.count, args.first_payment_id, args.out, settings)
        elif args.command == "cryptobot":
            seed_cryptobot(args.prefix, args.count, args.first_invoice_id, args.out, settings)
        elif args.command == "events":
            seed_history(args.count, settings)
        elif args.command == "check":
            json.dump(check(args.prefix, args.paid_out), sys.stdout)
        elif args.command == "reset" and db.engine.dialect.name == "postgresql":
            reset(settings.database_url)
        if args.command != "check":
            sys.stderr.write(f"{args.command}: {time.monotonic() - started:.1f}s\n")
        db.engine.dispose()


if __name__ == "__main__":
    main()
