"""The benchmark's baselines answer and really read and write the database they are given."""

from __future__ import annotations

import sqlite3

from sqlalchemy import create_engine, text

from bench import bare_app


def test_read_and_write_floors_use_the_database(tmp_path, monkeypatch):
    path = tmp_path / "bench.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setattr(bare_app, "_connections", {})
    bare_app.create_table()
    client = bare_app.app.test_client()

    assert client.get("/bare").get_json() == {"success": True}
    assert client.get("/bare/read").get_json() == {"success": True, "bytes": len(b'{"success": true}')}
    assert client.post("/bare/write", data=b'{"n": 1}', content_type="application/json").status_code == 200

    stored = sqlite3.connect(path).execute(f"SELECT body FROM {bare_app.TABLE} ORDER BY id").fetchall()
    assert stored == [(b'{"success": true}',), (b'{"n": 1}',)]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)



def test_shape_runs_a_webhooks_statements_and_commits_them(database_url, monkeypatch):
    """On the suite's database (SQLite, or PostgreSQL with its FOR UPDATE and autocommit look-up)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    connections = {}
    monkeypatch.setattr(bare_app, "_connections", connections)
    bare_app.create_table()
    client = bare_app.app.test_client()
    try:
        for _ in range(2):
            assert client.post("/bare/shape", data=b'{"n": 1}', content_type="application/json").status_code == 200
    finally:
        for connection in connections.values():
            connection.close()

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT kind, state, body FROM {bare_app.SHAPE_TABLE} ORDER BY id")).all()
    finally:
        # The suite's database must hold the migrated schema alone (tests/test_migrations.py compares them).
        with engine.begin() as connection:
            for table in (bare_app.SHAPE_TABLE, bare_app.TABLE):
                connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    assert [(kind, state, bytes(body)) for kind, state, body in rows if kind == "event"] == \
        [("event", "processed", b'{"n": 1}')] * 2
    assert sorted(kind for kind, _state, _body in rows if kind != "event") == \
        sorted(["fulfilment", "ledger", "merchant", "buyer"] * 2)
