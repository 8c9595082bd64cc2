"""The 200 answered in front of Flask by the readers (status_reader.py, webhook_reader.py), carrying what Flask's
hooks add to every answer: the request id, nosniff, the request log line and metrics (SPEC §5, §7)."""

from __future__ import annotations

import time
from typing import Any, Callable

from flask import Flask

from blueprints.requests_log import record_request

# As Flask's JSON provider renders a response outside debug mode (the readers leave debug mode to Flask).
_COMPACT = {"separators": (",", ":")}


def json_body(app: Flask, value: Any) -> bytes:
    """`value` rendered as the route's returned dict would be."""
    return (app.json.dumps(value, **_COMPACT) + "\n").encode()


def answer(environ: dict[str, Any], start_response: Callable, rule: str, started: float, content_type: str,
           body: bytes, request_id: str, order_id: str | None) -> list[bytes]:
    """Send `body` as 200 with the headers Flask's hooks add, and record the request as they would;
    `request_id` is request_id_of(environ), taken once for the request's every log line."""
    record_request(rule, environ["REQUEST_METHOD"], environ["PATH_INFO"], 200, time.perf_counter() - started,
                   environ.get("REMOTE_ADDR"), request_id, order_id)
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                              ("X-Request-ID", request_id), ("X-Content-Type-Options", "nosniff")])
    return [body]
