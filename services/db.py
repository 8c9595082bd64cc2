"""Unbound database extensions, column types and the few dialect-specific helpers."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import simplejson
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, DateTime, Engine, MetaData, Numeric, String, Table, bindparam, event
from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError as PoolTimeout
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


def engine_options(database_url: str, pool_size: int, lock_timeout: float) -> dict[str, Any]:
    """Engine settings per backend: survive database restarts; wait for a lock or a pooled connection
    at most `lock_timeout` seconds, then fail (OperationalError / pool TimeoutError: a 503 to retry)."""
    # JSON columns hold exact decimals (amounts in metadata and event payloads), never floats.
    json_options = {"json_serializer": functools.partial(simplejson.dumps, use_decimal=True),
                    "json_deserializer": functools.partial(simplejson.loads, use_decimal=True)}
    if database_url.startswith("sqlite"):
        return {**json_options, "connect_args": {"timeout": lock_timeout, "check_same_thread": False}}
    # PostgreSQL waits for a row lock forever unless told otherwise. Given as a startup option, so it holds
    # for the whole session (a SET on connect would be undone by the pool's first rollback).
    return {**json_options, "pool_pre_ping": True, "pool_size": pool_size, "max_overflow": 5,
            "pool_timeout": lock_timeout,
            "connect_args": {"connect_timeout": 5, "options": f"-c lock_timeout={round(lock_timeout * 1000)}"}}


def configure_engine(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE so concurrent writers queue instead of failing."""
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
        statement = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        try:
            connection.connection.driver_connection.execute(statement)
        except sqlite3.OperationalError as exc:
            # Bypassing SQLAlchemy skips its wrapping too: wrap here, so a lock wait that ran out is a
            # DATABASE_DOWN error (503, retry) like any other, not an unexpected one.
            raise OperationalError(statement, None, exc) from exc


def insert_ignore(model: type[Base], values: dict[str, Any], conflict_columns: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the new id, or None when the row already existed."""
    columns = model.__mapper__.columns
    parameters = {columns[name].key: value for name, value in values.items()}
    # A Core statement on the session's connection: the same transaction, without the ORM execute path.
    connection = db.session.connection()
    statement = _insert_ignore_statement(model.__table__, tuple(conflict_columns), tuple(sorted(parameters)),
                                         connection.dialect.name)
    return connection.execute(statement, parameters).scalar_one_or_none()


@functools.lru_cache(maxsize=256)
def _insert_ignore_statement(table: Table, conflict_columns: tuple[str, ...], keys: tuple[str, ...], dialect: str):
    # Built once per shape with bound parameters: rebuilding the statement per call was a third of a webhook's CPU.
    module = postgresql if dialect == "postgresql" else sqlite
    return (module.insert(table).values({key: bindparam(key, type_=table.c[key].type) for key in keys})
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(table.c.id))


@contextmanager
def reading() -> Iterator[Connection]:
    """A Core connection for a request that only reads: no ORM session, and no write lock on SQLite."""
    with db.engine.connect() as connection:
        yield connection.execution_options(**{READ_ONLY: True})


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
