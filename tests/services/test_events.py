"""The inbox: a stored event whose processing failed is retried by its provider's worker with backoff, then
flagged for a person; what a signed event contains never keeps it from being stored."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest

from services import events, timeline
from services.db import db, transaction
from services.models import Fulfilment, OutboxMessage, ProviderEvent
from services.notices import PAID, Delivery, Notice
from tests.blueprints.test_telegram import BUYER, SECRET, SUCCESSFUL_PAYMENT, create_stars, send
from tests.conftest import FrozenClock
from tests.helpers import balance, status
from tests.services.test_write_unit import post_for_no_order
from tests.support.worker import run_worker

SCHEDULE = "60,300"


@pytest.fixture
def stars_app(make_app, telegram):
    app = make_app(TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url,
                   TELEGRAM_WEBHOOK_SECRET=SECRET, EVENT_RETRY_SCHEDULE=SCHEDULE)
    app.config["CLOCK"] = FrozenClock()
    return app


def stored(app) -> ProviderEvent:
    with app.app_context(), transaction():
        return db.session.execute(db.select(ProviderEvent).where(
            ProviderEvent.event_key == "charge:stxAbCdEf0123456789")).scalar_one()


def failing_ledger():
    return mock.patch("services.settle.ledger.post", side_effect=RuntimeError("ledger bug"))


def paid_but_failed(app):
    client = app.test_client()
    create_stars(client)
    with failing_ledger():
        assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "failed"
    return client


def test_a_failed_event_is_retried_by_its_worker_when_due(stars_app):
    client = paid_but_failed(stars_app)
    clock = stars_app.config["CLOCK"]
    event = stored(stars_app)
    assert (event.status, event.next_attempt_at) == ("failed", clock.now + timedelta(seconds=60))
    with stars_app.app_context():
        [entry] = [e for e in timeline.order_timeline("order-45")["entries"] if e["kind"] == "event"]
    assert entry["details"]["automaticRetry"] == clock.now + timedelta(seconds=60)
    clock.advance(seconds=59)
    run_worker(stars_app, "telegram")
    assert stored(stars_app).status == "failed" and balance(client, BUYER) == 0
    clock.advance(seconds=1)
    run_worker(stars_app, "telegram")
    event = stored(stars_app)
    assert (event.status, event.next_attempt_at) == ("processed", None)
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    run_worker(stars_app, "telegram")
    assert balance(client, BUYER) == 500


def test_a_failed_event_backs_off_then_waits_for_a_person(stars_app):
    client = paid_but_failed(stars_app)
    clock = stars_app.config["CLOCK"]
    with failing_ledger():
        clock.advance(seconds=60)
        run_worker(stars_app, "telegram")
        assert stored(stars_app).next_attempt_at == clock.now + timedelta(seconds=300)
        clock.advance(seconds=300)
        run_worker(stars_app, "telegram")
    event = stored(stars_app)
    assert (event.status, event.next_attempt_at, event.processing_attempts) == ("failed", None, 3)
    assert "ledger bug" in event.error
    with stars_app.app_context():
        [entry] = [e for e in timeline.order_timeline("order-45")["entries"] if e["kind"] == "event"]
    assert entry["needsReview"] and entry["details"]["automaticRetry"].startswith("none left")
    clock.advance(days=1)
    run_worker(stars_app, "telegram")
    assert stored(stars_app).processing_attempts == 3 and balance(client, BUYER) == 0


def test_an_event_whose_fields_cannot_be_stored_is_kept_with_its_raw_body(app, clock):
    # A currency longer than its column: PostgreSQL refuses the row, and then the same row for the failure.
    notice = Notice(event_key="sbp-long", event_type="CONFIRMED", action=PAID, order_id="order-1",
                    amount=Decimal(1), currency="C" * 50, details={"note": "x" * 10})
    delivery = Delivery(provider="sbp", body=b'{"raw": "\\u0000 kept"}', headers={}, remote_addr=None)
    with app.app_context():
        result = events.ingest(delivery, notice, app.config["SETTINGS"], clock.now)
    with app.app_context(), transaction():
        event = db.session.get(ProviderEvent, result.event_id)
        assert (event.event_key, event.body) == ("sbp-long", b'{"raw": "\\u0000 kept"}')
        if db.engine.dialect.name == "postgresql":
            assert (result.outcome, event.currency, event.next_attempt_at) == ("failed", None, clock.now + timedelta(
                seconds=60))
            assert event.details == {"note": "stored without its parsed fields: see the raw body"}
        else:  # SQLite keeps strings of any length
            assert result.outcome == "unmatched"


def test_an_event_settled_by_another_delivery_before_this_ones_failure_is_stored_keeps_its_outcome(
        stars_app, monkeypatch):
    client = stars_app.test_client()
    create_stars(client)
    real_post, real_store_failed, posts = events.settle.ledger.post, events._store_failed, []

    def ledger_failing_once(*args):
        posts.append(args)
        if len(posts) == 1:
            raise RuntimeError("ledger bug")
        return real_post(*args)

    def settled_meanwhile(delivery, notice, error, settings, now):
        # The provider's concurrent delivery of the same event, which waited for this one's claim.
        assert events.ingest(delivery, notice, settings, now).outcome == "processed"
        return real_store_failed(delivery, notice, error, settings, now)

    monkeypatch.setattr(events.settle.ledger, "post", ledger_failing_once)
    monkeypatch.setattr(events, "_store_failed", settled_meanwhile)
    assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "failed"

    event = stored(stars_app)
    assert (event.status, event.next_attempt_at) == ("processed", None)
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
    with stars_app.app_context(), transaction():
        assert len(db.session.execute(db.select(Fulfilment)).all()) == 1


def test_a_write_that_fails_only_at_the_commit_settles_nothing_and_keeps_the_event_as_failed(stars_app):
    client = stars_app.test_client()
    create_stars(client)
    # The ledger entry is written with the COMMIT (services/unit.py); one naming no order fails there.
    with mock.patch("services.settle.ledger.post", side_effect=lambda *_args: post_for_no_order()):
        assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "failed"
    event = stored(stars_app)
    assert event.status == "failed" and event.error.startswith("IntegrityError")
    assert status(client, "order-45")["status"] == "pending" and balance(client, BUYER) == 0
    with stars_app.app_context(), transaction():
        assert db.session.execute(db.select(Fulfilment)).first() is None
        assert db.session.execute(db.select(OutboxMessage)).first() is None
    # The provider's retry settles it once.
    assert send(client, SUCCESSFUL_PAYMENT).get_json()["outcome"] == "processed"
    assert status(client, "order-45")["status"] == "paid" and balance(client, BUYER) == 500
