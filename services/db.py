"""The database extension, its column types, transactions and the errors that mean "database unavailable".

The engine's per-backend setup is services/db_engine.py (with the SQLite writer lock, services/sqlite_writer.py);
the hot paths' statements on the driver's own cursor are services/driver.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, DateTime, MetaData, Numeric, String
from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError as PoolTimeout
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

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # SQLite stores the text SQLAlchemy's DATETIME writes ("YYYY-MM-DD HH:MM:SS.ffffff", UTC), made here by
        # isoformat rather than its format through a dict: a paid webhook binds the same `now` about a dozen times
        # inside the writer lock, and the generic chain was a twentieth of the lock's hold. The last value is
        # remembered by identity: datetimes are immutable, so the same object always gives the same text.
        last: tuple[datetime, str] | None = None

        def process(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            remembered = last
            if remembered is not None and remembered[0] is value:
                return remembered[1]
            text = self.process_bind_param(value, dialect).isoformat(" ", "microseconds")
            last = (value, text)
            return text

        return process

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@contextmanager
def reading() -> Iterator[Connection]:
    """A Core connection for a request that only reads: no ORM session, and no write lock on SQLite."""
    with db.engine.connect() as connection:
        yield connection.execution_options(**{READ_ONLY: True})


def session_in_use() -> Session | None:
    """The ORM session of this request or app context if something has used it, else None.

    Asking `db.session()` makes one, which the context's teardown then closes: on a webhook received in front of
    Flask that pair cost about a twentieth of its CPU (docs/performance.md, change 19), for a session never used.
    """
    return db.session() if db.session.registry.has() else None


def expire_loaded(model: type[Base], pk: int) -> None:
    """After a write past the ORM (Core or the driver's cursor): an ORM copy of that row the session holds,
    if any, reloads on its next access instead of showing the row as it was."""
    session = session_in_use()
    # Nothing is loaded on the webhook path: skip building the identity key.
    if session is not None and session.identity_map:
        loaded = session.identity_map.get(session.identity_key(model, pk))
        if loaded is not None:
            session.expire(loaded)


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
