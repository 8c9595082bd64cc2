"""A guard for every test: no outbound HTTP request may leave while its thread holds a database connection.

A pooled connection is checked out exactly while a transaction is open on it (the session returns it on
commit or rollback). Holding one across a network call keeps SQLite's write lock (every transaction is
BEGIN IMMEDIATE) or a PostgreSQL connection idle in transaction, with its row locks, for the whole call.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import requests
from sqlalchemy import event
from sqlalchemy.pool import Pool

_EVENTS = ("checkout", "checkin", "detach")


class ConnectionHeldAcrossRequest:
    """Records each request sent while the sending thread holds a pooled connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[int, int] = {}
        self.violations: list[str] = []

    def _checkout(self, _dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        with self._lock:
            self._holders[id(record)] = threading.get_ident()

    def _checkin(self, _dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._holders.pop(id(record), None)

    def _detach(self, _dbapi_connection: Any, record: Any) -> None:
        self._checkin(None, record)

    def held_by_current_thread(self) -> int:
        me = threading.get_ident()
        with self._lock:
            return sum(1 for thread in self._holders.values() if thread == me)

    def check(self, request: requests.PreparedRequest) -> None:
        held = self.held_by_current_thread()
        if held:
            stack = "".join(traceback.format_stack(limit=25)[:-2])
            self.violations.append(f"{request.method} {request.url} sent while this thread held {held} "
                                   f"database connection(s) (an open transaction):\n{stack}")

    def __enter__(self) -> ConnectionHeldAcrossRequest:
        event.listen(Pool, "checkout", self._checkout)
        event.listen(Pool, "checkin", self._checkin)
        event.listen(Pool, "detach", self._detach)
        guard = self
        self._send = original = requests.Session.send

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any):
            guard.check(request)
            return original(session, request, **kwargs)

        requests.Session.send = send
        return self

    def __exit__(self, *_exc: Any) -> None:
        requests.Session.send = self._send
        event.remove(Pool, "checkout", self._checkout)
        event.remove(Pool, "checkin", self._checkin)
        event.remove(Pool, "detach", self._detach)
