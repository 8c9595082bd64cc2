"""The status reader in front of Flask answers exactly as the Flask route would, and hands it everything else."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError
from werkzeug.test import EnvironBuilder, run_wsgi_app

from blueprints.status_reader import RULE, StatusReader
from services import orders
from tests.conftest import API_TOKEN, AUTH
from tests.helpers import assert_error, create
from tests.support.hooks import REPRODUCED, hooks_on, names

PAID_WITH_PLAN = {"orderId": "plan-order.1", "amount": "990.00", "telegramId": 42, "credit": 5,
                  "subscription": {"plan": "vpn-month", "days": 30}, "metadata": {"note": "ключ", "n": 1}}


def reader_of(app) -> StatusReader:
    reader = app.wsgi_app
    assert isinstance(reader, StatusReader)
    return reader


def answer(wsgi, path: str, **headers: str):
    environ = EnvironBuilder(path=path, headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.7"}).get_environ()
    body, status, response_headers = run_wsgi_app(wsgi, environ, buffered=True)
    return status, response_headers, b"".join(body)


def counted(status: str = "200") -> float:
    return REGISTRY.get_sample_value("http_requests_total",
                                     {"route": RULE, "method": "GET", "status": status}) or 0.0


def both_paths(app, path: str, request_log, **headers: str):
    """(reader, flask) answers of the same request, each as (status, headers, body, log line, requests counted)."""
    answers = []
    for wsgi in (reader_of(app), reader_of(app).inner):
        before, lines = counted(), len(request_log())
        status, response_headers, body = answer(wsgi, path, **headers)
        logged = request_log()[lines:]
        assert len(logged) == 1
        answers.append((status, response_headers, body, logged[0], counted() - before))
    return answers


@pytest.mark.parametrize("given_id", [None, "merchant-trace-1"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_the_reader_answers_as_the_flask_route_does(client, app, request_log, given_id, scheme):
    create(client, orderId="plain-1", amount="10.50", telegramId=7)
    qrc_id = create(client, **PAID_WITH_PLAN).get_json()["qrcId"]
    assert client.post(f"/sandbox/sbp/{qrc_id}/pay", headers=AUTH).status_code == 200
    headers = {"Authorization": f"{scheme}  {API_TOKEN} "}
    if given_id:
        headers["X-Request-ID"] = given_id
    for order_id in ("plain-1", PAID_WITH_PLAN["orderId"]):
        (status, headers_read, body, line, count), (flask_status, flask_headers, flask_body, flask_line, flask_count) \
            = both_paths(app, f"/api/status/{order_id}", request_log, **headers)

        assert status == flask_status == "200 OK"
        assert body == flask_body and json.loads(body)["orderId"] == order_id
        shown = json.loads(body)
        assert order_id == "plain-1" or (shown["status"] == "paid" and shown["purchaseId"]
                                         and shown["metadata"] == PAID_WITH_PLAN["metadata"])
        request_ids = {headers_read.pop("X-Request-ID"), flask_headers.pop("X-Request-ID")}
        assert sorted(headers_read.items()) == sorted(flask_headers.items())
        assert len(request_ids) == 1 if given_id else all(len(one) == 32 for one in request_ids)
        assert given_id is None or request_ids == {given_id}
        assert line.pop("request_id") in request_ids and flask_line.pop("request_id") in request_ids
        for varying in ("time", "duration_ms"):
            assert isinstance(line.pop(varying), type(flask_line.pop(varying)))
        assert line == flask_line
        assert line["order_id"] == order_id and line["remote_addr"] == "198.51.100.7"
        assert count == flask_count == 1


def test_a_missing_order_is_flasks_404_after_one_look_up(client, monkeypatch):
    asked = []
    real = orders.fetch_one
    monkeypatch.setattr(orders, "fetch_one", lambda *args: asked.append(args) or real(*args))

    assert_error(client.get("/api/status/no-such-order", headers=AUTH), 404, "not_found")
    assert len(asked) == 1


def test_a_database_failure_is_flasks_503_after_one_attempt(client, monkeypatch):
    asked = []

    def down(*args):
        asked.append(args)
        raise OperationalError("SELECT", (), Exception("connection refused"))

    monkeypatch.setattr(orders, "fetch_one", down)
    response = client.get("/api/status/any-order", headers=AUTH)

    assert response.status_code == 503 and response.headers["Retry-After"]
    assert len(asked) == 1


def test_an_answer_that_cannot_be_rendered_is_flasks_logged_500(client, app, monkeypatch, caplog):
    create(client, orderId="plain-1", amount="10.50", telegramId=7)
    monkeypatch.setattr(orders, "status_view", lambda *args: {"success": True, "unrenderable": object()})

    response = client.get("/api/status/plain-1", headers=AUTH)

    assert_error(response, 500)
    assert any(record.exc_info for record in caplog.records)


@pytest.mark.parametrize("path, headers, expected", [
    ("/api/status/plain-1", {}, 401),
    ("/api/status/plain-1", {"Authorization": "Bearer wrong-token"}, 401),
    ("/api/status/plain-1", {"Authorization": f"Basic {API_TOKEN}"}, 401),
    ("/api/status/plain-1?x=1", {"Authorization": f"Bearer {API_TOKEN}"}, 200),
    ("/api/status/plain-1", {"Authorization": f"Bearer {API_TOKEN}", "X-Note": "a\x00b"}, 400),
    ("/api/status/" + "x" * 65, {"Authorization": f"Bearer {API_TOKEN}"}, 404),
    ("/api/status/plain%201", {"Authorization": f"Bearer {API_TOKEN}"}, 404),
])
def test_what_the_reader_does_not_answer_flask_answers(client, app, monkeypatch, path, headers, expected):
    create(client, orderId="plain-1", amount="10.50", telegramId=7)
    answered = []
    real_inner = reader_of(app).inner
    monkeypatch.setattr(reader_of(app), "inner", lambda environ, start: answered.append(1) or real_inner(environ, start))

    assert client.get(path, headers=headers).status_code == expected
    assert answered == [1]


def test_head_and_other_routes_go_to_flask(client, app, monkeypatch):
    create(client, orderId="plain-1", amount="10.50", telegramId=7)
    answered = []
    real_inner = reader_of(app).inner
    monkeypatch.setattr(reader_of(app), "inner", lambda environ, start: answered.append(environ["PATH_INFO"])
                        or real_inner(environ, start))

    assert client.head("/api/status/plain-1", headers=AUTH).status_code == 200
    assert client.get("/api/balance/7", headers=AUTH).status_code == 200
    assert client.get("/api/status/plain-1", headers=AUTH).status_code == 200
    assert answered == ["/api/status/plain-1", "/api/balance/7"]


def test_without_a_configured_token_the_api_is_flasks_503(make_app):
    client = make_app(WEBHOOK_API_TOKEN="").test_client()
    assert_error(client.get("/api/status/plain-1", headers=AUTH), 503)


def test_behind_a_proxy_the_reader_logs_the_forwarded_client(make_app, request_log):
    app = make_app(PROXY_HOPS="1")
    client = app.test_client()
    create(client, orderId="plain-1", amount="10.50", telegramId=7)
    client.get("/api/status/plain-1", headers={**AUTH, "X-Forwarded-For": "203.0.113.9"},
               environ_base={"REMOTE_ADDR": "127.0.0.1"})

    assert request_log()[-1]["remote_addr"] == "203.0.113.9"


def test_every_hook_a_status_read_passes_through_is_one_the_reader_reproduces(app):
    """A hook added to every request must be added to blueprints/status_reader.py too (or the route left to
    Flask): REPRODUCED is what the reader does in their place."""
    assert hooks_on(app, "api") == REPRODUCED
    assert names(app.teardown_appcontext_funcs) == ["flask_sqlalchemy.extension.SQLAlchemy._teardown_session"]
