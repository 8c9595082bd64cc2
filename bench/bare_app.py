"""The benchmark baselines: a bare Flask app served like the real one.

`gunicorn -c gunicorn.conf.py bench.bare_app:app` runs it with the gateway's own gunicorn settings
(worker class, worker count, recycling, logging), so the ratio of an endpoint's throughput to this
one's is what the gateway's own code costs on top of Flask and gunicorn.

- `GET /bare` answers a constant: Flask and gunicorn alone.
- `GET /bare/read` reads one stored row by its key through the bare driver: the floor for a
  lookup such as GET /api/status.
- `POST /bare/write` stores the raw body in one committed transaction through the bare driver
  (sqlite3 or psycopg, on DATABASE_URL, with the gateway's durability settings): the floor for any
  endpoint that must commit before it answers, as a webhook must.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

import psycopg
from flask import Flask, request

app = Flask(__name__)
TABLE = "bench_bare_writes"
_connections: dict[int, sqlite3.Connection | psycopg.Connection] = {}


def _connect() -> sqlite3.Connection | psycopg.Connection:
    url = os.environ["DATABASE_URL"]
    if url.startswith("sqlite"):
        # As services/db.py: WAL, autocommit driver mode so BEGIN IMMEDIATE is ours, default synchronous (FULL).
        connection = sqlite3.connect(urlsplit(url).path.removeprefix("/"), timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))


def _connection() -> sqlite3.Connection | psycopg.Connection:
    """One connection per worker process, opened after gunicorn forked it."""
    pid = os.getpid()
    if pid not in _connections:
        _connections[pid] = _connect()
    return _connections[pid]


def create_table() -> None:
    """The table both endpoints use, with the row /bare/read looks up (id 1)."""
    connection = _connect()
    if isinstance(connection, sqlite3.Connection):
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        connection.execute(f"INSERT INTO {TABLE} (body) VALUES (?)", (b'{"success": true}',))
    else:
        with connection.transaction():
            connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id SERIAL PRIMARY KEY, body BYTEA NOT NULL)")
            connection.execute(f"INSERT INTO {TABLE} (body) VALUES (%s)", (b'{"success": true}',))
    connection.close()


@app.get("/bare")
def bare():
    return {"success": True}


@app.get("/bare/read")
def bare_read():
    connection = _connection()
    if isinstance(connection, sqlite3.Connection):
        body = connection.execute(f"SELECT body FROM {TABLE} WHERE id = ?", (1,)).fetchone()[0]
    else:
        with connection.transaction():
            body = connection.execute(f"SELECT body FROM {TABLE} WHERE id = %s", (1,)).fetchone()[0]
    return {"success": True, "bytes": len(body)}


@app.post("/bare/write")
def bare_write():
    body, connection = request.get_data(), _connection()
    if isinstance(connection, sqlite3.Connection):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"INSERT INTO {TABLE} (body) VALUES (?)", (body,))
        connection.execute("COMMIT")
    else:
        with connection.transaction():
            connection.execute(f"INSERT INTO {TABLE} (body) VALUES (%s)", (body,))
    return {"success": True}
