"""No database transaction stays open across an outbound call: other processes can write while one is in progress.

On SQLite every transaction is BEGIN IMMEDIATE, so a read left open across a provider call would hold the
database-wide write lock for the whole call; on PostgreSQL it would leave a connection idle in transaction.
The guard in tests/support/transactions.py checks every test in-process; the probes here check from outside,
from a connection of their own, while each fake provider is answering a call.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from services.db import db
from services.panels import marzban as marzban_adapter
from tests.conftest import AUTH
from tests.fakes import FakeCryptoPay, FakeMarzban, FakeMerchant, FakeTBank, FakeTelegram
from tests.fakes.base import RecordedRequest, Response
from tests.support.admin import ADMIN, ADMIN_KEY
from tests.support.worker import frozen_now, run_worker, wired_env

# A legitimate transaction of another thread lasts milliseconds; one held across the call never ends.
WAIT_SECONDS = 2.0
IDLE_IN_TRANSACTION = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state LIKE 'idle in transaction%'")


class DatabaseProbe:
    """Asks, from a connection of its own, whether another process could write to the database right now."""

    def __init__(self, url: str):
        self.url = url
        self.engine = None if url.startswith("sqlite") else create_engine(url, poolclass=NullPool)
        self.results: list[tuple[str, bool]] = []

    def check(self, what: str) -> None:
        self.results.append((what, self.writable()))

    def writable(self) -> bool:
        if self.engine is None:
            connection = sqlite3.connect(make_url(self.url).database, timeout=WAIT_SECONDS, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False
            finally:
                connection.close()
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            with self.engine.connect() as connection:
                if connection.execute(IDLE_IN_TRANSACTION).scalar_one() == 0:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def blocked(self) -> list[str]:
        return [what for what, writable in self.results if not writable]

    def probed(self) -> set[str]:
        return {what.split(" ")[0] for what, _ in self.results}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


class Probed:
    """Mixed into a fake: each request is answered only after the probe has looked at the database."""

    probe: DatabaseProbe

    def handle(self, req: RecordedRequest) -> Response:
        self.probe.check(f"{type(self).__name__} {req.method} {req.path}")
        return super().handle(req)


class ProbedTBank(Probed, FakeTBank):
    pass


class ProbedCryptoPay(Probed, FakeCryptoPay):
    pass


class ProbedTelegram(Probed, FakeTelegram):
    pass


class ProbedMarzban(Probed, FakeMarzban):
    pass


class ProbedMerchant(Probed, FakeMerchant):
    pass


@pytest.fixture
def probe(database_url):
    probe = DatabaseProbe(database_url)
    yield probe
    probe.close()


@pytest.fixture
def fakes(probe):
    servers = {"tbank": ProbedTBank(), "cryptopay": ProbedCryptoPay(), "telegram": ProbedTelegram(),
               "marzban": ProbedMarzban(), "merchant": ProbedMerchant()}
    marzban_adapter.forget_tokens()
    for server in servers.values():
        server.probe = probe
        server.start()
    yield servers
    for server in servers.values():
        server.stop()
    marzban_adapter.forget_tokens()


@pytest.fixture
def wired_app(make_app, fakes):
    tbank, cryptopay, telegram, marzban = fakes["tbank"], fakes["cryptopay"], fakes["telegram"], fakes["marzban"]
    app = make_app(
        SBP_GATEWAY="tbank", TBANK_TERMINAL_KEY=tbank.terminal_key, TBANK_PASSWORD=tbank.password,
        TBANK_API_URL=tbank.api_url, CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url,
        TELEGRAM_WEBHOOK_SECRET="telegram-secret", ADMIN_API_KEY=ADMIN_KEY, PANEL_TYPE="marzban",
        MARZBAN_URL=marzban.url, MARZBAN_USERNAME=marzban.username, MARZBAN_PASSWORD=marzban.password,
        **wired_env(fakes["merchant"], telegram))
    frozen_now(app)
    return app


def create(client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/payment", json=body, headers=AUTH)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_guard_reports_a_request_sent_while_a_transaction_is_open(app, sink, no_connection_across_http):
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        requests.get(sink.url, timeout=5)
        db.session.rollback()
        requests.get(sink.url, timeout=5)
    [violation] = no_connection_across_http.violations
    assert violation.startswith(f"GET {sink.url}/ sent while this thread held 1 database connection")
    no_connection_across_http.violations.clear()


def test_the_database_stays_writable_during_every_provider_call(wired_app, fakes, probe):
    client = wired_app.test_client()
    tbank, cryptopay = fakes["tbank"], fakes["cryptopay"]
    create(client, orderId="sub-1", amount=100, telegramId=42, credit=5, subscription={"plan": "pro", "days": 30})
    create(client, orderId="missed-1", amount=200)
    invoice_id = create(client, orderId="crypto-1", amount="1.5", provider="cryptobot", currency="USDT")["invoiceId"]
    paid = client.post("/webhook/sbp/tbank", json=tbank.notification(tbank.payment_by_order("sub-1")["PaymentId"]))
    assert paid.get_data() == b"OK"
    tbank.set_status(tbank.payment_by_order("missed-1")["PaymentId"], "CONFIRMED")
    cryptopay.mark_paid(invoice_id)
    wired_app.config["CLOCK"].advance(seconds=121)
    # Every provider's worker at once, in threads: deliveries, panel sync, GetState and getInvoices.
    run_worker(wired_app, "all")
    run_worker(wired_app, "all")
    for order_id in ("sub-1", "missed-1", "crypto-1"):
        assert client.get(f"/api/status/{order_id}", headers=AUTH).get_json()["status"] == "paid"
    purchase_id = client.get("/api/status/sub-1", headers=AUTH).get_json()["purchaseId"]
    assert client.post(f"/admin/update_configs/{purchase_id}", headers=ADMIN).status_code == 200
    assert client.post("/admin/update_configs", headers=ADMIN).get_json()["succeeded"] == 1
    result = wired_app.test_cli_runner().invoke(args=["telegram", "set-webhook"])
    assert result.exit_code == 0, result.output
    assert probe.probed() == {"ProbedTBank", "ProbedCryptoPay", "ProbedTelegram", "ProbedMarzban", "ProbedMerchant"}
    paths = {what.split(" ", 1)[1] for what, _ in probe.results}
    assert {"POST /v2/Init", "POST /v2/GetQr", "POST /v2/GetState", "POST /api/createInvoice",
            "POST /api/getInvoices", "POST /hooks"} <= paths
    assert probe.blocked() == []
