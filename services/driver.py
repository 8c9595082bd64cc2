"""Statements on the driver's own cursor, for the hot paths (a webhook's writes, the status and dedupe reads).

SQLAlchemy's execution path (execution context, parameter and result processing, events) cost about twice the
statement itself (docs/performance.md); these helpers compile a Core statement once per dialect and run it on the
DBAPI cursor, with the columns' own type conversions and SQLAlchemy's exception types.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from services.db import Base, db
from services.statements import (insert_ignore_statement, insert_or_find_statement, insert_rows_statement,
                                 stored_row_statement)

# Where session_connection keeps the connection of the session's current transaction.
_CONNECTION = "gateway_connection"

# The write unit (services/unit.py) running in this context, if any: the ingest's statements go to its connection.
CURRENT_UNIT: ContextVar[Any] = ContextVar("write_unit", default=None)


def write_connection(inserting: bool = False):
    """The connection to run a write transaction's next statement on, now: the current write unit's, after the
    writes it deferred so far (so that statements reach the database in the order they were issued); else the
    ORM session's.

    `inserting`: the next statement is an `INSERT … VALUES`, which reads no row but through unique indexes and
    foreign keys, whose columns a held update never changes (`hold_update`): the held updates wait past it.
    """
    unit = CURRENT_UNIT.get()
    if unit is None:
        return session_connection()
    unit.send_deferred(keep_held=inserting)
    return unit


def session_connection() -> Connection:
    """The connection of the ORM session's transaction (begun if need be), as db.session.connection() gives it.

    Looked up once per transaction: the session's own look-up walks its transaction state machine on every call,
    and a webhook asks for the connection once per statement.
    """
    session = db.session()
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cached[1]
    connection = session.connection()
    session.info[_CONNECTION] = (session.get_transaction(), connection)
    return connection


def write_later(statement, parameters: dict[str, Any]) -> None:
    """Run a write whose result nobody reads: in a write unit it waits for the unit's next statement or its COMMIT
    (on PostgreSQL sent together with the COMMIT, one round trip); else at once."""
    _write_later(*prepared(statement, parameters, _dialect()))


def _dialect():
    """The dialect of the current write unit, else of the app's engine (a lookup through Flask's context, which
    a webhook's statements would otherwise make once each)."""
    unit = CURRENT_UNIT.get()
    return db.engine.dialect if unit is None else unit.dialect


def prepared(statement, parameters: dict[str, Any], dialect) -> tuple[_DriverStatement, Any]:
    """A prebuilt Core statement compiled for the dialect, with its parameters converted by the columns' types."""
    compiled = _driver_statement(statement, dialect)
    return compiled, compiled.parameters(parameters)


def _write_later(compiled: _DriverStatement, values) -> None:
    unit = CURRENT_UNIT.get()
    if unit is None:
        _run(session_connection(), compiled, values)
    else:
        unit.defer(compiled, values)


def insert_ignore(model: type[Base], values: dict[str, Any], conflict_columns: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the new id, or None when the row already existed."""
    keys = _column_keys(model)
    parameters = {keys[name]: value for name, value in values.items()}
    dialect = _dialect()
    statement = insert_ignore_statement(model.__table__, tuple(conflict_columns), tuple(sorted(parameters)),
                                         dialect.name)
    # Converted (JSON encoded …) before the connection is asked for: a transaction's first statement begins it,
    # which on SQLite takes the writer lock, and a webhook's first row carries its headers, body and details.
    compiled, converted = prepared(statement, parameters, dialect)
    row = _run(write_connection(inserting=True), compiled, converted).fetchone()
    return None if row is None else row[0]


def claim_finds_stored() -> bool:
    """Whether `insert_or_find` reads the stored row in the INSERT's own statement, without a write (PostgreSQL)."""
    return _dialect().name == "postgresql"


def insert_or_find(model: type[Base], values: dict[str, Any], conflict_columns: list[str],
                   found_columns: tuple[str, ...]) -> tuple[int | None, dict[str, Any] | None]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, reading the row it conflicted with: (the new id, None), or
    (None, the stored row's id and `found_columns`), or (None, None) when the stored row is not visible yet (its
    transaction committed while this statement waited for it: read it again, in a statement of its own).

    On PostgreSQL one statement: a conflicting INSERT … ON CONFLICT DO NOTHING writes nothing and takes no
    transaction id, so a transaction that only found its row commits without a write, and a look-up before
    the INSERT would be a statement more for every new row (docs/performance.md, change 20)."""
    keys = _column_keys(model)
    parameters = {keys[name]: value for name, value in values.items()}
    dialect = _dialect()
    table, conflict = model.__table__, tuple(conflict_columns)
    if dialect.name != "postgresql":
        new_id = insert_ignore(model, values, conflict_columns)
        if new_id is not None:
            return new_id, None
        return None, fetch_row(write_connection(), stored_row_statement(table, conflict, found_columns),
                               {name: parameters[name] for name in conflict})
    statement = insert_or_find_statement(table, conflict, tuple(sorted(parameters)), found_columns)
    compiled, converted = prepared(statement, parameters, dialect)
    cursor = _run(write_connection(), compiled, converted)
    row = cursor.fetchone()
    if row is None:
        return None, None
    found = _converted(compiled.results(cursor), row)
    return (found.pop("id"), None) if found.pop("inserted") else (None, found)


def insert_ignore_rows(model: type[Base], rows: list[dict[str, Any]], conflict_columns: list[str]) -> None:
    """INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING: rows of one table (all with the same keys) in one
    statement, each skipped when its row already exists, written later (`write_later`): nothing is read back.
    One statement instead of one per row: on SQLite the webhook's statements run inside the writer lock, on
    PostgreSQL each is a round trip."""
    if not rows:
        return
    keys = _column_keys(model)
    names = tuple(sorted(keys[name] for name in rows[0]))
    parameters = {f"{keys[name]}_{index}": value for index, row in enumerate(rows) for name, value in row.items()}
    dialect = _dialect()
    compiled = _driver_statement(insert_rows_statement(model.__table__, tuple(conflict_columns), names, len(rows),
                                                        dialect.name), dialect)
    _write_later(compiled, compiled.parameters(parameters))


@functools.lru_cache(maxsize=64)
def _column_keys(model: type[Base]) -> dict[str, str]:
    """The table column key of each mapped attribute name (`meta` → `metadata`)."""
    return {name: column.key for name, column in model.__mapper__.columns.items()}


class _DriverStatement:
    """A Core statement compiled once for a dialect: its SQL text, parameter order and bind processors."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        expanding = sorted(name for name, bind in compiled.binds.items() if bind.expanding)
        if expanding:
            # SQLAlchemy renders an expanding IN at execution; run as compiled it would be a syntax error, which
            # the database reports as an OperationalError, answered as "database down" (503) for ever.
            raise ValueError(f"an expanding IN ({', '.join(expanding)}) cannot run on the driver's cursor: "
                             "give its values as fixed literals")
        self.sql = compiled.string
        self.positional = dialect.positional
        self.names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        # The types of the compiled binds: a bindparam given without a type has taken its column's.
        self.processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                           for name, bind in compiled.binds.items()}
        # Values fixed in the statement itself (e.g. the 1 of `attempts + 1`).
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if bind.value is not None}
        self.dialect = dialect
        self.selected = list(getattr(statement, "selected_columns", ()))
        # The table an INSERT, UPDATE or DELETE writes: writes to distinct tables may go as one statement.
        self.target = statement.table if getattr(statement, "is_dml", False) else None
        self._results: list[tuple[str, Any]] | None = None

    def results(self, cursor) -> list[tuple[str, Any]]:
        """A SELECT's columns, each with its type's conversion of what the driver gives (None: taken as it is);
        built on the first run, from the types the driver reported (psycopg's type OIDs). The cursor's
        description is read that once: psycopg builds it anew on each read (20 µs for the order's 24 columns)."""
        if self._results is None:
            self._results = [(column.key, column.type.dialect_impl(self.dialect).result_processor(self.dialect, code))
                             for column, (_name, code, *_rest) in zip(self.selected, cursor.description)]
        return self._results

    def parameters(self, given: dict[str, Any]):
        processors, fixed = self.processors, self.fixed
        values = {}
        for name in self.names:
            if name in given:
                value = given[name]
            elif name in fixed:
                value = fixed[name]
            else:
                # A column default or onupdate SQLAlchemy would compute at execution: not done on the driver.
                raise KeyError(f"no value given for {name!r} of: {self.sql}")
            processor = processors[name]
            values[name] = value if processor is None or value is None else processor(value)
        return [values[name] for name in self.names] if self.positional else values


@functools.lru_cache(maxsize=512)
def _driver_statement(statement, dialect) -> _DriverStatement:
    return _DriverStatement(statement, dialect)


def execute_on_driver(connection: Connection, statement, parameters: dict[str, Any]):
    """Run a prebuilt Core statement on the DBAPI cursor of `connection` (in its transaction); the cursor.

    The ingest path's statements go this way: SQLAlchemy's execution path (execution context, parameter and
    result processing, events) cost about twice the statement itself, and a webhook runs eight of them.
    Parameters are converted by the columns' own types (JSON, Money, UTC datetimes), so rows are stored
    exactly as through SQLAlchemy; driver errors are raised as SQLAlchemy's (IntegrityError, OperationalError …).
    """
    compiled = _driver_statement(statement, connection.dialect)
    return _run(connection, compiled, compiled.parameters(parameters))


def _run(connection: Connection, compiled: _DriverStatement, values):
    """The statement run on the connection's driver cursor; the cursor, to be read before the next statement.

    `connection` is a SQLAlchemy Connection or a write unit: what is used of it is its `dialect`, its pooled
    `connection` and `invalidate`."""
    pooled = connection.connection
    driver = pooled.driver_connection
    try:
        cursor = _statement_cursor(pooled, driver, connection.dialect.name)
        cursor.execute(compiled.sql, values)
        return cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _database_error(connection.dialect, driver, connection.invalidate, exc, compiled.sql, values) from exc


def run_all(connection, statements: list[tuple[_DriverStatement, Any]]) -> None:
    """Run compiled statements, each with its converted values, one after another on the connection."""
    for compiled, values in statements:
        _run(connection, compiled, values)


def commit_after(connection, statements: list[tuple[_DriverStatement, Any]]) -> None:
    """Run the statements, then commit the connection's transaction; on PostgreSQL all of it as one pipeline, one
    round trip, and writes to distinct tables as one statement. The first failure aborts the transaction: what
    follows it is skipped, nothing commits, and that failure is raised (as SQLAlchemy's error)."""
    driver = connection.connection.driver_connection
    try:
        if statements and connection.dialect.name == "postgresql":
            cursor = _statement_cursor(connection.connection, driver, "postgresql")
            with driver.pipeline():
                for sql, values in as_few_statements(statements):
                    cursor.execute(sql, values)
                driver.commit()
        else:
            run_all(connection, statements)
            driver.commit()
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _database_error(connection.dialect, driver, connection.invalidate, exc, "COMMIT") from exc


_NAMED_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def as_few_statements(statements: list[tuple[_DriverStatement, Any]]) -> list[tuple[str, Any]]:
    """PostgreSQL writes as (SQL, values) to execute: when each writes a table of its own, all of them as one
    data-modifying `WITH` statement, else each as it is.

    A statement costs the client and the server more than its rows (docs/performance.md, change 18). Each part of
    the `WITH` sees the transaction as it was before the statement, so none may read what another writes: writes
    to distinct tables by key, as a unit defers them, never do; two writes of the same table stay apart.
    """
    combined = _combined_statement(tuple(compiled for compiled, _values in statements))
    if combined is None:
        return [(compiled.sql, values) for compiled, values in statements]
    sql, names = combined
    return [(sql, [values[name] for (_compiled, values), part in zip(statements, names) for name in part])]


@functools.lru_cache(maxsize=64)
def _combined_statement(statements: tuple[_DriverStatement, ...]) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    """The one `WITH` statement of these writes, with positional placeholders, and the names of the values each
    part takes, in order; None when they may not be combined. Built once per sequence: a unit defers the same
    few sequences on every webhook, and rewriting the SQL for each was an eighth of its client's instructions
    (docs/performance.md, change 19)."""
    targets = [compiled.target for compiled in statements]
    if len(statements) < 2 or None in targets or len(set(targets)) < len(targets):
        return None
    parts = [f"w{index} AS ({_NAMED_PLACEHOLDER.sub('%s', compiled.sql)})" for index, compiled in enumerate(statements)]
    names = tuple(tuple(_NAMED_PLACEHOLDER.findall(compiled.sql)) for compiled in statements)
    return f"WITH {', '.join(parts)} SELECT 1", names


def _database_error(dialect, driver, invalidate: Callable[[Exception], None], exc: Exception,
                    statement: str | None = None, parameters: Any = None) -> DBAPIError:
    """The driver's error as SQLAlchemy's (OperationalError, IntegrityError …), the connection invalidated when the
    error says it is lost, so that callers answer it as any other (503 when the database is down)."""
    invalidated = dialect.is_disconnect(exc, driver, None)
    if invalidated:
        invalidate(exc)
    return DBAPIError.instance(statement, parameters, exc, dialect.loaded_dbapi.Error,
                               connection_invalidated=invalidated, dialect=dialect)


# Where a pooled PostgreSQL connection keeps its cursor.
_CURSOR = "gateway_cursor"


def _statement_cursor(pooled, driver, dialect: str):
    """A cursor to run one statement on: on PostgreSQL the connection's own, kept for its life.

    A psycopg cursor set up afresh for each statement cost 12–27 µs of CPU more than one executed again, and a
    new webhook runs nine; psycopg reads a result whole, so a kept cursor holds nothing on the server. On SQLite
    a cursor is a cheap C object, and one kept with a half-read SELECT would keep that statement's read snapshot
    open while the connection sits in the pool, holding back WAL checkpoints: a fresh one each time. The pool
    empties a connection's `info` when it connects again, so a replaced connection never gets the old cursor.
    """
    if dialect != "postgresql":
        return driver.cursor()
    info = pooled.info
    cursor = info.get(_CURSOR)
    if cursor is None:
        cursor = info[_CURSOR] = driver.cursor()
    return cursor


def fetch_row(connection: Connection, statement, parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a prebuilt Core SELECT, run on the driver's cursor in the connection's transaction, as
    {column key: value converted by the column's type}; None when there is none."""
    compiled = _driver_statement(statement, connection.dialect)
    cursor = _run(connection, compiled, compiled.parameters(parameters))
    row = cursor.fetchone()
    return None if row is None else _converted(compiled.results(cursor), row)


def fetch_rows(connection: Connection, statement, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of a prebuilt Core SELECT, as fetch_row gives one."""
    compiled = _driver_statement(statement, connection.dialect)
    cursor = _run(connection, compiled, compiled.parameters(parameters))
    rows = cursor.fetchall()
    return [_converted(compiled.results(cursor), row) for row in rows]


def _converted(results: list[tuple[str, Any]], row: tuple) -> dict[str, Any]:
    return {key: value if convert is None or value is None else convert(value)
            for (key, convert), value in zip(results, row)}


def checkout(engine: Engine):
    """A pooled DBAPI connection (its `driver_connection` is the driver's own); a failed connect raised as
    SQLAlchemy's error, which raw_connection() leaves unwrapped (Engine.connect() would wrap it)."""
    dialect = engine.dialect
    try:
        return engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=True,
                                  dialect=dialect) from exc


@functools.lru_cache(maxsize=64)
def _driver_sql(sql: str, dialect: str) -> str:
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def fetch_one(sql: str, parameters: tuple) -> tuple | None:
    """The first row of one SELECT (written with `?` placeholders) on the driver's own cursor.

    For the hot reads (GET /api/status, a repeated webhook's dedupe lookup): no SQLAlchemy execution path, which
    cost more than the query itself, and no transaction around the one statement, which is its own consistent
    snapshot. SQLite: the connection is in autocommit mode, so no lock is taken. PostgreSQL: the connection is
    switched to autocommit for the statement (a local switch in psycopg), one round trip in all; psycopg
    prepares the statement on the server once it has run a few times on the connection. Values come back as
    the driver gives them (the caller converts SQLite's text columns). Database errors are raised as
    SQLAlchemy's, so callers answer them as any other (503 when the database is down or locked).
    """
    engine = db.engine
    dialect = engine.dialect
    statement = _driver_sql(sql, dialect.name)
    connection = checkout(engine)
    driver = connection.driver_connection
    try:
        if dialect.name == "sqlite":
            return driver.execute(statement, parameters).fetchone()
        driver.autocommit = True
        try:
            return _statement_cursor(connection, driver, dialect.name).execute(statement, parameters).fetchone()
        finally:
            # Left in autocommit only when broken: then the pool's reset fails and it drops the connection.
            if driver.info.transaction_status == TransactionStatus.IDLE:
                driver.autocommit = False
    except dialect.loaded_dbapi.Error as exc:
        raise _database_error(dialect, driver, connection.invalidate, exc, statement, parameters) from exc
    finally:
        connection.close()
