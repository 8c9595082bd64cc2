"""Health endpoints and the database being unreachable."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH
from tests.helpers import assert_error

UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-directory/for/sure/webhook.db",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/test",
}


def test_health_shapes(client, clock):
    assert client.get("/health").get_json() == {"status": "healthy", "timestamp": int(clock.now.timestamp())}
    assert client.get("/api/health").get_json() == {"success": True, "status": "healthy",
                                                    "timestamp": "2026-11-23T10:00:00Z"}


@pytest.fixture(params=sorted(UNREACHABLE))
def down_client(request, make_app):
    return make_app(DATABASE_URL=UNREACHABLE[request.param]).test_client()


def test_health_is_503_when_database_is_down(down_client):
    response = down_client.get("/health")
    assert response.status_code == 503 and response.get_json()["status"] == "unhealthy"
    response = down_client.get("/api/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unhealthy" and response.get_json()["success"] is False


def test_writes_are_503_json_when_database_is_down(down_client):
    response = down_client.post("/api/payment", json={"amount": 1, "orderId": "o-1"}, headers=AUTH)
    assert_error(response, 503, "database_unavailable")
    assert_error(down_client.get("/api/status/o-1", headers=AUTH), 503, "database_unavailable")
    assert_error(down_client.get("/api/balance/42", headers=AUTH), 503, "database_unavailable")

