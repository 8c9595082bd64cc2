"""The outbox runtime: leases, retries on the schedule, dead letters, shutdown, and the handler registry."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from datetime import timedelta

import pytest

from services import outbox
from services.db import db, transaction
from services.errors import ProviderRejected, ProviderUnavailable
from services.models import OutboxMessage
from services.worker import loop, registry, runtime
from tests.support.worker import attempts, frozen_now, paid_order, run_worker, wired_env
from tests.support.worker import outbox as outbox_rows
from webhook_config import ConfigError

LEASE = timedelta(seconds=60)


@pytest.fixture
def merchant_app(make_app, merchant):
    def build(**env):
        app = make_app(**wired_env(merchant), **env)
        return app, frozen_now(app)
    return build


def enqueue(app, clock, channel: str = "merchant", kind: str = "order.paid", key: str = "k1") -> int:
    with app.app_context(), transaction():
        return outbox.enqueue(channel, kind, key, {"type": kind, "data": {}}, clock.now)


def worker(app, clock, provider: str = "merchant", stop: threading.Event | None = None) -> loop.Worker:
    return loop.Worker(provider, app.config["SETTINGS"], clock, stop or threading.Event(), rng=random.Random(7))


def test_receiver_failing_twice_gets_the_event_again_with_the_same_webhook_id(merchant_app, merchant):
    app, clock = merchant_app(OUTBOX_RETRY_SCHEDULE="5,60,300")
    paid_order(app.test_client())
    merchant.fail_next(2)
    run_worker(app, "merchant")
    clock.advance(seconds=4)
    run_worker(app, "merchant")  # not due yet: the first step is 5 s (plus at most 10 % jitter)
    assert len(merchant.deliveries()) == 1
    clock.advance(seconds=2)
    run_worker(app, "merchant")
    clock.advance(seconds=67)
    run_worker(app, "merchant")
    deliveries = merchant.deliveries()
    assert [d.status for d in deliveries] == [500, 500, 204]
    assert len({d.msg_id for d in deliveries}) == 1 and all(d.valid for d in deliveries)
    assert len({d.body for d in deliveries}) == 1
    assert len(merchant.events()) == 1
    [row] = outbox_rows(app, "merchant")
    assert (row.status, row.attempts, row.lease_until) == ("delivered", 3, None)
    assert [(a.number, a.outcome, a.status_code) for a in attempts(app, row.id)] == [
        (1, "retry", 500), (2, "retry", 500), (3, "delivered", 204)]


def test_dead_after_the_schedule_is_exhausted(merchant_app, merchant):
    app, clock = merchant_app(OUTBOX_RETRY_SCHEDULE="1,1")
    paid_order(app.test_client())
    merchant.fail_next(10)
    for _ in range(4):
        run_worker(app, "merchant")
        clock.advance(seconds=2)
    assert len(merchant.deliveries()) == 3
    [row] = outbox_rows(app, "merchant")
    assert row.status == "dead" and row.attempts == 3
    assert "HTTP 500" in row.last_error
    assert [a.outcome for a in attempts(app, row.id)] == ["retry", "retry", "dead"]


def test_lease_keeps_others_off_until_it_expires(merchant_app):
    app, clock = merchant_app()
    row_id = enqueue(app, clock)
    with app.app_context():
        [job] = outbox.claim("merchant", "a", clock.now, 10, LEASE)
        assert (job.id, job.attempt, job.lease_until) == (row_id, 1, clock.now + LEASE)
        assert outbox.claim("merchant", "b", clock.now + LEASE - timedelta(seconds=1), 10, LEASE) == []
        [again] = outbox.claim("merchant", "b", clock.now + LEASE, 10, LEASE)
        assert (again.id, again.attempt) == (row_id, 2)


def test_a_failure_reported_after_losing_the_lease_does_not_touch_the_new_claim(merchant_app):
    app, clock = merchant_app()
    enqueue(app, clock)
    with app.app_context():
        [stale] = outbox.claim("merchant", "a", clock.now, 10, LEASE)
        [current] = outbox.claim("merchant", "b", clock.now + LEASE, 10, LEASE)

        def fail(job, now):
            raise ProviderUnavailable("down")

        runtime.deliver(stale, fail, "a", (5,), clock, random.Random(1))
    [row] = outbox_rows(app)
    assert (row.lease_owner, row.attempts, row.last_error) == ("b", current.attempt, None)


def test_kind_without_handler_is_dead_with_a_clear_error(merchant_app, merchant):
    app, clock = merchant_app()
    enqueue(app, clock, kind="invoice.weird")
    run_worker(app, "merchant")
    [row] = outbox_rows(app)
    assert row.status == "dead"
    assert row.last_error == "no handler for kind 'invoice.weird' on channel 'merchant'"
    assert merchant.deliveries() == []


def test_channel_without_handlers_keeps_its_rows_pending(merchant_app, monkeypatch, caplog):
    monkeypatch.setitem(registry.CORE_HANDLERS, "panel", {})
    app, clock = merchant_app()
    enqueue(app, clock, channel="panel", kind="panel.sync")
    with caplog.at_level(logging.WARNING, logger="services.worker.loop"):
        run_worker(app, "panel")
    [row] = outbox_rows(app)
    assert (row.status, row.attempts, row.lease_until) == ("pending", 0, None)
    assert "no handler is registered for outbox channel 'panel'" in caplog.text


def test_permanent_rejection_is_dead_at_once(merchant_app):
    app, clock = merchant_app()
    enqueue(app, clock)
    with app.app_context():
        [job] = outbox.claim("merchant", "w", clock.now, 10, LEASE)

        def reject(job, now):
            raise ProviderRejected("refused for good")

        outcome = runtime.deliver(job, reject, "w", (5, 60), clock, random.Random(1))
    assert (outcome.status, outcome.error) == ("dead", "refused for good")
    assert outbox_rows(app)[0].status == "dead"


def test_unexpected_handler_error_is_retried_not_fatal(merchant_app):
    app, clock = merchant_app()
    enqueue(app, clock)
    with app.app_context():
        [job] = outbox.claim("merchant", "w", clock.now, 10, LEASE)
        outcome = runtime.deliver(job, lambda job, now: {}["missing"], "w", (5,), clock, random.Random(1))
    assert outcome.status == "retry" and outcome.error == "KeyError: 'missing'"
    assert clock.now + timedelta(seconds=5) <= outcome.next_attempt_at <= clock.now + timedelta(seconds=5.5)


@pytest.mark.parametrize("retry_after, expected", [(None, 5), (2, 5), (40, 40), (10_000, 300)])
def test_retry_after_is_honoured_when_later_and_capped_by_the_schedule(merchant_app, retry_after, expected):
    now = frozen_now(merchant_app()[0]).now
    at = runtime.next_attempt_at(now, 5, retry_after, (5, 60, 300), random.Random(1))
    assert timedelta(seconds=expected) <= at - now <= timedelta(seconds=max(expected, 5.5))


def test_row_whose_claims_never_finished_is_given_up(merchant_app, merchant):
    app, clock = merchant_app(OUTBOX_RETRY_SCHEDULE="1,1")
    row_id = enqueue(app, clock)
    with app.app_context(), transaction():
        # Three claims whose workers died mid-delivery: leases expired, attempts counted.
        db.session.get(OutboxMessage, row_id).attempts = 3
    run_worker(app, "merchant")
    [row] = outbox_rows(app)
    assert row.status == "dead" and "did not finish" in row.last_error
    assert merchant.deliveries() == []


def test_stop_finishes_the_delivery_in_hand_and_releases_the_rest(merchant_app):
    app, clock = merchant_app()
    for key in ("a", "b", "c"):
        enqueue(app, clock, key=key)
    stop = threading.Event()
    calls = []

    def deliver_then_stop(job, now):
        calls.append(job.id)
        stop.set()
        return 204

    with app.app_context():
        w = worker(app, clock, stop=stop)
        w.duties[0].handlers = {"order.": deliver_then_stop}
        w.run()
    rows = outbox_rows(app)
    assert [r.status for r in rows] == ["delivered", "pending", "pending"] and calls == [rows[0].id]
    assert [(r.attempts, r.lease_owner) for r in rows[1:]] == [(0, None), (0, None)]


def test_no_delivery_starts_that_the_lease_may_not_cover(merchant_app):
    app, clock = merchant_app()
    enqueue(app, clock, key="a")
    enqueue(app, clock, key="b")

    def slow(job, now):
        clock.advance(seconds=55)  # lease 60 s, HTTP timeout 10 s: no room for another call
        return 204

    with app.app_context():
        w = worker(app, clock)
        w.duties[0].handlers = {"order.": slow}
        assert w.run_pass() == 1
    assert [(r.status, r.attempts) for r in outbox_rows(app)] == [("delivered", 1), ("pending", 0)]


def test_idle_worker_sleeps_the_poll_interval_until_stopped(merchant_app):
    app, clock = merchant_app(WORKER_POLL_SECONDS="2.5")
    stop = threading.Event()
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            stop.set()

    with app.app_context():
        loop.Worker("merchant", app.config["SETTINGS"], clock, stop, sleep=sleep).run()
    assert naps == [2.5, 2.5, 2.5]


def test_enqueue_in_a_rolled_back_transaction_leaves_no_row(merchant_app):
    app, clock = merchant_app()
    with app.app_context(), pytest.raises(RuntimeError):
        with transaction():
            outbox.enqueue("merchant", "order.paid", "k", {"type": "order.paid"}, clock.now)
            raise RuntimeError("the state change failed after announcing")
    assert outbox_rows(app) == []


def test_a_lease_not_longer_than_the_http_timeout_is_refused(make_app):
    with pytest.raises(ConfigError, match="OUTBOX_LEASE_SECONDS"):
        make_app(OUTBOX_LEASE_SECONDS="10", HTTP_TIMEOUT_SECONDS="10")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_set_the_stop_flag_and_handlers_are_restored_after(signum):
    before = signal.getsignal(signum)
    stop = threading.Event()
    with loop.stop_on_signals(stop):
        os.kill(os.getpid(), signum)
        assert stop.wait(5)
    assert signal.getsignal(signum) is before
