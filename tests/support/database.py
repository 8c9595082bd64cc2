"""The test database: SQLite in a temporary file always, PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

from services.db import db


def test_database_url(tmp_dir) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_dir / 'test.db'}"


def reset_schema(url: str) -> None:
    """Start from an empty database so the migrations build every table."""
    if not url.startswith("postgresql"):
        return
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def empty_tables() -> None:
    """Delete every row (children first), keeping the migrated schema."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()
