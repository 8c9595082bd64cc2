"""The ingest's write unit (services/unit.py): its own connection, the writes nobody reads back sent later but in
order, all of it committed together or not at all; the ORM session refused inside it, joined when already open."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from services import driver, metrics
from services.db import db, session_in_use, transaction
from services.models import LedgerEntry, OutboxMessage
from services.outbox import MERCHANT, Message, enqueue, enqueue_all
from services.sqlite_writer import WriterLock
from services.unit import write_unit
from tests.blueprints.test_metrics import value

NOW = datetime(2026, 12, 5, 4, 0, tzinfo=timezone.utc)


def queue(key: str, note: str) -> None:
    enqueue_all([Message(MERCHANT, "order.paid", key, {"note": note})], NOW)


def stored() -> dict[str, str]:
    with transaction():
        return dict(db.session.execute(select(OutboxMessage.dedupe_key, OutboxMessage.payload["note"].as_string()))
                    .all())


def ledger_entries() -> int:
    with transaction():
        return db.session.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()


def post_for_no_order() -> None:
    """A ledger entry naming an order that does not exist: its foreign key fails it, but only once it is sent."""
    driver.insert_ignore_rows(LedgerEntry, [{"telegram_id": 7, "amount": 100, "unit": "credits", "reason": "test",
                                             "order_pk": 999_999, "created_at": NOW}], ["order_pk", "reason"])


def test_deferred_writes_reach_the_database_before_the_next_statement(app):
    with app.app_context():
        with write_unit():
            queue("merchant:o-1:paid", "deferred")
            # Sent before this INSERT, so the same key conflicts with the row written first.
            assert enqueue(MERCHANT, "order.paid", "merchant:o-1:paid", {"note": "later"}, NOW) is None
        assert stored() == {"merchant:o-1:paid": "deferred"}


def test_deferred_writes_wait_for_the_commit_and_commit_with_the_unit(app):
    with app.app_context():
        with write_unit():
            queue("merchant:o-1:paid", "first")
            queue("merchant:o-2:paid", "second")
            assert len(driver.CURRENT_UNIT.get().deferred) == 2
        assert stored() == {"merchant:o-1:paid": "first", "merchant:o-2:paid": "second"}


def test_a_deferred_write_that_fails_fails_the_commit_and_nothing_of_the_unit_is_stored(app):
    with app.app_context():
        with pytest.raises(IntegrityError):
            with write_unit():
                assert enqueue(MERCHANT, "order.paid", "merchant:o-1:paid", {"note": "sent at once"}, NOW)
                post_for_no_order()
                queue("merchant:o-2:paid", "after the failure")
        assert stored() == {} and ledger_entries() == 0
        # The pooled connection was rolled back and works for the next unit.
        with write_unit():
            queue("merchant:o-3:paid", "next")
        assert stored() == {"merchant:o-3:paid": "next"}


def test_a_unit_that_raises_drops_its_deferred_writes(app):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with write_unit():
                queue("merchant:o-1:paid", "rolled back")
                raise RuntimeError("bug")
        with write_unit():
            queue("merchant:o-2:paid", "next")
        assert stored() == {"merchant:o-2:paid": "next"}


def test_the_orm_session_is_refused_inside_a_unit(app):
    with app.app_context():
        with pytest.raises(RuntimeError, match="ORM session was used inside a write unit"):
            with write_unit():
                queue("merchant:o-1:paid", "rolled back")
                db.session.execute(select(OutboxMessage.id)).all()
        db.session.rollback()
        assert stored() == {}


def test_a_unit_joins_the_transaction_the_session_already_has(app):
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        with write_unit():
            assert driver.CURRENT_UNIT.get() is None
            queue("merchant:o-1:paid", "joined")
        assert not db.session().in_transaction()
        assert stored() == {"merchant:o-1:paid": "joined"}


def test_a_unit_leaves_no_orm_session_behind_when_none_was_in_use(app):
    # Making one only to ask it, then closing it at teardown, cost a webhook a twentieth of its CPU.
    with app.app_context():
        assert session_in_use() is None
        with write_unit():
            queue("merchant:o-1:paid", "alone")
        assert session_in_use() is None
        db.session.execute(text("SELECT 1"))
        assert session_in_use() is db.session()


def test_a_fulfilment_counts_once_its_unit_commits(app):
    before = value("fulfilments_total", kind="unit_kind")
    with app.app_context():
        with pytest.raises(RuntimeError):
            with write_unit():
                metrics.record_fulfilment("unit_kind")
                raise RuntimeError("rolled back")
        with write_unit():
            metrics.record_fulfilment("unit_kind")
            assert value("fulfilments_total", kind="unit_kind") == before
        assert value("fulfilments_total", kind="unit_kind") == before + 1


def test_sqlite_units_hold_the_writer_lock_until_they_end(app, database_url):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("the writer lock is SQLite's")
        path = db.engine.url.database
        other = WriterLock.beside(path)
        with write_unit():
            with pytest.raises(sqlite3.OperationalError):
                other.acquire(0.01)
        other.acquire(0.01)
        other.release()
        with pytest.raises(IntegrityError):
            with write_unit():
                post_for_no_order()
        other.acquire(0.01)
        other.close()


@pytest.mark.parametrize("lost_before", ["the next statement", "the commit"])
def test_a_connection_lost_inside_a_unit_is_a_database_error_and_the_next_unit_has_a_fresh_one(app, lost_before):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("a PostgreSQL server can drop a connection")
        with pytest.raises(OperationalError) as raised:
            with write_unit():
                queue("merchant:o-1:paid", "lost")
                backend = driver.fetch_row(driver.write_connection(), select(func.pg_backend_pid().label("pid")), {})
                with db.engine.connect() as other:
                    other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend["pid"]})
                if lost_before == "the next statement":
                    enqueue(MERCHANT, "order.paid", "merchant:o-2:paid", {"note": "lost"}, NOW)
        assert raised.value.connection_invalidated
        with write_unit():
            queue("merchant:o-3:paid", "next")
        assert stored() == {"merchant:o-3:paid": "next"}
