"""The interface every payment provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class PaymentDraft:
    """A plain snapshot of the order a provider is asked to create a payment for (no ORM object)."""

    order_id: str
    amount: Decimal
    currency: str
    description: str
    expires_at: datetime
    telegram_id: int | None


@dataclass(frozen=True)
class CreatedPayment:
    """The provider's identity of the payment and the public fields the caller shows the buyer."""

    provider_ref: str
    data: dict[str, Any]


class PaymentProvider(Protocol):
    name: str
    # True when create() is local and quick, so it may run inside the order's insert transaction.
    local: bool

    def default_currency(self) -> str: ...

    def currency_problem(self, currency: str) -> str | None: ...

    def create(self, draft: PaymentDraft) -> CreatedPayment: ...
