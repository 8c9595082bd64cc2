"""Deliveries per second of one merchant worker to a loopback receiver answering 204.

    python bench/worker_throughput.py                      # SQLite in a temporary directory
    python bench/worker_throughput.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench_worker
    TEST_DATABASE_URL=postgresql+psycopg://… python bench/worker_throughput.py

N merchant outbox rows are queued, then one worker (`--provider merchant --once`, the same
code the CLI runs) delivers them through the real claim → sign → POST → record path.
On PostgreSQL the schema is migrated if needed and only the rows this run queued are removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import delete, func, insert, select  # noqa: E402

from services.db import db, transaction  # noqa: E402
from services.models import DeliveryAttempt, OutboxMessage  # noqa: E402
from services.worker.loop import Worker  # noqa: E402
from webhook_app import create_app  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver(BaseHTTPRequestHandler):
    """Reads the body and answers 204, like a merchant backend that only queues the event."""

    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with Receiver.lock:
            Receiver.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


def queue(count: int, tag: str) -> None:
    now = datetime.now(timezone.utc)
    rows = [{"channel": "merchant", "kind": "order.paid", "dedupe_key": f"{tag}:{n}", "status": "pending",
             "payload": {"type": "order.paid", "timestamp": int(now.timestamp()),
                         "data": {"orderId": f"{tag}-{n}", "status": "paid", "amount": 100, "currency": "RUB"}},
             "attempts": 0, "next_attempt_at": now, "created_at": now} for n in range(count)]
    with transaction():
        db.session.execute(insert(OutboxMessage), rows)


def cleanup(tag: str) -> None:
    with transaction():
        ids = select(OutboxMessage.id).where(OutboxMessage.dedupe_key.like(f"{tag}:%")).scalar_subquery()
        db.session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.outbox_pk.in_(ids)))
        db.session.execute(delete(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"{tag}:%")))


def measure(database_url: str, count: int) -> float:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = create_app({"DATABASE_URL": database_url, "APP_ENV": "testing", "LOG_LEVEL": "warning",
                      "MERCHANT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hooks",
                      "MERCHANT_WEBHOOK_SECRET": SECRET})
    tag = f"bench-worker-{os.getpid()}-{int(time.time())}"
    with app.app_context():
        upgrade()
        queue(count, tag)
        worker = Worker("merchant", app.config["SETTINGS"], lambda: datetime.now(timezone.utc), threading.Event())
        started = time.perf_counter()
        worker.run(once=True)
        elapsed = time.perf_counter() - started
        with transaction():
            delivered = db.session.execute(select(func.count()).where(
                OutboxMessage.dedupe_key.like(f"{tag}:%"), OutboxMessage.status == "delivered")).scalar_one()
        cleanup(tag)
    server.shutdown()
    if delivered != count:
        raise SystemExit(f"only {delivered} of {count} messages were delivered")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"),
                        help="PostgreSQL URL (default: TEST_DATABASE_URL); SQLite always runs too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("SQLite", f"sqlite:///{tmp}/bench.db")]
        if args.database_url:
            targets.append(("PostgreSQL", args.database_url))
        for name, url in targets:
            rate = measure(url, args.count)
            sys.stdout.write(f"{name}: {args.count} merchant webhooks delivered by one worker, {rate:.0f} per second\n")


if __name__ == "__main__":
    main()
