"""The column types of services/db.py: UTC datetimes and exact amounts, stored the same on every path."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from services.audit import AuditLog
from services.db import UTCDateTime, db, transaction

SQLITE = sqlite.dialect()
MOSCOW = timezone(timedelta(hours=3))


def generic_sqlite_text(value: datetime) -> str:
    """What SQLAlchemy's own chain stores on SQLite: process_bind_param, then its DATETIME format."""
    naive = UTCDateTime().process_bind_param(value, SQLITE)
    return sqlite.DATETIME().bind_processor(SQLITE)(naive)


@pytest.mark.parametrize("value", [
    datetime(2026, 12, 4, 22, 44, 9, 123456, tzinfo=timezone.utc),
    datetime(2026, 12, 5, 1, 44, 9, tzinfo=MOSCOW),  # another zone, whole seconds, a day back in UTC
    datetime(999, 1, 1, tzinfo=timezone.utc),  # a three-digit year is still padded to four
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
])
def test_sqlite_binds_the_text_sqlalchemy_would_store(value):
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert process(value) == generic_sqlite_text(value)
    assert process(value) == generic_sqlite_text(value)  # the remembered text, asked again


def test_the_remembered_text_belongs_to_the_same_object_only():
    process = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    first = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    assert process(first) == "2026-12-04 12:00:00.000000"
    # Equal to `first` as an instant but written in another zone, then a different instant: each converted.
    assert process(first.astimezone(MOSCOW)) == "2026-12-04 12:00:00.000000"
    assert process(first + timedelta(microseconds=1)) == "2026-12-04 12:00:00.000001"
    assert process(None) is None


@pytest.mark.parametrize("dialect", [SQLITE, postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_a_naive_datetime_is_refused_on_every_backend(dialect):
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 12, 4, 12, 0))


def test_a_datetime_from_another_zone_is_stored_and_read_back_as_utc(app):
    moment = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=MOSCOW)
    with app.app_context():
        with transaction():
            entry = AuditLog(at=moment, actor="test", action="types", target="t", details={})
            db.session.add(entry)
        with transaction():
            stored = db.session.execute(text("SELECT at FROM audit_log WHERE id = :id"), {"id": entry.id}).scalar()
            db.session.expunge_all()
            loaded = db.session.get(AuditLog, entry.id)
        if db.engine.dialect.name == "sqlite":
            assert stored == "2026-12-04 22:02:03.456789"
    assert loaded.at == moment and loaded.at.tzinfo == timezone.utc
