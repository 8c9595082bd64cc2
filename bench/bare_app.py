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
- `POST /bare/shape` runs a new webhook's statements and nothing else: the look-up of its key outside any
  transaction, then in one committed transaction the event's conflict-ignoring INSERT, the locked read and
  UPDATE of a row, three more conflict-ignoring INSERTs (the last one of two rows, as the outbox's merchant
  event and buyer message are queued together) and the event's UPDATE, as services/events.py runs them:
  each its own round trip until the fulfilment claim, then on PostgreSQL the last three with the COMMIT in one
  pipeline (services/unit.py). Not a target's floor: it tells how much of a webhook's cost the statements
  SPEC §5 asks for take by themselves, before any of the gateway's own work.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from urllib.parse import urlsplit

import psycopg
from flask import Flask, request

app = Flask(__name__)
TABLE = "bench_bare_writes"
SHAPE_TABLE = "bench_bare_shape"
# The rows a new webhook adds after its event, statement by statement: fulfilment claim, ledger entry, then
# both outbox rows in one statement.
SHAPE_ROWS = (("fulfilment",), ("ledger",), ("merchant", "buyer"))
_shape_keys = itertools.count()
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
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SHAPE_TABLE} (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
                           "key TEXT NOT NULL, state TEXT NOT NULL, body BLOB NOT NULL, UNIQUE (kind, key))")
    else:
        with connection.transaction():
            connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id SERIAL PRIMARY KEY, body BYTEA NOT NULL)")
            connection.execute(f"INSERT INTO {TABLE} (body) VALUES (%s)", (b'{"success": true}',))
            connection.execute(f"CREATE TABLE IF NOT EXISTS {SHAPE_TABLE} (id SERIAL PRIMARY KEY, kind TEXT NOT NULL, "
                               "key TEXT NOT NULL, state TEXT NOT NULL, body BYTEA NOT NULL, UNIQUE (kind, key))")
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


@app.post("/bare/shape")
def bare_shape():
    body, connection = request.get_data(), _connection()
    key = f"{os.getpid()}-{next(_shape_keys)}"
    if isinstance(connection, sqlite3.Connection):
        _shape_look_up(connection, "?", key)
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement, values in _shape_writes(connection, "?", "", body, key):
                connection.execute(statement, values)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    else:
        # As services/driver.py: fetch_one: the look-up in autocommit, one round trip.
        connection.autocommit = True
        _shape_look_up(connection, "%s", key)
        connection.autocommit = False
        try:
            unread = _shape_writes(connection, "%s", " FOR UPDATE", body, key)
            # As services/unit.py: the writes nobody reads back go with the COMMIT, one pipeline.
            with connection.pipeline():
                for statement, values in unread:
                    connection.execute(statement, values)
                connection.commit()
        except BaseException:
            connection.rollback()
            raise
    return {"success": True}


def _shape_look_up(connection, mark: str, key: str) -> None:
    seen = connection.execute(f"SELECT id, state FROM {SHAPE_TABLE} WHERE kind = {mark} AND key = {mark}",
                              ("event", key)).fetchone()
    if seen is not None:
        raise RuntimeError(f"shape key {key} used twice")


def _shape_writes(connection, mark: str, lock: str, body: bytes, key: str) -> list[tuple[str, tuple]]:
    """Run the statements whose answer a webhook reads (the event's id, the locked row, the claim); return those
    it does not read (the ledger entry, the outbox rows, the event's outcome) for the caller to send."""
    event = connection.execute(_shape_insert(mark, 1) + " RETURNING id", ("event", key, body)).fetchone()[0]
    connection.execute(f"SELECT id, state FROM {SHAPE_TABLE} WHERE id = {mark}{lock}", (event,)).fetchone()
    connection.execute(f"UPDATE {SHAPE_TABLE} SET state = 'paid' WHERE id = {mark}", (event,))
    claim, *unread_rows = SHAPE_ROWS
    connection.execute(_shape_insert(mark, len(claim)) + " RETURNING id", _shape_values(claim, key)).fetchone()
    return [(_shape_insert(mark, len(kinds)), _shape_values(kinds, key)) for kinds in unread_rows] + \
        [(f"UPDATE {SHAPE_TABLE} SET state = 'processed' WHERE id = {mark}", (event,))]


def _shape_values(kinds: tuple[str, ...], key: str) -> tuple:
    return tuple(value for kind in kinds for value in (kind, key, b'{"kind": "%s"}' % kind.encode()))


def _shape_insert(mark: str, rows: int) -> str:
    values = ", ".join([f"({mark}, {mark}, 'new', {mark})"] * rows)
    return f"INSERT INTO {SHAPE_TABLE} (kind, key, state, body) VALUES {values} ON CONFLICT DO NOTHING"
