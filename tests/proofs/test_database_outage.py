"""Proof (c): PostgreSQL stopped (crash-style) in the middle of a load: deliveries get prompt 503 JSON
answers, no 2xx goes out without its event stored, and once the database is back the service recovers by
itself and the provider's retries settle every order exactly once. Runs on a private throwaway cluster."""

from __future__ import annotations

import os
import time

import pytest
import requests

from tests.proofs.cluster import PrivatePostgres, unavailable_reason
from tests.proofs.support import (CONCURRENCY, TBANK_SETTINGS, Sender, assert_acknowledged_stored,
                                  assert_settled_exactly_once, duplicated, load_figures, make_payments, migrate,
                                  redeliver, scaled, seed_orders, wait_healthy)
from tests.support.live import LiveServer

pytestmark = pytest.mark.proof

PAYMENTS = scaled(default=200, full=2_500)
WORKERS = 3
# A hung request would end without an answer (the client's 30 s read timeout or gunicorn's 20 s kill);
# this bound also covers waiting in the listen queue behind 63 other connections on a busy machine.
OUTAGE_ANSWER_LIMIT = 20.0


@pytest.fixture
def private_postgres():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the database outage proof: {reason}")
        pytest.skip(reason)
    with PrivatePostgres() as cluster:
        yield cluster


def test_database_outage_answers_503_and_loses_nothing(private_postgres, make_app, base_env, tmp_path, figures):
    env = {**base_env, **TBANK_SETTINGS, "DATABASE_URL": private_postgres.url}
    migrate(env)
    app = make_app(**TBANK_SETTINGS, DATABASE_URL=private_postgres.url)
    payments = make_payments(PAYMENTS, prefix="outage")
    with app.app_context():
        seed_orders(payments)
    deliveries = duplicated(payments, seed=4)
    figures.update(database="postgresql-private", workers=WORKERS, concurrency=CONCURRENCY)

    with LiveServer(env, workers=WORKERS, log_path=tmp_path / "gunicorn.log") as live:
        sender = Sender([live.url]).start(deliveries)
        sender.wait_done(len(deliveries) // 3)
        private_postgres.stop("immediate")
        stopped_after = sender.done()
        outcomes = sender.join()
        health_while_down = requests.get(live.url + "/health", timeout=10)
        started = time.monotonic()
        private_postgres.start()
        figures.update(load_figures(outcomes, sender.seconds, len(payments)), stopped_after=stopped_after,
                       restart_s=round(time.monotonic() - started, 2))
        figures["healthy_after_restart_s"] = round(wait_healthy(live.url, timeout=30), 2)

        with app.app_context():
            assert_acknowledged_stored({o.payment.event_key for o in outcomes if o.acknowledged})
        retries = redeliver([live.url], [o for o in outcomes if not o.acknowledged])
        figures["retried"] = len(retries)

    assert health_while_down.status_code == 503 and health_while_down.json()["status"] == "unhealthy"
    failures = [o for o in outcomes if not o.acknowledged]
    assert failures, "the outage produced no failed delivery: it did not happen mid-load"
    # Every failure is a JSON 503 a provider retries: no 500, no dropped connection, no hang.
    assert {(o.status, o.detail) for o in failures} == {(503, "database_unavailable")}
    assert max(o.seconds for o in failures) < OUTAGE_ANSWER_LIMIT
    assert {o.detail for o in outcomes if o.acknowledged} == {"OK"}
    acknowledged = {o.payment.event_key for o in outcomes + retries if o.acknowledged}
    with app.app_context():
        figures.update(assert_settled_exactly_once(payments, acknowledged))
