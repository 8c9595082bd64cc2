"""What every provider webhook endpoint shares: the raw delivery record and the acknowledgement."""

from __future__ import annotations

import functools
from typing import Any

from flask import request

from blueprints.input_guard import UNPREFIXED_HEADERS
from services.notices import Delivery, IngestResult

_KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Request-ID", "X-Forwarded-For")


def delivery(provider: str, *extra_headers: str, verification: str = "valid") -> Delivery:
    """The raw request as stored in the inbox: body bytes, a subset of headers, the client address."""
    current = request._get_current_object()
    return delivery_of(current.environ, current.get_data(cache=True), provider, extra_headers, verification)


def delivery_of(environ: dict[str, Any], body: bytes, provider: str, extra_headers: tuple[str, ...] = (),
                verification: str = "valid") -> Delivery:
    """`delivery` of a WSGI request whose body was read already (blueprints/webhook_reader.py)."""
    # Read from the WSGI environ, as request.headers would, without rebuilding each name twice.
    headers = {name: environ[key] for name, key in _environ_keys((*_KEPT_HEADERS, *extra_headers)) if key in environ}
    # request.remote_addr is the environ's REMOTE_ADDR (behind ProxyFix, the client's address).
    return Delivery(provider=provider, body=body, headers=headers, remote_addr=environ.get("REMOTE_ADDR"),
                    verification=verification)


@functools.lru_cache(maxsize=64)
def _environ_keys(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, environ_key(name)) for name in names)


@functools.lru_cache(maxsize=64)
def environ_key(header: str) -> str:
    """Where the WSGI environ keeps a request header (Content-Type: CONTENT_TYPE, X-Foo: HTTP_X_FOO)."""
    key = header.upper().replace("-", "_")
    return key if key in UNPREFIXED_HEADERS else f"HTTP_{key}"


def acknowledgement(result: IngestResult) -> dict:
    return {"success": True, "eventId": result.event_id, "outcome": result.outcome, "duplicate": result.duplicate}
