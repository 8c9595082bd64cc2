"""Proof (b): gunicorn workers killed with SIGKILL in the middle of a load: every delivery that was
acknowledged is in the database, and the provider's retries of the others settle every order exactly once."""

from __future__ import annotations

import time

import pytest

from tests.proofs.support import (CONCURRENCY, TBANK_SETTINGS, Sender, assert_acknowledged_stored,
                                  assert_settled_exactly_once, child_ages, database_kind, duplicated,
                                  kill_oldest_worker, load_figures, make_payments, redeliver, scaled, seed_orders)
from tests.support.live import LiveServer

pytestmark = pytest.mark.proof

# Enough load to outlast the kills: at ~350 deliveries/s a smaller default ended before the second one.
PAYMENTS = scaled(default=1_500, full=2_500)
WORKERS = 3
KILLS = scaled(default=4, full=6)
# A kill cuts a request only when its worker is inside one, and a repeat is answered in a fraction of a
# millisecond (blueprints/webhook_reader.py): while none has been cut and the load lasts, more kills follow.
MAX_KILLS = KILLS + 8


def test_sigkilled_workers_lose_no_acknowledged_delivery(make_app, base_env, tmp_path, figures):
    app = make_app(**TBANK_SETTINGS)
    payments = make_payments(PAYMENTS, prefix="kill")
    with app.app_context():
        seed_orders(payments)
    deliveries = duplicated(payments, seed=2)
    figures.update(database=database_kind(base_env["DATABASE_URL"]), workers=WORKERS, concurrency=CONCURRENCY)

    with LiveServer({**base_env, **TBANK_SETTINGS}, workers=WORKERS, log_path=tmp_path / "gunicorn.log") as live:
        master = live.process.pid
        sender = Sender([live.url]).start(deliveries)
        killed = []
        for n in range(1, KILLS + 1):
            sender.wait_done(len(deliveries) * n // (KILLS + 1))
            killed.append(kill_oldest_worker(master))
        while not sender.unanswered() and sender.done() < len(deliveries) and len(killed) < MAX_KILLS:
            killed.append(kill_oldest_worker(master, min_age=0.5))
        outcomes = sender.join()
        figures.update(load_figures(outcomes, sender.seconds, len(payments)), kills=len(killed))

        with app.app_context():
            assert_acknowledged_stored({o.payment.event_key for o in outcomes if o.acknowledged})
        retries = redeliver([live.url], [o for o in outcomes if not o.acknowledged])
        figures["retried"] = len(retries)
        survivors = _workers_after_respawn(master, killed)

    assert len(survivors) == WORKERS
    # A killed worker's request gets no HTTP answer at all; nothing else may fail.
    assert {o.status for o in outcomes if not o.acknowledged} <= {None}
    assert figures["no_answer"] >= 1, "no kill cut a request in flight: the proof proved nothing"
    acknowledged = {o.payment.event_key for o in outcomes + retries if o.acknowledged}
    with app.app_context():
        figures.update(assert_settled_exactly_once(payments, acknowledged))


def _workers_after_respawn(master: int, killed: list[int], timeout: float = 30.0) -> list[int]:
    """The master's workers once it has replaced every killed one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = sorted(child_ages(master))
        if len(workers) == WORKERS and not set(workers) & set(killed):
            return workers
        time.sleep(0.1)
    return sorted(child_ages(master))
