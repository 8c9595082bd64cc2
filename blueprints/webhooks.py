"""What every provider webhook endpoint shares: the raw delivery record and the acknowledgement."""

from __future__ import annotations

import functools

from flask import request

from blueprints.input_guard import UNPREFIXED_HEADERS
from services.notices import Delivery, IngestResult

_KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Request-ID", "X-Forwarded-For")


def delivery(provider: str, *extra_headers: str, verification: str = "valid") -> Delivery:
    """The raw request as stored in the inbox: body bytes, a subset of headers, the client address."""
    current = request._get_current_object()
    environ = current.environ
    # Read from the WSGI environ, as request.headers would, without rebuilding each name twice.
    headers = {name: environ[key] for name, key in _environ_keys((*_KEPT_HEADERS, *extra_headers)) if key in environ}
    return Delivery(provider=provider, body=current.get_data(cache=True), headers=headers,
                    remote_addr=current.remote_addr, verification=verification)


@functools.lru_cache(maxsize=64)
def _environ_keys(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    keys = [name.upper().replace("-", "_") for name in names]
    return tuple((name, key if key in UNPREFIXED_HEADERS else f"HTTP_{key}") for name, key in zip(names, keys))


def acknowledgement(result: IngestResult) -> dict:
    return {"success": True, "eventId": result.event_id, "outcome": result.outcome, "duplicate": result.duplicate}
