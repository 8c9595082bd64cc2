"""Concurrent identical requests against a real gunicorn with 2 workers: one payment, one fulfilment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.db import db
from services.models import Order
from tests.conftest import AUTH
from tests.helpers import assert_settled_once

PARALLEL = 20


def in_parallel(call, count: int = PARALLEL) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


@pytest.fixture
def live(app, base_env, tmp_path):
    from tests.support.live import LiveServer

    with LiveServer(base_env, workers=2, log_path=tmp_path / "gunicorn.log") as server:
        yield server


def create_payment(url: str, **extra) -> requests.Response:
    body = {"amount": 100, "orderId": "race-1", "telegramId": 77, "credit": 500, **extra}
    return requests.post(f"{url}/api/payment", json=body, headers=AUTH, timeout=30)


def test_concurrent_identical_creates_make_one_payment(live, app):
    responses = in_parallel(lambda: create_payment(live.url))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (PARALLEL - 1) + [201]
    assert len({r.json()["qrcId"] for r in responses}) == 1
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Order)).scalar_one() == 1


def test_concurrent_duplicate_payments_credit_once(live, app):
    qrc_id = create_payment(live.url).json()["qrcId"]
    responses = in_parallel(lambda: requests.post(f"{live.url}/sandbox/sbp/{qrc_id}/pay", headers=AUTH, timeout=30))
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * (PARALLEL - 1) + ["processed"]
    balance = requests.get(f"{live.url}/api/balance/77", headers=AUTH, timeout=10).json()["balance"]
    assert balance == 500
    assert_settled_once(app)


def test_concurrent_duplicate_tbank_notifications_credit_once(app, base_env, tbank, tmp_path):
    from tests.support.live import LiveServer

    env = {**base_env, "SBP_GATEWAY": "tbank", "TBANK_TERMINAL_KEY": "TinkoffBankTest",
           "TBANK_PASSWORD": "TinkoffBankTest", "TBANK_API_URL": tbank.api_url}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        assert create_payment(live.url).status_code == 201
        payment_id = tbank.payment_by_order("race-1")["PaymentId"]
        body = tbank.notification(payment_id, "CONFIRMED")
        responses = in_parallel(lambda: requests.post(f"{live.url}/webhook/sbp/tbank", json=body, timeout=30))
        assert [r.text for r in responses] == ["OK"] * PARALLEL
        assert requests.get(f"{live.url}/api/balance/77", headers=AUTH, timeout=10).json()["balance"] == 500
        assert requests.get(f"{live.url}/api/status/race-1", headers=AUTH, timeout=10).json()["status"] == "paid"


def test_request_ids_made_by_different_workers_do_not_repeat(live):
    """The ids come from the random module, which every forked worker must reseed."""
    made = in_parallel(lambda: requests.get(f"{live.url}/health", timeout=10).headers["X-Request-ID"], 200)
    assert len(set(made)) == 200
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in made)
