"""Which driver cursor the hot paths' statements run on: PostgreSQL keeps one per connection, SQLite takes a fresh
one, so that no half-read SELECT keeps a read snapshot open in the pool."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, literal, select
from sqlalchemy.exc import DBAPIError

from services import driver
from services.db import db, transaction
from services.models import OutboxMessage
from services.outbox import MERCHANT, Message, enqueue_all

NOW = datetime(2026, 12, 5, 1, 0, tzinfo=timezone.utc)
PENDING = (select(OutboxMessage.id, OutboxMessage.dedupe_key).where(OutboxMessage.status == literal("pending"))
           .order_by(OutboxMessage.id))
COUNT = select(func.count()).select_from(OutboxMessage)


@pytest.fixture
def cursors(monkeypatch) -> list:
    """Every cursor a driver statement ran on, in order."""
    seen: list = []
    run = driver._run

    def recorded(connection, compiled, values):
        cursor = run(connection, compiled, values)
        seen.append(cursor)
        return cursor

    monkeypatch.setattr(driver, "_run", recorded)
    return seen


def queue_two() -> None:
    with transaction():
        enqueue_all([Message(MERCHANT, "order.paid", f"merchant:c-{n}:paid", {"n": n}) for n in (1, 2)], NOW)


def on_postgresql() -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL keeps a cursor per connection")


def test_postgresql_runs_every_statement_of_a_connection_on_its_one_cursor(app, cursors):
    with app.app_context():
        on_postgresql()
        queue_two()
        with transaction():
            connection = driver.session_connection()
            first = driver.fetch_row(connection, PENDING, {})
            count = driver.fetch_row(connection, COUNT, {})
        with transaction():
            again = driver.fetch_row(driver.session_connection(), PENDING, {})
        # One cursor for the connection's life, across transactions, each statement's own answer read from it.
        assert len(cursors) == 4 and all(cursor is cursors[0] for cursor in cursors)
        assert first["dedupe_key"] == again["dedupe_key"] == "merchant:c-1:paid"
        assert list(count.values()) == [2]
        # The status and repeat look-ups run in autocommit on the pooled connection's kept cursor too.
        assert driver.fetch_one("SELECT count(*) FROM outbox", ()) == (2,)
        with db.engine.connect() as again_pooled:
            assert again_pooled.connection.info[driver._CURSOR] is cursors[0]
            assert [column.name for column in cursors[0].description] == ["count"]


def test_postgresql_takes_a_new_cursor_after_its_connection_is_replaced(app, cursors):
    with app.app_context():
        on_postgresql()
        connection = driver.session_connection()
        driver.fetch_row(connection, COUNT, {})
        connection.invalidate()
        db.session.rollback()
        with transaction():
            assert list(driver.fetch_row(driver.session_connection(), COUNT, {}).values()) == [0]
        assert len(cursors) == 2 and cursors[1].connection is not cursors[0].connection


def test_postgresql_keeps_using_the_cursor_after_a_statement_on_it_failed(app, cursors):
    with app.app_context():
        on_postgresql()
        with pytest.raises(DBAPIError, match="too long"), transaction():
            # channel is VARCHAR(16): the server refuses the row and the transaction is rolled back.
            enqueue_all([Message("c" * 17, "order.paid", "merchant:c-0:paid", {})], NOW)
        queue_two()
        with transaction():
            count = driver.fetch_row(driver.session_connection(), COUNT, {})
        assert list(count.values()) == [2]
        assert len(cursors) == 2 and cursors[0] is cursors[1]


def test_sqlite_leaves_no_half_read_statement_holding_back_checkpoints(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite read snapshots")
        queue_two()
        with transaction():
            # Two rows match; the first is all a caller reads. A cursor kept anywhere (even by a test recording
            # it) would keep this SELECT's read snapshot, and the checkpoint below would report itself busy.
            assert driver.fetch_row(driver.session_connection(), PENDING, {})["dedupe_key"] == "merchant:c-1:paid"
        path = db.engine.url.database
    with sqlite3.connect(path) as other:
        busy, _log_frames, _checkpointed = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0


def test_an_expanding_in_is_refused_when_the_statement_is_built(app):
    with app.app_context():
        with transaction():
            with pytest.raises(ValueError, match="expanding IN"):
                driver.fetch_row(driver.session_connection(),
                                 select(OutboxMessage.id).where(OutboxMessage.status.in_(["a", "b"])), {})
            fixed = select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_([literal("pending"), literal("dead")]))
            assert list(driver.fetch_row(driver.session_connection(), fixed, {}).values()) == [0]
