"""What every payment provider package implements, and how it tells the registry what it has."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from click import Group

    from services.models import ProviderEvent
    from services.notices import IngestResult, Notice
    from services.openapi import Operation
    from services.outbox import Handler
    from services.samples import SampleOrder, SampleRequest
    from webhook_config import Settings


@dataclass(frozen=True)
class PaymentDraft:
    """A plain snapshot of the order a provider is asked to create a payment for (no ORM object)."""

    order_id: str
    amount: Decimal
    currency: str
    description: str
    expires_at: datetime
    telegram_id: int | None
    # A subscription the provider is to charge again every period by itself.
    recurring: bool = False
    # One of the plugin's payment_methods, when the caller chose how the buyer pays.
    payment_method: str | None = None


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


@dataclass(frozen=True)
class RefundDraft:
    """A paid order to refund in full, and the provider's payment that paid it (from its stored event)."""

    order_id: str
    amount: Decimal
    currency: str
    provider_ref: str | None
    payment_id: str
    payment_details: dict[str, Any]
    telegram_id: int | None


@dataclass(frozen=True)
class RefundOutcome:
    """What the provider said about the refund, and what ingesting its answer did (None: nothing yet)."""

    refund_id: str
    status: str
    result: IngestResult | None = None


# Refunds a paid order through the provider's API; a confirmed refund goes through events.ingest.
Refunder = Callable[[RefundDraft, "Settings", datetime], RefundOutcome]


# A worker's periodic task (reconciliation): runs with the settings and the time, returns how much it settled.
PeriodicTask = Callable[["Settings", datetime], int]

# How a product of the Mini App catalogue is priced in a provider (CATALOG_FILE's `prices.<name>`):
# a decimal string in roubles, a whole number of Stars, or a table of amount and currency.
RUB_PRICE, STARS_PRICE, AMOUNT_AND_CURRENCY_PRICE = "rub", "stars", "amount_and_currency"


@dataclass(frozen=True)
class Notifier:
    """The provider that messages buyers: its outbox channel, and whether it is configured."""

    channel: str
    enabled: Callable[[Settings], bool]


@dataclass(frozen=True)
class ProviderPlugin:
    """Everything the core may ask of one provider, declared in its package's __init__.py.

    payments: builds the PaymentProvider that creates payments (NotConfigured when it cannot).
    read_stored: reads a stored event's body back into a Notice (admin replay, assignment); None when the
        event is not replayed.
    periodic: the worker's periodic tasks by kind ("reconcile"), given the settings; the worker names each
        "<kind>:<provider>".
    handlers: outbox handler factories by kind prefix, for the provider's own channel (named after it).
    samples: builders of correctly signed sample webhooks, by the name the CLI offers.
    commands: the provider's `flask --app wsgi <name> …` command group, if it has one.
    operations: the OpenAPI description of the provider's own routes, by (method, path).
    catalog_price: how the Mini App catalogue prices a product in this provider; None: not sold there.
    renewal_days: the period, in days, of subscriptions the provider charges again by itself (Stars: 30);
        None when it has none. Such orders are created with `recurring`.
    cancel_renewal: stops the renewals of such an order, given its `renewal` record (chargeId, payerId);
        raises ProviderUnavailable when the provider cannot be reached (the call is then queued).
    payment_methods: the `paymentMethod` values a payment request may choose (none: the caller cannot choose).
    refund: refunds a paid order through the provider's API; None when the provider has no refund API.
    """

    name: str
    payments: Callable[[Settings], PaymentProvider]
    read_stored: Callable[[ProviderEvent, Settings], Notice | None]
    periodic: Callable[[Settings], dict[str, PeriodicTask]] = lambda settings: {}
    handlers: dict[str, Callable[[Settings], Handler]] = field(default_factory=dict)
    samples: dict[str, Callable[[SampleOrder, Settings, datetime], SampleRequest]] = field(default_factory=dict)
    commands: Group | None = None
    operations: dict[tuple[str, str], Operation] = field(default_factory=dict)
    catalog_price: str | None = None
    renewal_days: int | None = None
    cancel_renewal: Callable[[Settings, dict[str, Any]], None] | None = None
    payment_methods: tuple[str, ...] = ()
    refund: Refunder | None = None
