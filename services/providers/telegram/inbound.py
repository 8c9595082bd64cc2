"""Telegram updates into core events: answer pre-checkout queries, settle and refund Stars payments,
and hand every other update to the bot's own backend through the outbox."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from services import events, orders, outbox, settle
from services.db import transaction
from services.errors import MalformedPayload, ProviderRejected
from services.models import Order, ProviderEvent
from services.money import normalized
from services.notices import IGNORE, REFUNDED, Delivery, IngestResult, Notice
from services.providers.base import RefundDraft, RefundOutcome
from services.providers.telegram.client import TelegramClient, TelegramRejected
from services.providers.telegram import protocol as telegram
from services.providers.telegram.protocol import PreCheckoutQuery
from webhook_config import Settings

logger = logging.getLogger(__name__)

# Outbox kind on the telegram channel: payload {"url", "body"}, body being the update's exact JSON text.
FORWARD_KIND = "forward.update"
# What the gateway itself needs: payments arrive inside messages; pre-checkout queries must be answered.
PAYMENT_UPDATES = ("message", "pre_checkout_query")
# What a typical bot backend also reads; asked for only when updates are forwarded to it.
FORWARDED_UPDATES = ("edited_message", "callback_query", "inline_query", "chosen_inline_result", "my_chat_member")
# How a refund the gateway asked for is stored: the body is the confirmed refundStarPayment call.
REFUND_CALL = "refund requested: refundStarPayment confirmed it"


@dataclass(frozen=True)
class Reply:
    """What the webhook answers: a Bot API call or {"ok": true} (`answer`), or a stored event (`result`)."""

    answer: dict[str, Any] | None = None
    result: IngestResult | None = None
    order_id: str | None = None


def authenticate(header_value: str | None, settings: Settings) -> None:
    """Check the secret-token header (503 when no secret is configured, 401 when wrong); log rejections."""
    with events.rejection_logged("Telegram update", telegram.PROVIDER, bool(header_value)):
        telegram.verify_secret_token(header_value, settings.telegram_webhook_secret)


def handle_update(update: Any, delivery: Delivery, settings: Settings, now: datetime) -> Reply:
    """Act on one authenticated update; everything it changes is committed before this returns."""
    update_id = telegram.update_id(update)
    query = telegram.pre_checkout_query(update)
    if query is not None:
        return _answer_pre_checkout(query, delivery, settings, now)
    with transaction():
        notice = payment_event(update)
    if notice is not None:
        result = events.ingest(delivery, notice, settings, now)
        return Reply(result=result, order_id=result.order_id)
    _forward(update_id, delivery.body, settings, now)
    return Reply(answer={"ok": True})


def payment_event(update: dict[str, Any]) -> Notice | None:
    """A successful_payment or refunded_payment update as the Notice the inbox stores; None for any other update.

    The webhook and admin replay both read payments through here. It reads in the caller's transaction and
    never commits: replay may call it while holding row locks.
    """
    notice = telegram.payment_notice(update)
    if notice is not None and notice.action == REFUNDED:
        return _refund_of_settling_charge(notice)
    return notice


def pre_checkout_problem(query: PreCheckoutQuery, order: Order | None, now: datetime) -> tuple[str, str] | None:
    """Why the buyer must not pay (reason code, message shown to them), or None when the order awaits exactly this."""
    if order is None:
        return "unknown_order", "This order was not found. Please start the purchase again."
    if order.provider != telegram.PROVIDER:
        return "wrong_provider", "This order cannot be paid with Telegram Stars."
    if order.status == orders.PAID and order.recurring:
        # A subscription's renewal: Telegram charges the same invoice again.
        return None
    if order.status == orders.PAID:
        return "already_paid", "This order has already been paid."
    if order.status == orders.EXPIRED or (order.status == orders.PENDING and now >= order.expires_at):
        return "expired", "This order has expired. Please start the purchase again."
    if order.status != orders.PENDING:
        return "not_payable", f"This order is {order.status} and can no longer be paid."
    if query.currency != order.currency:
        return "currency_mismatch", f"This order is priced in {order.currency}, not {query.currency}."
    if query.amount != order.amount:
        return "amount_mismatch", f"This order costs {normalized(order.amount)} Stars, not {query.amount}."
    return None


def _answer_pre_checkout(query: PreCheckoutQuery, delivery: Delivery, settings: Settings,
                         now: datetime) -> Reply:
    """Decide from the order as it is now, note the query for support, and answer in the webhook response."""
    with transaction():
        problem = pre_checkout_problem(query, orders.find_order(query.order_id), now)
    reason, message = problem or (None, None)
    events.ingest(delivery, Notice(
        event_key=telegram.precheckout_key(query.query_id), event_type="pre_checkout_query", action=IGNORE,
        order_id=query.order_id, amount=query.amount, currency=query.currency,
        details={"ok": problem is None, "reason": reason, "fromId": query.payer_id},
    ), settings, now)
    return Reply(answer=telegram.webhook_answer(query.query_id, message), order_id=query.order_id)


def _refund_of_settling_charge(notice: Notice) -> Notice:
    """A refund reverses an order only if the refunded charge is the one that paid it.

    An invoice link can be paid twice; refunding the second (conflicting) charge must not take
    back what the first one bought. Telegram sends a refund only after its payment, whose event
    is committed by then, so reading it first is safe.
    """
    paid = settle.orders_paid_by(telegram.PROVIDER, notice.provider_payment_id)
    settled_order = paid[0] if paid else None
    if settled_order is not None:
        return replace(notice, order_id=settled_order)
    logger.warning("a Telegram refund names a charge that paid no order", extra={"order_id": notice.order_id})
    return replace(notice, action=IGNORE,
                   details={**notice.details, "reason": "the refunded charge did not pay for an order"})


def _forward(update_id: int, raw: bytes, settings: Settings, now: datetime) -> None:
    """Queue the update, byte for byte, for the bot's own backend; the telegram worker delivers it."""
    if not settings.telegram_forward_url:
        return
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("A Telegram update must be UTF-8 JSON.") from None
    # update_id restarts at random after a week without updates: the digest keeps a reused id apart.
    dedupe_key = f"telegram-forward:{update_id}:{hashlib.sha256(raw).hexdigest()[:16]}"
    with transaction():
        outbox.enqueue(telegram.PROVIDER, FORWARD_KIND, dedupe_key,
                       {"url": settings.telegram_forward_url, "body": body}, now)


def refund(draft: RefundDraft, settings: Settings, now: datetime,
           client: TelegramClient | None = None) -> RefundOutcome:
    """Give the Stars back (refundStarPayment) and reverse the order now, through the inbox, under the key the
    refunded_payment update will have: the reversal happens once, whichever arrives first."""
    payer = draft.payment_details.get("fromId") or draft.telegram_id
    if not isinstance(payer, int):
        raise ProviderRejected("Who paid this Stars payment is not on record; refund it from the bot.")
    try:
        refunded = (client or TelegramClient(settings)).refund_star_payment(payer, draft.payment_id)
    except TelegramRejected as exc:
        # Refunded before (an earlier call whose answer was lost, or by Telegram): record it, once.
        if "CHARGE_ALREADY_REFUNDED" not in exc.description:
            raise
        refunded = True
    if not refunded:
        raise ProviderRejected("Telegram did not confirm the refund.")
    call = telegram.refund_call(payer, draft.payment_id, int(draft.amount), draft.order_id)
    with transaction():
        notice = _refund_of_settling_charge(telegram.refund_call_notice(call))
    body = json.dumps(call, separators=(",", ":")).encode()
    delivery = Delivery(provider=telegram.PROVIDER, body=body, headers={}, remote_addr=None, verification=REFUND_CALL)
    result = events.ingest(delivery, notice, settings, now)
    return RefundOutcome(refund_id=draft.payment_id, status="succeeded", result=result)


def read_stored(event: ProviderEvent, settings: Settings) -> Notice | None:
    """A stored payment or refund read back for replay; a pre-checkout query was answered in its webhook
    response, and its stored event (ignored) is a note for support, not something to re-process."""
    body = json.loads(event.body, parse_float=Decimal)
    if event.verification == REFUND_CALL:
        return _refund_of_settling_charge(telegram.refund_call_notice(body))
    return payment_event(body)
