"""The ingest's write transaction: one pooled DBAPI connection, without the ORM session around it.

A new webhook runs several statements and commits; the ORM session and the SQLAlchemy Connection around that
transaction (its begin, commit, events and pool return) cost as much CPU as several of the statements
(docs/performance.md, change 17). Inside a unit every statement goes through services/driver.py on the unit's
connection, and the writes nobody reads back (`driver.write_later`: the ledger entry, the outbox rows, the event's
outcome) wait for the next statement or the COMMIT. They still reach the database in the order they were issued,
before anything that follows them. The updates of rows the unit has locked (`hold_update`: the order's status)
wait longer: past the INSERTs that follow them, which cannot read them, for the COMMIT. On PostgreSQL what waited
for the COMMIT is sent with it in one pipeline, as one statement when each write has a table of its own
(change 18). All of it commits or none of it: a write that fails at the COMMIT fails the COMMIT.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, PrimaryKeyConstraint, Table, UniqueConstraint, event
from sqlalchemy.orm import Session

from services.db import db, session_in_use, transaction
from services.db_engine import begin_sqlite
from services.driver import CURRENT_UNIT, checkout, commit_after, prepared, run_all
from services.statements import by_key_values, update_by_key


class WriteUnit:
    """One write transaction on a pooled connection of its own; what services/driver.py needs of a connection
    (`dialect`, the pooled `connection`, `invalidate`) and the writes deferred to its COMMIT."""

    def __init__(self, engine: Engine):
        self.dialect = engine.dialect
        self.connection = checkout(engine)
        self.deferred: list[tuple[Any, Any]] = []
        # Rows read with FOR UPDATE in this unit, and the changes held for some of them: (table, key) → values.
        self.locked: set[tuple[Table, Any]] = set()
        self.held: dict[tuple[Table, Any], dict[str, Any]] = {}
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

    def send_deferred(self, keep_held: bool = False) -> None:
        pending = self._take_pending(keep_held)
        if pending:
            run_all(self, pending)

    def _take_pending(self, keep_held: bool = False) -> list[tuple[Any, Any]]:
        pending, self.deferred = self.deferred, []
        if self.held and not keep_held:
            held, self.held = self.held, {}
            pending += [prepared(update_by_key(table, tuple(sorted(values))), by_key_values(key, values), self.dialect)
                        for (table, key), values in held.items()]
        return pending

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the unit has committed; never if it rolls back."""
        self._committed.append(action)

    def commit(self) -> None:
        commit_after(self, self._take_pending())
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


def note_locked(table: Table, key: Any) -> None:
    """Record that the current write unit, if any, read this row (by primary key) with `FOR UPDATE`."""
    unit = CURRENT_UNIT.get()
    if unit is not None:
        unit.locked.add((table, key))


def hold_update(table: Table, key: Any, values: dict[str, Any]) -> bool:
    """Write these columns of the row with this primary key at the current write unit's COMMIT, merged with the
    row's other held changes, unless a statement that could read them comes first (then just before it). False,
    with nothing done, when there is no write unit or it did not lock the row (`note_locked`): write it at once.

    The row is locked by the unit, so the UPDATE cannot miss it; and it changes no key, so the INSERTs that
    overtake it see the unique and foreign keys they would have seen. On PostgreSQL it then goes with the other
    writes sent with the COMMIT, one round trip fewer (docs/performance.md, change 18). The unit's other writes
    of the row must be held updates as well, or they could reach the database before it.
    """
    unit = CURRENT_UNIT.get()
    if unit is None or (table, key) not in unit.locked:
        return False
    keys = sorted(set(values) & _key_columns(table))
    if keys:
        raise ValueError(f"a held update must not change a key of {table.name}: {', '.join(keys)}")
    unit.held.setdefault((table, key), {}).update(values)
    return True


@functools.lru_cache(maxsize=64)
def _key_columns(table: Table) -> frozenset[str]:
    """The columns of the table's primary key, unique constraints and unique indexes."""
    unique = [constraint.columns for constraint in table.constraints
              if isinstance(constraint, (PrimaryKeyConstraint, UniqueConstraint))]
    unique += [index.columns for index in table.indexes if index.unique]
    return frozenset(column.name for columns in unique for column in columns)


@contextmanager
def write_unit() -> Iterator[None]:
    """Run the body as one write transaction that commits when the body returns and rolls back if it raises.

    When the ORM session already has a transaction open (a caller read through it first), the body joins that
    transaction instead, as `db.transaction` would: a second connection could not see its locks and, on SQLite,
    would wait for the writer lock the session holds.
    """
    session = session_in_use()
    if session is not None and session.in_transaction():
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
