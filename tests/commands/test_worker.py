"""`flask worker run`: end to end in-process, and as real processes (concurrent, SIGKILL, SIGTERM)."""

from __future__ import annotations

import signal
from datetime import timedelta

from services.db import utcnow
from tests.conftest import FrozenClock
from tests.support.worker import (PROCESS_TIMEOUT, attempts, outbox, paid_order, run_worker, wait_for_exit, wired_env,
                                  worker_process)

CHAT = 5551234


def test_paid_order_gets_one_message_and_one_merchant_event(make_app, merchant, telegram):
    app = make_app(**wired_env(merchant, telegram))
    app.config["CLOCK"] = FrozenClock(utcnow())
    paid_order(app.test_client(), telegramId=CHAT, credit=10)
    for _ in range(2):
        run_worker(app, "all")
    [message] = telegram.sent_messages(CHAT)
    assert "order-1" in message["text"] and "10 NDN" in message["text"]
    [delivery] = merchant.deliveries()
    assert delivery.accepted and delivery.json["type"] == "order.paid"
    assert delivery.json["data"]["orderId"] == "order-1" and delivery.json["data"]["status"] == "paid"
    assert {(row.channel, row.status) for row in outbox(app)} == {("merchant", "delivered"), ("telegram", "delivered")}


def test_unknown_provider_is_refused(runner):
    result = runner.invoke(args=["worker", "run", "--provider", "paypal", "--once"])
    assert result.exit_code == 2 and "paypal" in result.output


def test_three_worker_processes_deliver_thirty_events_without_duplicates(make_app, base_env, merchant, tmp_path):
    env = {**base_env, **wired_env(merchant), "WORKER_POLL_SECONDS": "0.1"}
    app = make_app(**wired_env(merchant))
    client = app.test_client()
    merchant.delay_seconds = 0.02
    # Started first, so all three poll while the payments come in and race for every row.
    processes = [worker_process(env, "merchant", log_path=tmp_path / "workers.log") for _ in range(3)]
    try:
        for number in range(30):
            paid_order(client, f"order-{number}")
        merchant.wait_for_deliveries(30, timeout=PROCESS_TIMEOUT)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [wait_for_exit(p) for p in processes]
    assert codes == [0, 0, 0], (tmp_path / "workers.log").read_text()
    deliveries = merchant.deliveries()
    assert len(deliveries) == 30 and all(d.accepted for d in deliveries)
    assert len({d.msg_id for d in deliveries}) == 30
    assert sorted(e["data"]["orderId"] for e in merchant.events()) == sorted(f"order-{n}" for n in range(30))
    rows = outbox(app, "merchant")
    assert [r.status for r in rows] == ["delivered"] * 30 and {r.attempts for r in rows} == {1}


def test_worker_killed_mid_delivery_loses_nothing(make_app, base_env, merchant, tmp_path):
    lease = {"OUTBOX_LEASE_SECONDS": "30", "HTTP_TIMEOUT_SECONDS": "20"}
    app = make_app(**wired_env(merchant))
    paid_order(app.test_client())
    merchant.delay_seconds = 20
    process = worker_process({**base_env, **wired_env(merchant), **lease}, "merchant",
                             log_path=tmp_path / "worker.log")
    merchant.wait_for(lambda r: r.path == "/hooks", timeout=PROCESS_TIMEOUT)
    process.send_signal(signal.SIGKILL)
    assert wait_for_exit(process) == -signal.SIGKILL
    merchant.delay_seconds = 0
    [row] = outbox(app)
    assert (row.status, row.attempts) == ("pending", 1) and row.lease_owner and attempts(app, row.id) == []

    app.config["CLOCK"] = FrozenClock(utcnow())
    run_worker(app, "merchant")  # still leased to the dead worker
    assert len(merchant.deliveries()) == 1
    app.config["CLOCK"] = FrozenClock(row.lease_until + timedelta(seconds=1))
    run_worker(app, "merchant")
    [row] = outbox(app)
    assert (row.status, row.attempts) == ("delivered", 2)
    first, second = merchant.deliveries()
    assert first.msg_id == second.msg_id and second.accepted and len(merchant.events()) == 1


def test_sigterm_finishes_the_delivery_in_hand_then_exits(make_app, base_env, merchant, tmp_path):
    app = make_app(**wired_env(merchant))
    client = app.test_client()
    for number in range(3):
        paid_order(client, f"order-{number}")
    merchant.delay_seconds = 1
    process = worker_process({**base_env, **wired_env(merchant)}, "merchant", log_path=tmp_path / "worker.log")
    merchant.wait_for(lambda r: r.path == "/hooks", timeout=PROCESS_TIMEOUT)
    process.send_signal(signal.SIGTERM)
    assert wait_for_exit(process) == 0, (tmp_path / "worker.log").read_text()
    rows = outbox(app, "merchant")
    assert [r.status for r in rows] == ["delivered", "pending", "pending"]
    assert [(r.attempts, r.lease_owner) for r in rows[1:]] == [(0, None), (0, None)]
    assert len(merchant.deliveries()) == 1
