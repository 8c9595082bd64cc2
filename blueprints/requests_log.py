"""Request ids, the one JSON log line and the request metrics every HTTP request gets."""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

from flask import Flask, Response, g, request

from services import metrics

logger = logging.getLogger("webhook.request")
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """32 random hex digits, like uuid4().hex. A request id ties log lines together and is no secret, so it comes
    from the random module (reseeded in every forked worker) rather than a system call on every request."""
    return f"{random.getrandbits(128):032x}"


# Where a layer in front of Flask that has begun the request's work leaves its id, so that Flask, answering the
# request after all, keeps the id that work's log lines carry.
REQUEST_ID_KEY = "gateway.request_id"


def request_id_of(environ: dict[str, Any]) -> str:
    """The request's id: the one given to it already, else the caller's X-Request-ID when it is a plain token,
    else a new one."""
    given = environ.get(REQUEST_ID_KEY)
    if given is not None:
        return given
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if REQUEST_ID_FORMAT.match(given) else new_request_id()


def record_request(rule: str | None, method: str, path: str, status: int, seconds: float | None,
                   remote_addr: str | None, request_id: str, order_id: str | None = None) -> None:
    """The request's metrics and its one log line (SPEC §7)."""
    metrics.record_request(rule, method, status, seconds)
    extra = {
        "event": "request",
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 2) if seconds is not None else None,
        "remote_addr": remote_addr,
        "request_id": request_id,
    }
    if order_id is not None:
        extra["order_id"] = order_id
    logger.info("%s %s %s", method, path, status, extra=extra)


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        context = g._get_current_object()
        context.request_id = request_id_of(request.environ)
        context.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # The request and g each looked up once: every use of Flask's proxies looks up the context again.
        current, context = request._get_current_object(), g._get_current_object()
        request_id = context.get("request_id") or new_request_id()
        response.headers["X-Request-ID"] = request_id
        started = context.get("started")
        seconds = time.perf_counter() - started if started else None
        # The orderId, when a view noted one, is added by the log filter (services/logs.py) from g.
        record_request(current.url_rule.rule if current.url_rule else None, current.method, current.path,
                       response.status_code, seconds, current.remote_addr, request_id)
        return response
