"""Small helpers shared by the tests."""

from __future__ import annotations

from typing import Any

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
