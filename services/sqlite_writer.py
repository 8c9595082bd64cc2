"""SQLite write transactions queued on a lock file, so that gunicorn workers wait in the kernel, not in a busy loop."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import threading
import time
from typing import Any


class _LockWaitExpired(Exception):
    """Raised by the SIGALRM handler to interrupt a blocking flock() at the end of the allowed wait."""


def _expired(_signum, _frame):
    raise _LockWaitExpired


class WriterLock:
    """The process-shared lock that serialises SQLite write transactions: flock() on a file beside the database.

    With several gunicorn workers, writers that find SQLite's write lock taken sleep in its busy handler
    (1, 2, 5, 10 … 100 ms) and retry, so the lock sits idle while they sleep and an unlucky waiter can wait for
    a second (bench: p99 0.5-1.3 s). Taken before BEGIN IMMEDIATE, this lock makes them queue in the kernel
    instead: the next writer is woken as soon as the previous one commits. flock() belongs to the open file
    description, so every connection opens its own descriptor (threads of one process exclude each other too),
    and the kernel releases it when a process dies, so a killed worker cannot leave it held.
    The wait is bounded like any other lock wait (DATABASE_LOCK_TIMEOUT_SECONDS): then sqlite3.OperationalError,
    which the caller answers as 503 with Retry-After. SQLite's own busy timeout stays as the backstop for
    writers that do not take this lock (other tools, migrations run by hand).
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self.held = False

    @classmethod
    def beside(cls, database: Any) -> WriterLock | None:
        """The lock of the database file `database` as given to sqlite3.connect; None for in-memory databases."""
        name = os.fsdecode(database)
        if name.startswith("file:"):
            name, _, query = name[len("file:"):].partition("?")
            if "mode=memory" in query:
                return None
        if not name or name == ":memory:":
            return None
        return cls(name + "-writer.lock")

    def acquire(self, wait: float) -> None:
        """Take the lock, waiting at most `wait` seconds (sqlite3.OperationalError when it is still held)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._wait(wait):
                raise sqlite3.OperationalError(
                    f"database is locked (the writer lock was held elsewhere for {wait:g} s)") from None
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _wait(self, wait: float) -> bool:
        # A blocking flock() bounded by an interval timer where that is safe: the main thread (a sync gunicorn
        # worker's request runs there), with SIGALRM and the timer unused by anyone else. Elsewhere (threads,
        # a test runner's own alarm) the lock is polled at short intervals.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN)
                and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)):
            return self._wait_blocking(wait)
        return self._poll(wait)

    def _wait_blocking(self, wait: float) -> bool:
        previous = signal.signal(signal.SIGALRM, _expired)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, max(wait, 0.001))
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return True
        except _LockWaitExpired:
            # The alarm may ring just as flock() returned: then the lock is ours, and taking it again is a no-op.
            return self._try()
        finally:
            signal.signal(signal.SIGALRM, previous)

    def _poll(self, wait: float) -> bool:
        deadline, pause = time.monotonic() + wait, 0.0005
        while time.monotonic() < deadline:
            time.sleep(pause)
            if self._try():
                return True
            pause = min(pause * 2, 0.005)
        return self._try()

    def _try(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False


class SQLiteConnection(sqlite3.Connection):
    """The driver's connection on SQLite: write transactions take the WriterLock before BEGIN IMMEDIATE and let go
    of it once they end (commit, rollback or close)."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.writer_lock = WriterLock.beside(database)
        self.lock_wait = kwargs.get("timeout", 5.0)

    def begin(self, *, write: bool) -> None:
        if not write:
            self.execute("BEGIN")
            return
        lock = self.writer_lock
        if lock is not None:
            lock.acquire(self.lock_wait)
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def commit(self) -> None:
        self._then_let_go(super().commit)

    def rollback(self) -> None:
        self._then_let_go(super().rollback)

    def close(self) -> None:
        self._then_let_go(super().close, closing=True)

    def _then_let_go(self, end, *, closing: bool = False) -> None:
        """End the transaction (or the connection), then release the writer lock (or close its file) however the
        end went."""
        try:
            end()
        finally:
            if self.writer_lock is not None:
                if closing:
                    self.writer_lock.close()
                else:
                    self.writer_lock.release()
