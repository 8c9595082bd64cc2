"""The yookassa worker: a lost notification costs minutes, not money. Overdue pending payments and pending
refunds are fetched and settled under the notification's own event keys, once."""

from __future__ import annotations

import pytest

from services.db import db, transaction
from services.models import LedgerEntry
from tests.helpers import balance, status
from tests.support.admin import ADMIN, ADMIN_KEY
from tests.support.worker import frozen_now, run_worker
from tests.support.yookassa import create_payment, events, gets, notify, yookassa_env

PAST_THRESHOLD = 61  # RECONCILE_AFTER_SECONDS is 60


@pytest.fixture
def app(make_app, yookassa):
    app = make_app(**yookassa_env(yookassa), ADMIN_API_KEY=ADMIN_KEY)
    frozen_now(app)
    return app


@pytest.fixture
def payment_id(client) -> str:
    return create_payment(client).get_json()["paymentId"]


def later(app, seconds: float = PAST_THRESHOLD) -> None:
    app.config["CLOCK"].advance(seconds=seconds)


def ledger_count(app) -> int:
    with app.app_context(), transaction():
        return db.session.execute(db.select(db.func.count()).select_from(LedgerEntry)).scalar_one()


def test_lost_notification_is_settled_once_by_reconciliation(app, client, yookassa, payment_id):
    yookassa.succeed(payment_id)
    run_worker(app, "yookassa")  # too young: the notification may still come
    assert status(client)["status"] == "pending" and gets(yookassa) == []
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "paid" and balance(client, 42) == 500
    [event] = events(app)
    assert (event.event_key, event.status) == (f"payment:{payment_id}:succeeded", "processed")
    assert event.verification.startswith("reconciled") and event.remote_addr is None
    later(app, 61)
    run_worker(app, "yookassa")  # paid orders are not looked up again
    assert len(gets(yookassa)) == 1
    late = notify(client, yookassa, "payment.succeeded", payment_id).get_json()
    assert (late["outcome"], late["eventId"]) == ("duplicate", event.id)
    assert ledger_count(app) == 1


def test_canceled_payment_is_cancelled_by_reconciliation(app, client, yookassa, payment_id):
    yookassa.cancel(payment_id, reason="expired_on_confirmation")
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "cancelled"
    assert events(app)[0].details["cancellationReason"] == "expired_on_confirmation"


def test_pending_payment_is_left_alone(app, client, yookassa, payment_id):
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "pending" and events(app) == [] and len(gets(yookassa)) == 1


def test_api_down_pauses_reconciliation_until_it_is_back(app, client, yookassa, payment_id):
    create_payment(client, orderId="order-2")
    yookassa.succeed(payment_id)
    later(app)
    yookassa.down()
    run_worker(app, "yookassa")
    assert status(client)["status"] == "pending" and events(app) == []
    yookassa.up()
    later(app, 61)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "paid"


def test_api_refusing_one_lookup_does_not_stop_the_others(app, client, yookassa, payment_id):
    second = create_payment(client, orderId="order-2", telegramId=43).get_json()["paymentId"]
    yookassa.succeed(payment_id)
    yookassa.succeed(second)
    yookassa.error_next(404, path=f"/payments/{payment_id}")
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "pending" and status(client, "order-2")["status"] == "paid"


def test_without_credentials_the_worker_asks_nothing(make_app, yookassa):
    app = make_app()
    frozen_now(app)
    run_worker(app, "yookassa")
    assert yookassa.requests == []


def paid(app, client, yookassa, payment_id: str) -> None:
    yookassa.succeed(payment_id)
    assert notify(client, yookassa, "payment.succeeded", payment_id).get_json()["outcome"] == "processed"


def test_pending_refund_is_settled_by_reconciliation(app, client, yookassa, payment_id):
    paid(app, client, yookassa, payment_id)
    yookassa.refund_status = "pending"
    refund = client.post("/admin/orders/order-1/refund", headers=ADMIN).get_json()
    assert refund["refundStatus"] == "pending" and refund["status"] == "paid"
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "paid"  # still pending at YooKassa
    yookassa.set_refund_status(refund["refundId"], "succeeded")
    later(app, 61)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "refunded" and balance(client, 42) == 0
    assert events(app)[-1].event_key == f"refund:{refund['refundId']}:succeeded"
    looked_up = len(gets(yookassa))
    later(app, 61)
    run_worker(app, "yookassa")
    assert len(gets(yookassa)) == looked_up


def test_canceled_refund_is_looked_up_no_more(app, client, yookassa, payment_id):
    paid(app, client, yookassa, payment_id)
    yookassa.refund_status = "pending"
    refund_id = client.post("/admin/orders/order-1/refund", headers=ADMIN).get_json()["refundId"]
    yookassa.set_refund_status(refund_id, "canceled")
    later(app)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "paid" and events(app)[-1].event_key == f"refund:{refund_id}:canceled"
    looked_up = len(gets(yookassa))
    later(app, 61)
    run_worker(app, "yookassa")
    assert len(gets(yookassa)) == looked_up


# --- payments that succeed after their order's deadline ----------------------------------------------------

ORDER_TTL = 900  # ORDER_TTL_SECONDS' default
TURN = 60  # RECONCILE_INTERVAL_SECONDS' default


def expire(app, client) -> None:
    """Past the order's deadline: the worker finds the payment still pending and expires the order."""
    later(app, ORDER_TTL + 1)
    run_worker(app, "yookassa")
    assert status(client)["status"] == "expired"


def turns(app, count: int) -> None:
    for _ in range(count):
        later(app, TURN)
        run_worker(app, "yookassa")


def payment_lookups(yookassa, payment_id: str) -> int:
    return sum(1 for r in gets(yookassa) if r.path.endswith(f"/payments/{payment_id}"))


def test_a_payment_that_succeeds_after_its_order_expired_is_found_though_its_notification_was_lost(
        app, client, yookassa, payment_id):
    expire(app, client)
    yookassa.succeed(payment_id)  # the buyer paid on YooKassa's page after our deadline; nobody tells us
    turns(app, 5)
    assert status(client)["status"] == "paid" and balance(client, 42) == 500
    [*_, event] = events(app)
    assert (event.event_key, event.status) == (f"payment:{payment_id}:succeeded", "processed")
    assert event.verification.startswith("reconciled")


def test_an_expired_order_is_asked_about_a_few_times_in_a_day_not_on_every_turn(app, client, yookassa, payment_id):
    expire(app, client)
    before = payment_lookups(yookassa, payment_id)
    turns(app, 24 * 60 + 2)
    # Six checkpoints after the deadline (5 min … 24 h), each seen by one or two turns.
    assert 6 <= payment_lookups(yookassa, payment_id) - before <= 12
    assert status(client)["status"] == "expired" and balance(client, 42) == 0
    asked = payment_lookups(yookassa, payment_id)
    turns(app, 60)
    assert payment_lookups(yookassa, payment_id) == asked  # a day after its deadline it is left alone


def test_an_expired_order_whose_payment_yookassa_canceled_is_asked_about_no_more(app, client, yookassa, payment_id):
    expire(app, client)
    yookassa.cancel(payment_id, reason="expired_on_confirmation")
    turns(app, 5)
    assert events(app)[-1].event_key == f"payment:{payment_id}:canceled"
    asked = payment_lookups(yookassa, payment_id)
    turns(app, 3 * 60)
    assert payment_lookups(yookassa, payment_id) == asked
    assert status(client)["status"] == "expired"
