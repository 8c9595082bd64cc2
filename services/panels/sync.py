"""Keeping purchases in step with the configured panel: sync expiry, refresh links, tell the buyer."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select

from services import audit, notifications, outbox
from services.db import db, transaction
from services.errors import GatewayError, NotFound, ProviderUnavailable
from services.models import Order, Purchase
from services.outbox import Job
from services.panels.base import PanelUnreachable, panel_username
from services.panels.registry import panel_for
from webhook_config import Settings

logger = logging.getLogger(__name__)

ACTIVE = "active"
# A sync re-reads the expiry after the panel call; if another payment moved it meanwhile, it syncs again.
MAX_SYNC_ROUNDS = 3
# Where a buyer renews: the Mini App's storefront (SPEC.md §5), on SERVER_URL.
RENEWAL_PATH = "/miniapp/"


@dataclass(frozen=True)
class _Snapshot:
    purchase_id: int
    telegram_id: int
    plan: str
    username: str
    expires_at: datetime
    had_link: bool


def _snapshot(purchase_id: int) -> _Snapshot:
    """Read what the panel call needs, in a transaction of its own (none may stay open across HTTP)."""
    with transaction():
        purchase = db.session.get(Purchase, purchase_id, populate_existing=True)
        if purchase is None:
            raise NotFound(f"No purchase with id {purchase_id}.")
        return _Snapshot(purchase.id, purchase.telegram_id, purchase.plan,
                         purchase.panel_username or panel_username(purchase.telegram_id, purchase.plan),
                         purchase.expires_at, bool(purchase.subscription_url))


def sync_purchase(payload: dict[str, Any], settings: Settings, now: datetime) -> str:
    """Outbox handler for channel "panel", kind "panel.sync": create or extend the panel user of a purchase.

    Stores the subscription URL the first time and then sends the buyer their link (when `notify`);
    later syncs keep the stored link, which stays valid because nothing was revoked.
    """
    purchase_id = int(payload["purchase_id"])
    panel = panel_for(settings)
    for _ in range(MAX_SYNC_ROUNDS):
        before = _snapshot(purchase_id)
        url = panel.ensure_user(before.username, before.expires_at, before.telegram_id)
        with transaction():
            purchase = db.session.get(Purchase, purchase_id, with_for_update=True, populate_existing=True)
            if purchase.expires_at != before.expires_at:
                continue
            purchase.panel_username = before.username
            if not purchase.subscription_url:
                purchase.subscription_url = url
                if payload.get("notify"):
                    _notify_link(purchase, notifications.subscription_ready_text(purchase.plan, url),
                                 f"telegram:panel:{purchase.id}:ready", settings, now)
            purchase.updated_at = now
            logger.info("purchase synced to the panel", extra={"purchase_id": purchase_id})
            return purchase.subscription_url
    raise ProviderUnavailable("The purchase kept changing during the panel sync; retry later.")


class PanelSync:
    """The outbox handler for channel "panel" (kinds "panel.*"), built once per worker."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, job: Job, now: datetime) -> None:
        sync_purchase(job.payload, self.settings, now)


def refresh_purchase(purchase_id: int, actor: str, settings: Settings, now: datetime) -> str:
    """Regenerate a purchase's subscription link on the panel, store it and tell the buyer. Returns the URL."""
    panel = panel_for(settings)
    before = _snapshot(purchase_id)
    try:
        panel.ensure_user(before.username, before.expires_at, before.telegram_id)
        url = panel.revoke(before.username)
    except GatewayError as exc:
        with transaction():
            audit.record(actor, "purchase.refresh_link", f"purchase:{purchase_id}", now,
                         outcome="failed", error=exc.message)
        raise
    with transaction():
        purchase = db.session.get(Purchase, purchase_id, with_for_update=True, populate_existing=True)
        purchase.panel_username = before.username
        purchase.subscription_url = url
        purchase.updated_at = now
        _notify_link(purchase, notifications.subscription_link_text(purchase.plan, url),
                     f"telegram:panel:{purchase.id}:link:{uuid.uuid4().hex}", settings, now)
        audit.record(actor, "purchase.refresh_link", f"purchase:{purchase_id}", now, outcome="refreshed")
    logger.info("subscription link refreshed", extra={"purchase_id": purchase_id})
    return url


def _notify_link(purchase: Purchase, text: str, dedupe_key: str, settings: Settings, now: datetime,
                 kind: str = "notify.subscription_link") -> None:
    """Queue the buyer's message, attached to the purchase's latest order so the console shows it there."""
    outbox.enqueue_buyer_message(purchase.telegram_id, text, kind, dedupe_key, settings, now,
                                 _latest_order(purchase.id))


def _latest_order(purchase_id: int) -> Order | None:
    return db.session.execute(
        select(Order).where(Order.purchase_id == purchase_id).order_by(Order.id.desc()).limit(1)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class PanelUserOwner:
    """The purchase a panel user was created for, and the orderId its events are filed under."""

    purchase_id: int
    order_id: str | None


def owner_of(username: str) -> PanelUserOwner | None:
    """The purchase whose panel user this is; None for a user the gateway did not create."""
    with transaction():
        purchase_id = db.session.execute(
            select(Purchase.id).where(Purchase.panel_username == username).order_by(Purchase.id).limit(1)
        ).scalar_one_or_none()
        if purchase_id is None:
            return None
        order = _latest_order(purchase_id)
        return PanelUserOwner(purchase_id, order.order_id if order is not None else None)


def remind_expiry(owner: PanelUserOwner, hours_left: int, dedupe_key: str, settings: Settings,
                  now: datetime) -> None:
    """Queue the buyer's "expires soon" (hours_left > 0) or "expired" message with a renewal link, once per key."""
    with transaction():
        purchase = db.session.get(Purchase, owner.purchase_id)
        text = notifications.subscription_expiry_text(purchase.plan, hours_left, settings.server_url + RENEWAL_PATH)
        _notify_link(purchase, text, dedupe_key, settings, now, kind="notify.subscription_expiry")


def purchase_view(purchase_id: int) -> dict[str, Any]:
    """A purchase with the orders that paid for it, for the admin lookup."""
    with transaction():
        purchase = db.session.get(Purchase, purchase_id, populate_existing=True)
        if purchase is None:
            raise NotFound(f"No purchase with id {purchase_id}.")
        paid_by = list(db.session.execute(
            select(Order).where(Order.purchase_id == purchase_id).order_by(Order.id)).scalars())
    view = {column.key: getattr(purchase, column.key) for column in Purchase.__table__.columns}
    return {**view, "orders": paid_by}


def active_purchase_ids(now: datetime) -> list[int]:
    """Purchases whose subscription is running: status active and not yet expired."""
    with transaction():
        return list(db.session.execute(
            select(Purchase.id).where(Purchase.status == ACTIVE, Purchase.expires_at > now).order_by(Purchase.id)
        ).scalars())


@dataclass
class RefreshSummary:
    """Outcome of a bulk refresh; `failed` counts every purchase not refreshed, connection errors included."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    connection_errors: int = 0


def refresh_all(actor: str, settings: Settings, now: datetime) -> RefreshSummary:
    """Refresh every active purchase with bounded concurrency; a panel failure counts, it never aborts the run."""
    panel_for(settings)
    ids = active_purchase_ids(now)
    app = current_app._get_current_object()
    with ThreadPoolExecutor(max_workers=settings.panel_refresh_concurrency) as pool:
        outcomes = list(pool.map(lambda purchase_id: _refresh_in_context(app, purchase_id, actor, settings, now),
                                 ids))
    summary = RefreshSummary(total=len(ids), succeeded=outcomes.count("ok"))
    summary.failed = summary.total - summary.succeeded
    summary.connection_errors = outcomes.count("unreachable")
    with transaction():
        audit.record(actor, "purchase.refresh_all", "purchase:*", now, total=summary.total,
                     succeeded=summary.succeeded, failed=summary.failed,
                     connectionErrors=summary.connection_errors)
    return summary


def _refresh_in_context(app: Flask, purchase_id: int, actor: str, settings: Settings, now: datetime) -> str:
    """One purchase of a bulk refresh, in its own app context (and so its own database session)."""
    with app.app_context():
        try:
            refresh_purchase(purchase_id, actor, settings, now)
            return "ok"
        except PanelUnreachable:
            return "unreachable"
        except GatewayError as exc:
            logger.warning("refreshing a purchase failed: %s", exc.message, extra={"purchase_id": purchase_id})
            return "failed"
        except Exception:
            logger.exception("refreshing a purchase failed unexpectedly", extra={"purchase_id": purchase_id})
            return "failed"
        finally:
            db.session.remove()
