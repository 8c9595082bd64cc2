"""An event's claim reads the event stored before it (services/driver.py `insert_or_find`, events._claim_event): on
PostgreSQL in the INSERT's own statement, which for a repeat writes nothing, so no look-up runs before it."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text

from services import driver, events
from services.db import db, transaction
from services.models import ProviderEvent
from services.notices import DUPLICATE, ERROR, IGNORE, Delivery, Notice
from services.unit import write_unit

NOW = datetime(2026, 12, 5, 11, 0, tzinfo=timezone.utc)
STORED = ("status", "claimed_order_id", "processing_attempts")


def claim(key: str, status: str = "received", found: tuple[str, ...] = STORED) -> tuple:
    values = {"provider": "bmc", "event_key": key, "event_type": "donation.created", "status": status,
              "claimed_order_id": "order-9", "verification": "signature", "details": {}, "headers": {},
              "body": b"{}", "processing_attempts": 0, "received_at": NOW}
    return driver.insert_or_find(ProviderEvent, values, ["provider", "event_key"], found)


def events_stored() -> int:
    with transaction():
        return db.session.execute(select(func.count()).select_from(ProviderEvent)).scalar_one()


def transaction_id_taken() -> bool:
    connection = driver.CURRENT_UNIT.get().connection.driver_connection
    return connection.execute("SELECT pg_current_xact_id_if_assigned()").fetchone() != (None,)


def test_a_new_row_is_inserted_and_a_stored_one_read_back_unchanged(app):
    with app.app_context():
        with write_unit():
            new_id, found = claim("evt-1", status="processed")
        assert found is None and new_id is not None
        with write_unit():
            assert claim("evt-1") == (None, {"id": new_id, "status": "processed", "claimed_order_id": "order-9",
                                             "processing_attempts": 0})
        assert events_stored() == 1


def test_the_stored_rows_values_come_back_as_their_columns_convert_them(app):
    with app.app_context():
        with write_unit():
            claim("evt-1")
        with write_unit():
            _, found = claim("evt-1", found=("received_at",))
    assert found["received_at"] == NOW and found["received_at"].tzinfo is timezone.utc


def test_on_postgresql_a_repeats_claim_writes_nothing(app):
    with app.app_context():
        if not driver.claim_finds_stored():
            pytest.skip("SQLite looks a repeat up before its write transaction")
        with write_unit():
            claim("evt-1", status="processed")
            assert transaction_id_taken()
        with write_unit():
            assert claim("evt-1")[1] is not None
            # Nothing for its COMMIT to write or flush.
            assert not transaction_id_taken()


def test_on_postgresql_a_row_committed_while_the_claim_waited_is_left_to_a_read_of_its_own(app):
    with app.app_context():
        if not driver.claim_finds_stored():
            pytest.skip("SQLite runs one write transaction at a time")
    inserted, release, answers = threading.Event(), threading.Event(), []

    def first_delivery():
        with app.app_context(), write_unit():
            claim("evt-1", status="processed")
            inserted.set()
            release.wait(10)

    def second_delivery():
        with app.app_context(), write_unit():
            answers.append(claim("evt-1"))

    first, second = threading.Thread(target=first_delivery), threading.Thread(target=second_delivery)
    first.start()
    assert inserted.wait(10)
    second.start()
    with app.app_context():
        assert waiting_for_a_lock(), "the second claim should wait for the first delivery's transaction"
    release.set()
    first.join(10)
    second.join(10)
    # The stored row is not in the second statement's snapshot, taken before the first delivery committed.
    assert answers == [(None, None)]


def waiting_for_a_lock(deadline: float = 10.0) -> bool:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        with transaction():
            if db.session.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                       " AND datname = current_database()")).scalar_one():
                return True
    return False


@pytest.mark.parametrize("stored_status", ["processed", ERROR])
def test_the_claim_answers_a_settled_event_and_hands_back_a_failed_one(app, stored_status):
    delivery = Delivery(provider="bmc", body=b"{}", headers={}, remote_addr=None, verification="signature")
    notice = Notice(event_key="evt-1", event_type="donation.created", action=IGNORE, order_id="order-9")
    with app.app_context():
        with write_unit():
            event_id, _ = claim("evt-1", status=stored_status)
        with write_unit():
            claimed = events._claim_event(delivery, notice, NOW)
    if stored_status == ERROR:
        assert isinstance(claimed, events._StoredEvent) and claimed.id == event_id
    else:
        assert (claimed.event_id, claimed.outcome, claimed.order_id) == (event_id, DUPLICATE, "order-9")
