"""Request ids, the one JSON log line and the request metrics every HTTP request gets."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from services import metrics

logger = logging.getLogger("webhook.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        started = g.get("started")
        seconds = time.perf_counter() - started if started else None
        duration_ms = round(seconds * 1000, 2) if seconds is not None else None
        metrics.record_request(request.url_rule.rule if request.url_rule else None, request.method,
                               response.status_code, seconds)
        logger.info("%s %s %s", request.method, request.path, response.status_code, extra={
            "event": "request",
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "remote_addr": request.remote_addr,
            "request_id": request_id,
        })
        return response
