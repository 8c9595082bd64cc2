"""Request helpers shared by the blueprints: bearer auth, JSON bodies, settings and the clock."""

from __future__ import annotations

import functools
import hmac
import json
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from flask import current_app, g, request
from marshmallow import Schema

from blueprints.input_guard import refuse_nul_in_json
from services.db import utcnow
from services.errors import GatewayError, MalformedPayload, NotConfigured
from webhook_config import Settings


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def now() -> datetime:
    """The current time; tests replace the clock through app.config["CLOCK"]."""
    return current_app.config.get("CLOCK", utcnow)()


def note_order(order_id: str | None) -> None:
    """Remember the orderId this request is about, for the request's log line."""
    if order_id:
        g.order_id = order_id


def matches_any(presented: str, secrets: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured secret (rotation allows several)."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(presented.encode(), secret.encode())
    return matched


def bearer_matches(authorization: str, secrets: tuple[str, ...]) -> bool:
    """`Bearer <token>` (scheme in any case) naming one of `secrets`, compared in constant time."""
    scheme, _, presented = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(presented) and matches_any(presented.strip(), secrets)


def require_bearer(secrets_of: Callable[[Settings], tuple[str, ...]], feature: str):
    """Decorator: 503 when no secret is configured, 401 unless the bearer token matches one."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            secrets = secrets_of(settings())
            if not secrets:
                raise NotConfigured(f"{feature} is not configured on this server.")
            if not bearer_matches(request.headers.get("Authorization", ""), secrets):
                raise Unauthorized("A valid bearer token is required.")
            return view(*args, **kwargs)
        return wrapper
    return decorator


def parse_json(raw: bytes, *, signed: bool = False) -> Any:
    """Parse JSON with exact decimals (never float); MalformedPayload on anything that is not JSON.

    A lone surrogate ("\ud800") is a valid JSON escape but not text: no database or encoder would take it,
    so a caller's body holding one is refused. A provider's `signed` body is kept instead: the event must
    not be lost for what a buyer typed, and the inbox stores such text with U+FFFD in its place.
    """
    try:
        payload = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        if not signed:
            json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError; RecursionError: nesting thousands deep
        raise MalformedPayload("The body is not valid JSON.") from None
    return payload


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number")


def load_body(schema: Schema) -> dict[str, Any]:
    """The request's JSON body validated by `schema`: 415 unless JSON, 400 if malformed, 422 if invalid."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as application/json.")
    payload = parse_json(request.get_data(cache=True))
    if not isinstance(payload, dict):
        raise MalformedPayload("The body must be a JSON object.")
    refuse_nul_in_json(payload)
    return schema.load(payload)
