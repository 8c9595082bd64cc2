"""GET /api/status/<orderId> answered in front of Flask: the hottest read, polled by every merchant's backend.

Flask's request context, routing, hooks and response object cost more than twice the read itself
(docs/performance.md). This WSGI layer answers an authorised status read of a well-formed orderId with what
the Flask route sends — the same body bytes and headers, the same request log line and request metrics —
and hands every other request to Flask untouched. When the read itself fails (no such order, database down),
Flask answers that failure as it answers any other (a JSON error, logged): the failure travels in the environ
to the route, which raises it instead of asking the database a second time.

tests/blueprints/test_status_reader.py holds the two paths together, and fails when a hook is added to every
request that this layer does not know of.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterable

from flask import Flask

from blueprints.front_answer import answer, json_body
from blueprints.http import bearer_matches
from blueprints.input_guard import headers_hold_nul
from blueprints.requests_log import request_id_of
from services.orders import status_of
from services.schemas import ORDER_ID_PATTERN

PREFIX = "/api/status/"
RULE = "/api/status/<order_id>"
# Where a failed read waits for the Flask route (blueprints/api.py: order_status) to raise it.
READ_FAILED = "gateway.status_read_failed"
# The orderIds POST /api/payment accepts; any other path goes to Flask.
_ORDER_ID = re.compile(ORDER_ID_PATTERN)


class StatusReader:
    """WSGI middleware: `app.wsgi_app = StatusReader(app, app.wsgi_app)`, inside any ProxyFix."""

    def __init__(self, app: Flask, inner: Callable):
        self.app, self.inner = app, inner

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        order_id = self._order_id(environ)
        if order_id is None or not self._authorised(environ):
            return self.inner(environ, start_response)
        with self.app.app_context():
            try:
                body = json_body(self.app, status_of(order_id))
            except Exception as exc:
                environ[READ_FAILED] = exc
                return self.inner(environ, start_response)
        return answer(environ, start_response, RULE, started, "application/json", body, request_id_of(environ),
                      order_id)

    def _order_id(self, environ: dict[str, Any]) -> str | None:
        """The orderId of a plain status read this layer may answer; None sends the request to Flask."""
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or not path.startswith(PREFIX) or environ.get("QUERY_STRING") \
                or self.app.debug:
            return None
        order_id = path[len(PREFIX):]
        # Flask's NUL guard (blueprints/input_guard.py) answers a header holding one.
        if not _ORDER_ID.match(order_id) or headers_hold_nul(environ):
            return None
        return order_id

    def _authorised(self, environ: dict[str, Any]) -> bool:
        """The API's bearer check (blueprints/http.py: require_bearer); Flask answers a refusal."""
        secrets = self.app.config["SETTINGS"].api_tokens
        return bool(secrets) and bearer_matches(environ.get("HTTP_AUTHORIZATION", ""), secrets)
