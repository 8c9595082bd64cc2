"""Database connection settings."""

from __future__ import annotations

import pytest

from services.db import SQLITE_MMAP_BYTES, db


def test_sqlite_connections_use_wal_foreign_keys_and_a_memory_map(app):
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite connection settings")
        pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "foreign_keys", "mmap_size")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "mmap_size": SQLITE_MMAP_BYTES}
