"""Correctly signed sample webhook requests, for trying an installation without the real provider.

Each provider package builds its own (see the `samples` of its plugin); this module holds the shared types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable

from services.errors import NotConfigured
from services.providers import registry
from webhook_config import Settings


@dataclass(frozen=True)
class SampleRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class SampleOrder:
    """What a sample payment settles: the order's id, terms and the provider's id of its payment."""

    order_id: str
    amount: Decimal
    currency: str
    provider_ref: str | None = None


def compact(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def require(value: str, name: str) -> str:
    if not value:
        raise NotConfigured(f"{name} is not set: a sample could not be signed.")
    return value


def builders() -> dict[str, Callable[[SampleOrder, Settings, datetime], SampleRequest]]:
    """Every provider's sample builders, by the name the CLI offers."""
    return {name: build for plugin in registry.plugins() for name, build in plugin.samples.items()}


def sample_names() -> tuple[str, ...]:
    return tuple(builders())


def sample_request(provider: str, order: SampleOrder, settings: Settings, now: datetime) -> SampleRequest:
    """A "paid" delivery for `order`, signed with this installation's secrets exactly as the provider signs."""
    return builders()[provider](order, settings, now)
