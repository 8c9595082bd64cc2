"""Request ids, the one JSON log line and the request metrics every HTTP request gets."""

from __future__ import annotations

import logging
import random
import re
import time

from flask import Flask, Response, g, request

from services import metrics

logger = logging.getLogger("webhook.request")
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """32 random hex digits, like uuid4().hex. A request id ties log lines together and is no secret, so it comes
    from the random module (reseeded in every forked worker) rather than a system call on every request."""
    return f"{random.getrandbits(128):032x}"


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        given = request.environ.get("HTTP_X_REQUEST_ID", "")
        context = g._get_current_object()
        context.request_id = given if REQUEST_ID_FORMAT.match(given) else new_request_id()
        context.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # The request and g each looked up once: every use of Flask's proxies looks up the context again.
        current, context = request._get_current_object(), g._get_current_object()
        request_id = context.get("request_id") or new_request_id()
        response.headers["X-Request-ID"] = request_id
        started = context.get("started")
        seconds = time.perf_counter() - started if started else None
        duration_ms = round(seconds * 1000, 2) if seconds is not None else None
        method, path, status = current.method, current.path, response.status_code
        metrics.record_request(current.url_rule.rule if current.url_rule else None, method, status, seconds)
        logger.info("%s %s %s", method, path, status, extra={
            "event": "request",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "remote_addr": current.remote_addr,
            "request_id": request_id,
        })
        return response
