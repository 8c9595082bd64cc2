"""Schemathesis against the console's forms: whatever a form or a console address carries, never a 500.

The console is HTML, so the public OpenAPI document leaves it out; this module describes the forms in a
small document of its own, with what was once found (NUL, CR/LF) pinned as its examples. Each call carries
a live session and a valid CSRF token, so the fuzzed values get past the CSRF check and reach the login,
the search, the order page and the assignment.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.support.admin import ADMIN_KEY, PASSWORD, cheap_hashing, staff  # noqa: F401

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"text/html": {"schema": {"type": "string"}}}


def _form(properties: dict, required: list[str], example: dict) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"example": example, "schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _answers(*statuses: int) -> dict:
    return {str(status): {"description": "The page, or the form again with the reason.", "content": HTML}
            for status in statuses}


CONSOLE_FORMS = {
    "openapi": "3.0.3",
    "info": {"title": "Support console forms", "version": "1"},
    "paths": {
        "/console/login": {"post": {
            "requestBody": _form({"email": {"type": "string"}, "password": {"type": "string"},
                                  "next": {"type": "string"}}, ["email", "password"],
                                 {"email": "admin@example.test\x00", "password": "p", "next": "/console/\r\nX: 1"}),
            "responses": _answers(303, 400, 401)}},
        "/console/": {"get": {
            "parameters": [{"in": "query", "name": "q", "required": False, "schema": {"type": "string"},
                            "example": "order\x00"}],
            "responses": _answers(200, 302, 400)}},
        "/console/orders/{order_id}": {"get": {
            "parameters": [{"in": "path", "name": "order_id", "required": True, "schema": {"type": "string"},
                            "example": "order\x00"}],
            "responses": _answers(200, 400, 404)}},
        "/console/events/{event_id}/assign": {"post": {
            "parameters": [{"in": "path", "name": "event_id", "required": True, "schema": {"type": "integer"}}],
            "requestBody": _form({"order_id": {"type": "string"}, "force": {"type": "string"},
                                  "next": {"type": "string"}}, ["order_id"],
                                 {"order_id": "order\x00", "force": "yes", "next": "/console/\nx"}),
            "responses": _answers(303, 400, 404)}},
    },
}


class CurrentApp:
    """The WSGI app of the running test (checks re-send requests too)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


CURRENT = CurrentApp()
schema = schemathesis.openapi.from_dict(CONSOLE_FORMS)
schema.app = CURRENT


@pytest.fixture
def session(make_app, cheap_hashing):  # noqa: F811
    """A logged-in admin's session cookie and a CSRF token of that session."""
    app = make_app(ADMIN_API_KEY=ADMIN_KEY)
    staff(app)
    client = app.test_client()
    token = _TOKEN.search(client.get("/console/login").get_data(as_text=True)).group(1)
    client.post("/console/login", data={"email": "admin@example.test", "password": PASSWORD, "csrf_token": token})
    # The page first: rendering it puts the CSRF secret into the session, so the cookie is read after.
    token = _TOKEN.search(client.get("/console/").get_data(as_text=True)).group(1)
    CURRENT.app = app
    yield client.get_cookie("session").value, token
    CURRENT.app = None


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_console_forms_never_answer_500(case, session):
    cookie, token = session
    if isinstance(case.body, dict):
        case.body["csrf_token"] = token
    case.call_and_validate(cookies={"session": cookie}, checks=[not_a_server_error])
