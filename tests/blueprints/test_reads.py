"""Read-only requests: no ORM session, no write lock, and no cookie session outside the console."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import request
from sqlalchemy import select

from services.db import db
from services.models import Order
from tests.conftest import AUTH
from tests.helpers import create

# Far below the SQLite busy timeout (30 s): a read queued behind the writer would miss it.
ANSWER_WITHIN_SECONDS = 5


def test_status_and_balance_answer_while_a_writer_holds_the_lock(client, app):
    assert create(client, telegramId=42, credit=500).status_code == 201
    with app.app_context():
        writer = db.engine.connect()
        writer.execute(select(Order.id).where(Order.order_id == "order-1").with_for_update())
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                status = pool.submit(client.get, "/api/status/order-1", headers=AUTH)
                balance = pool.submit(client.get, "/api/balance/42", headers=AUTH)
                answers = [status.result(ANSWER_WITHIN_SECONDS), balance.result(ANSWER_WITHIN_SECONDS)]
        finally:
            writer.close()
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].get_json()["status"] == "pending"
    assert answers[1].get_json()["balance"] == 0


def test_a_read_does_not_see_a_write_that_has_not_committed(client, app):
    assert create(client).status_code == 201
    with app.app_context():
        writer = db.engine.connect()
        writer.execute(Order.__table__.update().where(Order.order_id == "order-1").values(status="paid"))
        try:
            assert client.get("/api/status/order-1", headers=AUTH).get_json()["status"] == "pending"
        finally:
            writer.close()
    assert client.get("/api/status/order-1", headers=AUTH).get_json()["status"] == "pending"


@pytest.mark.parametrize("path, opens", [
    ("/api/status/order-1", False),
    ("/webhook/sbp/tbank", False),
    ("/consoles", False),
    ("/console", True),
    ("/console/login", True),
])
def test_only_console_requests_open_a_cookie_session(app, path, opens):
    with app.test_request_context(path):
        session = app.session_interface.open_session(app, request)
    assert (session is not None) is opens


def test_api_requests_ignore_a_console_cookie(client, app):
    assert create(client).status_code == 201
    client.set_cookie("session", "not-a-signed-session")
    response = client.get("/api/status/order-1", headers=AUTH)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers

