"""Proof (a): webhook deliveries, half of them duplicates, from 64 concurrent connections against a real
gunicorn: no order is fulfilled twice and no acknowledged delivery is lost."""

from __future__ import annotations

import pytest

from tests.proofs.support import (CONCURRENCY, TBANK_SETTINGS, Sender, assert_acknowledged_stored,
                                  assert_settled_exactly_once, database_kind, duplicated, load_figures,
                                  make_payments, redeliver, scaled, seed_orders)
from tests.support.live import LiveServer

pytestmark = pytest.mark.proof

PAYMENTS = scaled(default=1_000, full=5_000)  # each delivered twice: 2,000 deliveries, 10,000 with PROOF_FULL=1
WORKERS = 4


def test_duplicate_deliveries_under_load_fulfil_each_order_once(make_app, base_env, tmp_path, figures):
    app = make_app(**TBANK_SETTINGS)
    payments = make_payments(PAYMENTS)
    with app.app_context():
        seed_orders(payments)
    figures.update(database=database_kind(base_env["DATABASE_URL"]), workers=WORKERS, concurrency=CONCURRENCY)

    with LiveServer({**base_env, **TBANK_SETTINGS}, workers=WORKERS, log_path=tmp_path / "gunicorn.log") as live:
        sender = Sender([live.url])
        outcomes = sender.run(duplicated(payments))
        figures.update(load_figures(outcomes, sender.seconds, len(payments)))
        with app.app_context():
            assert_acknowledged_stored({o.payment.event_key for o in outcomes if o.acknowledged})
        # Only 503 (SQLite busy beyond its wait) may fail a delivery; a provider retries those.
        retries = redeliver([live.url], [o for o in outcomes if not o.acknowledged])
        figures["retried"] = len(retries)

    assert {o.detail for o in outcomes if o.acknowledged} == {"OK"}
    assert {(o.status, o.detail) for o in outcomes if not o.acknowledged} <= {(503, "database_unavailable")}
    acknowledged = {o.payment.event_key for o in outcomes + retries if o.acknowledged}
    with app.app_context():
        figures.update(assert_settled_exactly_once(payments, acknowledged))
