"""POSTing a body to a receiver we do not control (merchant backends, update forwarding)."""

from __future__ import annotations

import requests

from services.errors import ProviderUnavailable
from services.providers.http import retry_after_seconds
from services.worker.runtime import DeliveryFailed


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
