"""Small helpers shared by the tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

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


def assert_processed_once(responses: list) -> None:
    """Every copy was acknowledged, exactly one was processed and the rest were duplicates."""
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * (len(responses) - 1) + ["processed"]
