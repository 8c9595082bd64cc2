"""Domain exceptions; one error handler in blueprints/errors.py maps them to HTTP statuses."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the service layer raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidRequest(GatewayError):
    status = 422
    code = "validation_error"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class OrderConflict(GatewayError):
    status = 409
    code = "order_conflict"


class ActionConflict(GatewayError):
    """The action does not fit the current state (already done elsewhere, wrong kind, mismatching money)."""

    status = 409
    code = "conflict"


class SignatureInvalid(GatewayError):
    status = 401
    code = "invalid_signature"


class MalformedPayload(GatewayError):
    status = 400
    code = "malformed_payload"


class NotConfigured(GatewayError):
    status = 503
    code = "not_configured"


class ProviderUnavailable(GatewayError):
    """The provider could not be reached or answered 5xx: worth retrying later."""

    status = 503
    code = "provider_unavailable"

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRejected(GatewayError):
    """The provider refused the request: retrying the same request will not help."""

    status = 502
    code = "provider_error"
