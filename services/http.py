"""Outbound HTTP with explicit timeouts and one classification of failures: retryable or permanent.

Providers call their APIs through `request_json`; workers POST to receivers we do not control
(merchant backends, update forwarding) through `post`.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import requests

from services.errors import ProviderRejected, ProviderUnavailable
from services.outbox import DeliveryFailed

logger = logging.getLogger(__name__)


def retry_after_seconds(response: requests.Response, body: Any = None) -> float | None:
    """Seconds to wait from a Retry-After header or a Telegram-style parameters.retry_after."""
    if isinstance(body, dict):
        value = (body.get("parameters") or {}).get("retry_after")
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            return float(value)
    header = response.headers.get("Retry-After", "")
    return float(header) if header.isdigit() else None


def request_json(session: requests.Session, method: str, url: str, *, timeout: float, provider: str,
                 **kwargs: Any) -> tuple[int, Any]:
    """Send a request and return (status, parsed JSON body); network trouble, 5xx and 429 are retryable.

    Numbers with a fraction are parsed as Decimal: a provider's amount never passes through float.
    """
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise ProviderUnavailable(f"{provider} did not answer within {timeout} s") from None
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{provider} is unreachable: {type(exc).__name__}") from None
    with response:
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            body = None
    if response.status_code == 429 or response.status_code >= 500:
        raise ProviderUnavailable(f"{provider} answered HTTP {response.status_code}",
                                  retry_after=retry_after_seconds(response, body))
    if body is None:
        raise ProviderRejected(f"{provider} answered HTTP {response.status_code} without JSON")
    return response.status_code, body


def post(session: requests.Session, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         receiver: str) -> int:
    """POST and return the 2xx status; anything else raises a retryable failure.

    Every non-2xx answer is retried on the schedule, 4xx included: receivers answer 401/403/404
    while their secret or route is being fixed, and the schedule (≈ 27 h) then delivers the event
    instead of losing it. Redirects are not followed: a signed event goes only where it was configured.
    """
    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                                 stream=True)
    except requests.Timeout:
        raise ProviderUnavailable(f"{receiver} did not answer within {timeout} s") from None
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{receiver} is unreachable: {type(exc).__name__}") from None
    with response:
        status = response.status_code
        retry_after = retry_after_seconds(response)
    if 200 <= status < 300:
        return status
    raise DeliveryFailed(f"{receiver} answered HTTP {status}", retryable=True, status_code=status,
                         retry_after=retry_after)
