"""Helpers for the fault and load proofs: seeded orders, signed T-Bank notifications, a bounded concurrent
sender that records every answer, and the check that the database ended exactly right."""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

import requests
from sqlalchemy import func, insert, select

from services.db import db
from services.models import Fulfilment, LedgerEntry, Order, ProviderEvent
from services.providers.sbp import protocol as tbank
from tests.support.live import BIN, ROOT

TERMINAL_KEY = "ProofTerminal"
PASSWORD = "proof-terminal-password"
NOTIFICATION_PATH = "/webhook/sbp/tbank"
JSON_HEADERS = {"Content-Type": "application/json"}
CONCURRENCY = 64
TIMEOUT = (5.0, 30.0)  # connect, read: what a provider would wait before calling a delivery failed


def scaled(default: int, full: int) -> int:
    """A proof's size: `full` with PROOF_FULL=1, else the smaller one the regular suite uses."""
    return full if os.environ.get("PROOF_FULL") == "1" else default


# Turns on T-Bank notifications; the API URL is a closed loopback port, never called by these proofs.
TBANK_SETTINGS = {"SBP_GATEWAY": "tbank", "TBANK_TERMINAL_KEY": TERMINAL_KEY, "TBANK_PASSWORD": PASSWORD,
                  "TBANK_API_URL": "http://127.0.0.1:9/v2/"}


def database_kind(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


@dataclass(frozen=True)
class Payment:
    """One pending SBP order and the T-Bank payment that settles it."""

    payment_id: int
    order_id: str
    telegram_id: int
    credit: int
    kopecks: int

    @property
    def event_key(self) -> str:
        return f"{self.payment_id}:CONFIRMED"

    def notification(self) -> bytes:
        """The signed CONFIRMED notification T-Bank would POST for this payment."""
        body = {"TerminalKey": TERMINAL_KEY, "OrderId": self.order_id, "Success": True, "Status": "CONFIRMED",
                "PaymentId": self.payment_id, "ErrorCode": "0", "Amount": self.kopecks}
        body["Token"] = tbank.token(body, PASSWORD)
        return json.dumps(body).encode()


def make_payments(count: int, prefix: str = "proof") -> list[Payment]:
    """`count` payments spread over 97 buyers (so many credit the same balance concurrently)."""
    return [Payment(payment_id=7_000_000_000 + i, order_id=f"{prefix}-{i:05d}", telegram_id=900_000 + i % 97,
                    credit=1 + (i * 37) % 500, kopecks=10_000 + (i * 13) % 90_000) for i in range(count)]


def seed_orders(payments: Sequence[Payment], now: datetime | None = None) -> None:
    """Insert every payment's pending order in one bulk INSERT (inside an app context)."""
    now = now or datetime.now(timezone.utc)
    db.session.execute(insert(Order), [{
        "order_id": p.order_id, "provider": "sbp", "status": "pending", "amount": Decimal(p.kopecks).scaleb(-2),
        "currency": "RUB", "telegram_id": p.telegram_id, "credit": p.credit, "meta": {},
        "provider_ref": str(p.payment_id), "provider_data": {"paymentId": str(p.payment_id)},
        "created_at": now, "updated_at": now, "expires_at": now + timedelta(hours=1),
    } for p in payments])
    db.session.commit()


def duplicated(payments: Sequence[Payment], copies: int = 2, seed: int = 1) -> list[Payment]:
    """Every payment `copies` times, shuffled: with 2 copies half the deliveries are duplicates."""
    deliveries = [p for p in payments for _ in range(copies)]
    random.Random(seed).shuffle(deliveries)
    return deliveries


@dataclass(frozen=True)
class Outcome:
    """What one delivery got: the HTTP status (None: no answer at all) and the body or error code."""

    payment: Payment
    status: int | None
    detail: str
    seconds: float

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(session: requests.Session, url: str, payment: Payment) -> Outcome:
    """POST one notification and record the answer; a reset or timeout is an outcome, not an error."""
    started = time.monotonic()
    try:
        response = session.post(url + NOTIFICATION_PATH, data=payment.notification(), headers=JSON_HEADERS,
                                timeout=TIMEOUT)
    except requests.RequestException as exc:
        return Outcome(payment, None, type(exc).__name__, time.monotonic() - started)
    return Outcome(payment, response.status_code, _detail(response), time.monotonic() - started)


def _detail(response: requests.Response) -> str:
    """`OK` for an acknowledgement, the JSON error code for an error, else what the body was."""
    if response.ok:
        return response.text
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return f"non-json {response.headers.get('Content-Type')}"
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "malformed json error"


class Sender:
    """Sends deliveries from `concurrency` threads, each with its own Session, round-robin over `urls`."""

    def __init__(self, urls: Sequence[str], concurrency: int = CONCURRENCY):
        self.urls = list(urls)
        self.concurrency = concurrency
        self._progress = threading.Condition()
        self._done = 0
        self._next = 0
        self._deliveries: list[Payment] = []
        self._results: list[Outcome | None] = []
        self._threads: list[threading.Thread] = []
        self.seconds = 0.0
        self._started = 0.0

    def start(self, deliveries: Sequence[Payment]) -> Sender:
        self._deliveries = list(deliveries)
        self._results = [None] * len(self._deliveries)
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, name=f"sender-{n}", daemon=True)
                         for n in range(min(self.concurrency, len(self._deliveries)))]
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._progress:
            if self._next >= len(self._deliveries):
                return None
            self._next += 1
            return self._next - 1

    def _work(self) -> None:
        with requests.Session() as session:
            while (index := self._take()) is not None:
                url = self.urls[index % len(self.urls)]
                self._results[index] = deliver(session, url, self._deliveries[index])
                with self._progress:
                    self._done += 1
                    self._progress.notify_all()

    def done(self) -> int:
        with self._progress:
            return self._done

    def unanswered(self) -> int:
        """Deliveries so far that got no HTTP answer at all (a killed worker's requests)."""
        with self._progress:
            return sum(1 for outcome in self._results if outcome is not None and outcome.status is None)

    def wait_done(self, count: int, timeout: float = 120.0) -> None:
        """Block until `count` deliveries have an outcome (the fault injector's trigger)."""
        with self._progress:
            if not self._progress.wait_for(lambda: self._done >= count, timeout):
                raise TimeoutError(f"only {self._done}/{count} deliveries answered within {timeout}s")

    def join(self, timeout: float = 600.0) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise TimeoutError(f"the load did not finish within {timeout}s ({self.done()} answered)")
        self.seconds = time.monotonic() - self._started
        return [o for o in self._results if o is not None]

    def run(self, deliveries: Sequence[Payment]) -> list[Outcome]:
        return self.start(deliveries).join()


def redeliver(urls: Sequence[str], failed: Iterable[Outcome], deadline_seconds: float = 60.0) -> list[Outcome]:
    """Retry failed deliveries the way a provider does, round after round, until each is acknowledged."""
    pending = [o.payment for o in failed]
    retries: list[Outcome] = []
    deadline = time.monotonic() + deadline_seconds
    while pending:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} deliveries still failing after {deadline_seconds}s of retries: "
                                 f"{Counter((o.status, o.detail) for o in retries[-len(pending):])}")
        answered = Sender(urls, concurrency=16).run(pending)
        retries.extend(answered)
        pending = [o.payment for o in answered if not o.acknowledged]
        if pending:
            time.sleep(0.5)  # a real provider backs off too; the server is restarting something
    return retries


def load_figures(outcomes: Sequence[Outcome], seconds: float, unique: int) -> dict[str, object]:
    """Counts and timings of one load run, as printed in the proof summary."""
    statuses = Counter("none" if o.status is None else str(o.status) for o in outcomes)
    latencies = [o.seconds for o in outcomes]
    return {
        "deliveries": len(outcomes), "duplicates": len(outcomes) - unique,
        "acknowledged_2xx": sum(o.acknowledged for o in outcomes), "answered_503": statuses.get("503", 0),
        "answered_5xx_other": sum(n for s, n in statuses.items() if s.startswith("5") and s != "503"),
        "no_answer": statuses.get("none", 0), "elapsed_s": round(seconds, 2),
        "deliveries_per_s": round(len(outcomes) / seconds, 1) if seconds else None,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
    }


def assert_acknowledged_stored(acknowledged: set[str]) -> None:
    """Every delivery that got a 2xx has its event in the database, processed (checked before any retry)."""
    stored = dict(db.session.execute(
        select(ProviderEvent.event_key, ProviderEvent.status).where(ProviderEvent.provider == "sbp")).all())
    lost = sorted(acknowledged - stored.keys())
    assert not lost, f"{len(lost)} acknowledged deliveries are not in the database, e.g. {lost[:5]}"
    unprocessed = Counter(stored[k] for k in acknowledged if stored[k] != "processed")
    assert not unprocessed, f"acknowledged but not processed: {unprocessed}"


def assert_settled_exactly_once(payments: Sequence[Payment], acknowledged: set[str]) -> dict[str, object]:
    """Every acknowledged event stored and processed; every order paid, credited and processed exactly once."""
    assert_acknowledged_stored(acknowledged)
    events = dict(db.session.execute(
        select(ProviderEvent.event_key, ProviderEvent.status).where(ProviderEvent.provider == "sbp")).all())
    unprocessed = {k: s for k, s in events.items() if s != "processed"}
    assert not unprocessed, f"events not processed: {Counter(unprocessed.values())}"
    assert events.keys() == {p.event_key for p in payments}

    statuses = Counter(db.session.execute(select(Order.status)).scalars())
    assert statuses == {"paid": len(payments)}, statuses
    attempts = db.session.execute(select(func.sum(ProviderEvent.processing_attempts))).scalar_one()
    assert attempts == len(payments), f"{attempts} processing runs committed for {len(payments)} events"
    ledger = db.session.execute(select(LedgerEntry.order_pk, func.count()).group_by(LedgerEntry.order_pk)).all()
    doubles = sum(1 for _, n in ledger if n > 1)
    assert doubles == 0 and len(ledger) == len(payments), f"{doubles} doubly credited, {len(ledger)} credited"
    fulfilments = db.session.execute(select(func.count()).select_from(Fulfilment)).scalar_one()
    assert fulfilments == len(payments)

    balances = dict(db.session.execute(
        select(LedgerEntry.telegram_id, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.telegram_id)).all())
    expected: Counter[int] = Counter()
    for p in payments:
        expected[p.telegram_id] += p.credit
    assert {k: int(v) for k, v in balances.items()} == dict(expected)
    return {"orders": len(payments), "orders_paid": statuses["paid"], "ledger_entries": len(ledger),
            "double_fulfilments": doubles, "lost_acknowledged": 0,
            "balance_total": sum(int(v) for v in balances.values())}


def migrate(env: dict[str, str]) -> None:
    """`flask --app wsgi db upgrade`, as an operator runs it, against env's DATABASE_URL."""
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def wait_healthy(url: str, timeout: float = 30.0) -> float:
    """Seconds until GET /health answers 200; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(url + "/health", timeout=5).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not healthy within {timeout}s")


def child_ages(parent: int) -> dict[int, float]:
    """Live children of a process (gunicorn's workers are the master's) and how long each has run, from /proc."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    ages = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state (3), ppid (4), ... starttime (22).
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            ages[int(entry.name)] = uptime - int(fields[19]) / ticks
    return ages


def kill_oldest_worker(master: int, min_age: float = 2.0, timeout: float = 30.0) -> int:
    """SIGKILL the master's longest-running worker, which is serving (a young one may still be importing
    the app); gunicorn starts a replacement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ages = child_ages(master)
        victim = max(ages, key=ages.__getitem__, default=None)
        if victim is not None and ages[victim] >= min_age:
            try:
                os.kill(victim, signal.SIGKILL)
                return victim
            except ProcessLookupError:  # it exited by itself meanwhile (max_requests recycling)
                continue
        time.sleep(0.05)
    raise AssertionError(f"gunicorn {master} has had no worker older than {min_age}s for {timeout}s")
