"""What every provider webhook endpoint shares: the raw delivery record and the acknowledgement."""

from __future__ import annotations

from flask import request

from services.notices import Delivery, IngestResult

_KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Request-ID", "X-Forwarded-For")


def delivery(provider: str, *extra_headers: str, verification: str = "valid") -> Delivery:
    """The raw request as stored in the inbox: body bytes, a subset of headers, the client address."""
    headers = {name: request.headers[name] for name in (*_KEPT_HEADERS, *extra_headers) if name in request.headers}
    return Delivery(provider=provider, body=request.get_data(cache=True), headers=headers,
                    remote_addr=request.remote_addr, verification=verification)


def acknowledgement(result: IngestResult) -> dict:
    return {"success": True, "eventId": result.event_id, "outcome": result.outcome, "duplicate": result.duplicate}
