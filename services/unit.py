"""The ingest's write transaction: one pooled DBAPI connection, without the ORM session around it.

A new webhook runs ten statements and commits; the ORM session and the SQLAlchemy Connection around that
transaction (its begin, commit, events and pool return) cost as much CPU as several of the statements
(docs/performance.md, change 17). Inside a unit every statement goes through services/driver.py on the unit's
connection, and the writes nobody reads back (`driver.write_later`: the ledger entry, the outbox rows, the event's
outcome) wait for the next statement or the COMMIT: on PostgreSQL they are sent with the COMMIT as one pipeline,
one round trip instead of one each. They still reach the database in the order they were issued, before
anything that follows them, and all of it commits or none of it: a deferred write that fails fails the COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from services.db import db, transaction
from services.db_engine import begin_sqlite
from services.driver import CURRENT_UNIT, checkout, commit_after, run_all


class WriteUnit:
    """One write transaction on a pooled connection of its own; what services/driver.py needs of a connection
    (`dialect`, the pooled `connection`, `invalidate`) and the writes deferred to its COMMIT."""

    def __init__(self, engine: Engine):
        self.dialect = engine.dialect
        self.connection = checkout(engine)
        self.deferred: list[tuple[Any, Any]] = []
        self._committed: list[Callable[[], None]] = []
        if self.dialect.name == "sqlite":
            # psycopg begins PostgreSQL's transaction with the first statement; SQLite's takes the writer lock.
            try:
                begin_sqlite(self.connection.driver_connection, write=True)
            except BaseException:
                self.connection.close()
                raise

    def invalidate(self, exc: Exception) -> None:
        self.connection.invalidate(exc)

    def defer(self, compiled, values) -> None:
        self.deferred.append((compiled, values))

    def send_deferred(self) -> None:
        if self.deferred:
            pending, self.deferred = self.deferred, []
            run_all(self, pending)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the unit has committed; never if it rolls back."""
        self._committed.append(action)

    def commit(self) -> None:
        pending, self.deferred = self.deferred, []
        commit_after(self, pending)
        for action in self._committed:
            action()

    def rollback(self) -> None:
        self.deferred.clear()
        if not self.connection.is_valid:
            return  # invalidated when it was found lost: closed already, nothing to roll back
        try:
            self.connection.driver_connection.rollback()
        except self.dialect.loaded_dbapi.Error as exc:
            # The connection is broken; the pool must not hand it out again. The error the caller is already
            # raising is the one to report.
            self.invalidate(exc)

    def close(self) -> None:
        self.connection.close()


@contextmanager
def write_unit() -> Iterator[None]:
    """Run the body as one write transaction that commits when the body returns and rolls back if it raises.

    When the ORM session already has a transaction open (a caller read through it first), the body joins that
    transaction instead, as `db.transaction` would: a second connection could not see its locks and, on SQLite,
    would wait for the writer lock the session holds.
    """
    if db.session().in_transaction():
        with transaction():
            yield
        return
    unit = WriteUnit(db.engine)
    token = CURRENT_UNIT.set(unit)
    try:
        yield
        unit.commit()
    except BaseException:
        unit.rollback()
        raise
    finally:
        CURRENT_UNIT.reset(token)
        unit.close()


@event.listens_for(Session, "after_transaction_create")
def _refuse_inside_unit(_session, _transaction) -> None:
    # The session would run on another connection, outside the unit's transaction: its writes would commit
    # apart from the unit's, and on SQLite it would wait for the writer lock the unit holds. Refused when its
    # transaction is created, before it asks for a connection.
    if CURRENT_UNIT.get() is not None:
        raise RuntimeError("the ORM session was used inside a write unit: use services/driver.py's statements")
