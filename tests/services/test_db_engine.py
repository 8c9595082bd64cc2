"""Database connection settings."""

from __future__ import annotations

import pytest

from services.db import db
from services.db_engine import SQLITE_MMAP_BYTES


def test_sqlite_connections_use_wal_foreign_keys_and_a_memory_map(app):
    with app.app_context(), db.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite connection settings")
        pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "foreign_keys", "mmap_size")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "mmap_size": SQLITE_MMAP_BYTES}


def test_postgresql_pool_is_sized_from_the_settings(make_app):
    app = make_app(GUNICORN_THREADS="7", PANEL_REFRESH_CONCURRENCY="2")
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite opens connections as it needs them")
        assert db.engine.pool.size() == app.config["SETTINGS"].database_pool_size == 10
