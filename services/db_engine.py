"""Engine settings per backend: SQLite in WAL with BEGIN IMMEDIATE behind the writer lock; PostgreSQL with bounded
lock and pool waits and a ping only for connections that sat idle."""

from __future__ import annotations

import functools
import select
import sqlite3
import time
from decimal import Decimal
from typing import Any

import simplejson
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError

from services.db import READ_ONLY
from services.sqlite_writer import SQLiteConnection

# Larger than any database this single-machine setup is meant for; SQLite maps only what the file holds.
SQLITE_MMAP_BYTES = 1 << 30
# PostgreSQL: a pooled connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
_IDLE_SINCE = "gateway_idle_since"
# simplejson.loads(text, use_decimal=True) builds a decoder on every call: a webhook reads several JSON columns.
_JSON_COLUMN_DECODER = simplejson.JSONDecoder(parse_float=Decimal)

def engine_options(database_url: str, pool_size: int, lock_timeout: float) -> dict[str, Any]:
    """Engine settings per backend: survive database restarts; wait for a lock or a pooled connection
    at most `lock_timeout` seconds, then fail (OperationalError / pool TimeoutError: a 503 to retry)."""
    # JSON columns hold exact decimals (amounts in metadata and event payloads), never floats.
    json_options = {"json_serializer": functools.partial(simplejson.dumps, use_decimal=True),
                    "json_deserializer": _JSON_COLUMN_DECODER.decode}
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
        begin_sqlite(connection.connection.driver_connection, write=write)


def begin_sqlite(driver_connection, *, write: bool) -> None:
    """BEGIN IMMEDIATE behind the writer lock for a write transaction, BEGIN for a read."""
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
