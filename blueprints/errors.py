"""One JSON error shape for every error path: domain errors, HTTP errors, database outages, bugs."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from services import metrics
from services.db import DATABASE_DOWN
from services.errors import GatewayError, SignatureInvalid

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "too_many_requests", 500: "internal_error", 503: "service_unavailable",
}


def error_response(status: int, message: str, code: str | None = None,
                   fields: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code or _HTTP_CODES.get(status, "error"), "message": message}
    if fields:
        error["fields"] = fields
    response = jsonify({"success": False, "error": error})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="webhook"'
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _domain(exc: GatewayError):
        if isinstance(exc, SignatureInvalid):
            # Counted here, the one place every provider's rejection passes; the blueprint names the provider.
            metrics.record_webhook(request.blueprint or "unknown", metrics.BAD_SIGNATURE)
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(int(retry_after))
        if exc.status >= 500:
            logger.warning("answered %s: %s", exc.status, exc.message)
        return error_response(exc.status, exc.message, exc.code, exc.fields, headers)

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return error_response(422, "The request is not valid.", "validation_error", messages)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(exc.code or 500, exc.description or exc.name, None, None, headers)

    def _database_down(exc: DBAPIError | PoolTimeout):
        orig = getattr(exc, "orig", None)  # a pool timeout has no driver error
        logger.error("database unavailable: %s", type(orig).__name__ if orig else type(exc).__name__)
        return error_response(503, "The database is unavailable; retry later.", "database_unavailable",
                              headers={"Retry-After": "5"})

    for database_error in DATABASE_DOWN:
        app.register_error_handler(database_error, _database_down)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unhandled error")
        return error_response(500, "An unexpected error occurred; it has been logged.", "internal_error")
