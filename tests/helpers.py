"""Small helpers shared by the tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from services.db import db
from services.models import LedgerEntry, Order, ProviderEvent
from tests.conftest import AUTH


def create(client, **body: Any):
    """POST /api/payment with the test token; amount 100 RUB and a fixed orderId unless given."""
    payload = {"amount": 100, "orderId": "order-1", **body}
    return client.post("/api/payment", json=payload, headers=AUTH)


def status(client, order_id: str = "order-1") -> dict[str, Any]:
    response = client.get(f"/api/status/{order_id}", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def balance(client, telegram_id: int) -> int:
    return client.get(f"/api/balance/{telegram_id}", headers=AUTH).get_json()["balance"]


def assert_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the JSON error shape with this status (and code)."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def post_concurrently(url: str, body: bytes, headers: dict[str, str], count: int) -> list:
    """The same signed delivery sent `count` times at once, as a provider's retries may arrive."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: requests.post(url, data=body, headers=headers, timeout=30), range(count)))


def assert_settled_once(app) -> None:
    """What any number of copies of one payment leave behind: one stored event, one ledger entry, the order paid."""
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(LedgerEntry)).scalar_one() == 1
        assert db.session.execute(db.select(db.func.count()).select_from(ProviderEvent)).scalar_one() == 1
        assert db.session.execute(db.select(Order.status)).scalar_one() == "paid"


def assert_processed_once(responses: list) -> None:
    """Every copy was acknowledged, exactly one was processed and the rest were duplicates."""
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * (len(responses) - 1) + ["processed"]


def scrape(client_or_url) -> dict[tuple[str, tuple], float]:
    """/metrics (of a test client or a base URL) parsed into {(sample name, sorted labels): value}."""
    if isinstance(client_or_url, str):
        response = requests.get(client_or_url + "/metrics", timeout=10)
        assert response.status_code == 200
        text = response.text
    else:
        response = client_or_url.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        text = response.get_data(as_text=True)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
