"""Unbound database extensions, column types and the few dialect-specific helpers."""

from __future__ import annotations

import fcntl
import functools
import os
import select
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import simplejson
from flask_migrate import Migrate
from psycopg.pq import TransactionStatus
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, DateTime, Engine, MetaData, Numeric, String, Table, bindparam, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects stay loaded after commit: a refresh would open a new transaction,
# which on SQLite (BEGIN IMMEDIATE) holds the write lock, e.g. across a provider call.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()


# Execution option marking a connection that never writes (see `reading`).
READ_ONLY = "gateway_read_only"

# Larger than any database this single-machine setup is meant for; SQLite maps only what the file holds.
SQLITE_MMAP_BYTES = 1 << 30

# PostgreSQL: a pooled connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
_IDLE_SINCE = "gateway_idle_since"

# Table ids are 32-bit INTEGER on PostgreSQL: a larger number in a URL can name no row.
ROW_ID_MAX = 2**31 - 1

# Errors meaning "the database cannot be reached, is locked, or has no free pooled connection":
# answer 503 and let the caller retry (never store a provider's event as failed because of them).
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


class Money(TypeDecorator):
    """Exact decimal amounts: NUMERIC on PostgreSQL, canonical text on SQLite (which has no decimal type)."""

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(28, 8))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Decimal | None, dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"Money columns take Decimal, not {type(value).__name__}")
        return value if dialect.name == "postgresql" else format(value, "f")

    def process_result_value(self, value: Any, dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class _LockWaitExpired(Exception):
    """Raised by the SIGALRM handler to interrupt a blocking flock() at the end of the allowed wait."""


def _expired(_signum, _frame):
    raise _LockWaitExpired


class WriterLock:
    """The process-shared lock that serialises SQLite write transactions: flock() on a file beside the database.

    With several gunicorn workers, writers that find SQLite's write lock taken sleep in its busy handler
    (1, 2, 5, 10 … 100 ms) and retry, so the lock sits idle while they sleep and an unlucky waiter can wait for
    a second (bench: p99 0.5-1.3 s). Taken before BEGIN IMMEDIATE, this lock makes them queue in the kernel
    instead: the next writer is woken as soon as the previous one commits. flock() belongs to the open file
    description, so every connection opens its own descriptor (threads of one process exclude each other too),
    and the kernel releases it when a process dies, so a killed worker cannot leave it held.
    The wait is bounded like any other lock wait (DATABASE_LOCK_TIMEOUT_SECONDS): then sqlite3.OperationalError,
    which the caller answers as 503 with Retry-After. SQLite's own busy timeout stays as the backstop for
    writers that do not take this lock (other tools, migrations run by hand).
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self.held = False

    @classmethod
    def beside(cls, database: Any) -> WriterLock | None:
        """The lock of the database file `database` as given to sqlite3.connect; None for in-memory databases."""
        name = os.fsdecode(database)
        if name.startswith("file:"):
            name, _, query = name[len("file:"):].partition("?")
            if "mode=memory" in query:
                return None
        if not name or name == ":memory:":
            return None
        return cls(name + "-writer.lock")

    def acquire(self, wait: float) -> None:
        """Take the lock, waiting at most `wait` seconds (sqlite3.OperationalError when it is still held)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._wait(wait):
                raise sqlite3.OperationalError(
                    f"database is locked (the writer lock was held elsewhere for {wait:g} s)") from None
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _wait(self, wait: float) -> bool:
        # A blocking flock() bounded by an interval timer where that is safe: the main thread (a sync gunicorn
        # worker's request runs there), with SIGALRM and the timer unused by anyone else. Elsewhere (threads,
        # a test runner's own alarm) the lock is polled at short intervals.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN)
                and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)):
            return self._wait_blocking(wait)
        return self._poll(wait)

    def _wait_blocking(self, wait: float) -> bool:
        previous = signal.signal(signal.SIGALRM, _expired)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, max(wait, 0.001))
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return True
        except _LockWaitExpired:
            # The alarm may ring just as flock() returned: then the lock is ours, and taking it again is a no-op.
            return self._try()
        finally:
            signal.signal(signal.SIGALRM, previous)

    def _poll(self, wait: float) -> bool:
        deadline, pause = time.monotonic() + wait, 0.0005
        while time.monotonic() < deadline:
            time.sleep(pause)
            if self._try():
                return True
            pause = min(pause * 2, 0.005)
        return self._try()

    def _try(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False


class SQLiteConnection(sqlite3.Connection):
    """The driver's connection on SQLite: write transactions take the WriterLock before BEGIN IMMEDIATE and let go
    of it once they end (commit, rollback or close)."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.writer_lock = WriterLock.beside(database)
        self.lock_wait = kwargs.get("timeout", 5.0)

    def begin(self, *, write: bool) -> None:
        if not write:
            self.execute("BEGIN")
            return
        lock = self.writer_lock
        if lock is not None:
            lock.acquire(self.lock_wait)
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.close()


def engine_options(database_url: str, pool_size: int, lock_timeout: float) -> dict[str, Any]:
    """Engine settings per backend: survive database restarts; wait for a lock or a pooled connection
    at most `lock_timeout` seconds, then fail (OperationalError / pool TimeoutError: a 503 to retry)."""
    # JSON columns hold exact decimals (amounts in metadata and event payloads), never floats.
    json_options = {"json_serializer": functools.partial(simplejson.dumps, use_decimal=True),
                    "json_deserializer": functools.partial(simplejson.loads, use_decimal=True)}
    if database_url.startswith("sqlite"):
        return {**json_options, "connect_args": {"timeout": lock_timeout, "check_same_thread": False,
                                                 "factory": SQLiteConnection}}
    # PostgreSQL waits for a row lock forever unless told otherwise. Given as a startup option, so it holds
    # for the whole session (a SET on connect would be undone by the pool's first rollback).
    # No pool_pre_ping: its SELECT 1 was a round trip (and a transaction begun) on every checkout, i.e. every
    # request; configure_engine pings only connections that sat idle (see IDLE_PING_SECONDS).
    return {**json_options, "pool_size": pool_size, "max_overflow": 5,
            "pool_timeout": lock_timeout,
            "connect_args": {"connect_timeout": 5, "options": f"-c lock_timeout={round(lock_timeout * 1000)}"}}


def configure_engine(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE so concurrent writers queue instead of failing.
    PostgreSQL: a connection that sat idle is pinged before use, so a restarted server costs no request."""
    if engine.dialect.name == "postgresql":
        _ping_idle_connections(engine)
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # pysqlite's own BEGIN is deferred; a deferred reader that later writes
        # gets SQLITE_BUSY at once instead of waiting, so we issue BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Pages read through a memory map: each gunicorn worker's page cache is dropped whenever another
        # worker commits, and re-reading pages by read() cost a quarter of a webhook's CPU (bench/README.md).
        # Writes and fsyncs are unchanged, so durability is too.
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A reader takes no lock: in WAL mode it sees a consistent snapshot beside the one writer.
        # Sent on the driver's connection: SQLAlchemy's execution path cost more than the statement.
        write = not connection.get_execution_options().get(READ_ONLY)
        driver_connection = connection.connection.driver_connection
        try:
            if isinstance(driver_connection, SQLiteConnection):
                driver_connection.begin(write=write)
            else:
                driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            statement = "BEGIN IMMEDIATE" if write else "BEGIN"
            # Bypassing SQLAlchemy skips its wrapping too: wrap here, so a lock wait that ran out is a
            # DATABASE_DOWN error (503, retry) like any other, not an unexpected one.
            raise OperationalError(statement, None, exc) from exc


def _ping_idle_connections(engine: Engine) -> None:
    # pool_pre_ping's SELECT 1 on every checkout cost a quarter of a status read (bench/README.md). Instead a
    # pooled connection is pinged only when there is reason to doubt it: the server has sent something while it
    # sat idle (a server that shuts down or crashes closes its sockets, which makes them readable: one poll()
    # system call, no round trip), or it sat idle long enough for a silent loss (IDLE_PING_SECONDS). Raising
    # DisconnectionError at checkout makes the pool drop the connection and hand out a fresh one. (A server lost
    # while a connection is in use fails that request as 503, and SQLAlchemy then invalidates the whole pool.)
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or (time.monotonic() - idle_since < IDLE_PING_SECONDS
                                  and not _server_spoke(dbapi_connection)):
            return
        try:
            dbapi_connection.autocommit = True
            try:
                dbapi_connection.execute("SELECT 1")
            finally:
                dbapi_connection.autocommit = False
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection lost while idle: {type(exc).__name__}") from exc


def _server_spoke(dbapi_connection) -> bool:
    """Whether an idle psycopg connection's socket has input (a notice, an error, or EOF) or is gone."""
    try:
        socket_fd = dbapi_connection.pgconn.socket
    except Exception:  # closed or broken: psycopg raises when there is no socket
        return True
    poller = select.poll()
    poller.register(socket_fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def insert_ignore(model: type[Base], values: dict[str, Any], conflict_columns: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the new id, or None when the row already existed."""
    columns = model.__mapper__.columns
    parameters = {columns[name].key: value for name, value in values.items()}
    connection = db.session.connection()
    statement = _insert_ignore_statement(model.__table__, tuple(conflict_columns), tuple(sorted(parameters)),
                                         connection.dialect.name)
    row = execute_on_driver(connection, statement, parameters).fetchone()
    return None if row is None else row[0]


@functools.lru_cache(maxsize=256)
def _insert_ignore_statement(table: Table, conflict_columns: tuple[str, ...], keys: tuple[str, ...], dialect: str):
    # Built once per shape with bound parameters: rebuilding the statement per call was a third of a webhook's CPU.
    module = postgresql if dialect == "postgresql" else sqlite
    return (module.insert(table).values({key: bindparam(key, type_=table.c[key].type) for key in keys})
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(table.c.id))


class _DriverStatement:
    """A Core statement compiled once for a dialect: its SQL text, parameter order and bind processors."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = dialect.positional
        self.names = list(compiled.positiontup) if self.positional else list(compiled.binds)
        # The types of the compiled binds: a bindparam given without a type has taken its column's.
        self.processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                           for name, bind in compiled.binds.items()}
        # Values fixed in the statement itself (e.g. the 1 of `attempts + 1`).
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if bind.value is not None}

    def parameters(self, given: dict[str, Any]):
        processors, fixed = self.processors, self.fixed
        values = {}
        for name in self.names:
            value = given[name] if name in given else fixed.get(name)
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
    dialect = connection.dialect
    compiled = _driver_statement(statement, dialect)
    values = compiled.parameters(parameters)
    driver = connection.connection.driver_connection
    try:
        cursor = driver.cursor()
        cursor.execute(compiled.sql, values)
        return cursor
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, driver, None)
        if invalidated:
            connection.invalidate(exc)
        raise DBAPIError.instance(compiled.sql, values, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated, dialect=dialect) from exc


@contextmanager
def reading() -> Iterator[Connection]:
    """A Core connection for a request that only reads: no ORM session, and no write lock on SQLite."""
    with db.engine.connect() as connection:
        yield connection.execution_options(**{READ_ONLY: True})


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
    try:
        # raw_connection() leaves a failed connect unwrapped (Engine.connect() would wrap it).
        connection = engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=True,
                                  dialect=dialect) from exc
    driver = connection.driver_connection
    try:
        if dialect.name == "sqlite":
            return driver.execute(statement, parameters).fetchone()
        driver.autocommit = True
        try:
            return driver.execute(statement, parameters).fetchone()
        finally:
            # Left in autocommit only when broken: then the pool's reset fails and it drops the connection.
            if driver.info.transaction_status == TransactionStatus.IDLE:
                driver.autocommit = False
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, driver, None)
        if invalidated:
            connection.invalidate(exc)
        raise DBAPIError.instance(statement, parameters, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated, dialect=dialect) from exc
    finally:
        connection.close()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
