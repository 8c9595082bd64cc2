"""Proof (d): two app servers and three merchant workers on one database: duplicate deliveries spread over
both servers settle each order once, and each order.paid event reaches the merchant exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from services.db import db
from services.models import DeliveryAttempt, OutboxMessage
from tests.proofs.support import (CONCURRENCY, TBANK_SETTINGS, Sender, assert_acknowledged_stored,
                                  assert_settled_exactly_once, database_kind, duplicated, load_figures,
                                  make_payments, redeliver, scaled, seed_orders)
from tests.support.live import LiveServer
from tests.support.worker import worker_process, wired_env

pytestmark = pytest.mark.proof

PAYMENTS = scaled(default=150, full=2_500)
SERVERS, WORKERS_PER_SERVER, MERCHANT_WORKERS = 2, 2, 3


def test_servers_and_workers_side_by_side_deliver_each_event_once(make_app, base_env, merchant, tmp_path,
                                                                   figures):
    settings = {**TBANK_SETTINGS, **wired_env(merchant), "WORKER_POLL_SECONDS": "0.2"}
    env = {**base_env, **settings}
    app = make_app(**settings)
    payments = make_payments(PAYMENTS, prefix="scale")
    with app.app_context():
        seed_orders(payments)
    figures.update(database=database_kind(base_env["DATABASE_URL"]), servers=SERVERS,
                   workers_per_server=WORKERS_PER_SERVER, merchant_workers=MERCHANT_WORKERS, concurrency=CONCURRENCY)

    workers = [worker_process(env, "merchant", log_path=tmp_path / f"worker-{n}.log") for n in range(MERCHANT_WORKERS)]
    try:
        with LiveServer(env, WORKERS_PER_SERVER, tmp_path / "gunicorn-a.log") as a, \
                LiveServer(env, WORKERS_PER_SERVER, tmp_path / "gunicorn-b.log") as b:
            started = time.monotonic()
            sender = Sender([a.url, b.url])
            outcomes = sender.run(duplicated(payments, seed=5))
            figures.update(load_figures(outcomes, sender.seconds, len(payments)))
            with app.app_context():
                assert_acknowledged_stored({o.payment.event_key for o in outcomes if o.acknowledged})
            retries = redeliver([a.url, b.url], [o for o in outcomes if not o.acknowledged])
            figures["retried"] = len(retries)
            _wait_until_outbox_delivered(app, len(payments), timeout=120)
            figures["merchant_events_delivered_s"] = round(time.monotonic() - started, 2)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    assert all(worker.returncode == 0 for worker in workers), [w.returncode for w in workers]
    assert {(o.status, o.detail) for o in outcomes if not o.acknowledged} <= {(503, "database_unavailable")}
    acknowledged = {o.payment.event_key for o in outcomes + retries if o.acknowledged}
    with app.app_context():
        figures.update(assert_settled_exactly_once(payments, acknowledged))
        per_worker = Counter(db.session.execute(select(DeliveryAttempt.worker)).scalars())
    figures["deliveries_per_worker"] = sorted(per_worker.values(), reverse=True)
    figures.update(_assert_each_event_delivered_once(merchant, payments))


def _wait_until_outbox_delivered(app, count: int, timeout: float) -> None:
    """Until every merchant row is delivered and none is leased (so no delivery is still in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            done = db.session.execute(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.channel == "merchant", OutboxMessage.status == "delivered",
                OutboxMessage.lease_owner.is_(None))).scalar_one()
        if done >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {done}/{count} merchant events delivered within {timeout}s")


def _assert_each_event_delivered_once(merchant, payments) -> dict[str, object]:
    """One authentic, accepted POST per webhook-id, one webhook-id per order, each an order.paid."""
    deliveries = merchant.deliveries()
    assert all(d.accepted for d in deliveries), Counter((d.status, d.reason) for d in deliveries)
    per_id = Counter(d.msg_id for d in deliveries)
    duplicates = {msg_id: n for msg_id, n in per_id.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} events delivered more than once, e.g. {list(duplicates.items())[:5]}"
    per_order = Counter(d.json["data"]["orderId"] for d in deliveries)
    assert per_order == {p.order_id: 1 for p in payments}
    assert {d.json["type"] for d in deliveries} == {"order.paid"}
    return {"merchant_deliveries": len(deliveries), "merchant_duplicate_deliveries": len(duplicates)}
