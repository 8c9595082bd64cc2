"""GET /metrics: request, webhook and fulfilment counters, outbox gauges from the database, multi-process mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services import metrics
from services.db import db, transaction
from tests.conftest import AUTH
from tests.helpers import create, scrape
from tests.support.live import ROOT, LiveServer

TBANK = {"TBANK_TERMINAL_KEY": "TinkoffBankTest", "TBANK_PASSWORD": "TinkoffBankTest"}
OUTBOX = {"MERCHANT_WEBHOOK_URL": "http://127.0.0.1:9/hooks", "MERCHANT_WEBHOOK_SECRET":
          "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "TELEGRAM_BOT_TOKEN": "123:abc"}


def value(name: str, **labels: str) -> float:
    """The in-process value of one sample (0 when it was never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def pay(client, qrc_id: str):
    return client.post(f"/sandbox/sbp/{qrc_id}/pay", headers=AUTH)


def test_request_is_counted_by_route_method_and_status(client):
    before = value("http_requests_total", route="/api/status/<order_id>", method="GET", status="404")
    observed = value("http_request_duration_seconds_count", route="/api/status/<order_id>")
    client.get("/api/status/nope-1", headers=AUTH)
    client.get("/api/status/nope-2", headers=AUTH)
    assert value("http_requests_total", route="/api/status/<order_id>", method="GET", status="404") == before + 2
    assert value("http_request_duration_seconds_count", route="/api/status/<order_id>") == observed + 2


def test_unknown_paths_and_invented_methods_do_not_grow_labels(client):
    unmatched = value("http_requests_total", route="unmatched", method="GET", status="404")
    other = value("http_requests_total", route="unmatched", method="OTHER", status="405")
    client.get("/no/such/path/123")
    client.open("/health", method="BREW")
    assert value("http_requests_total", route="unmatched", method="GET", status="404") == unmatched + 1
    assert value("http_requests_total", route="unmatched", method="OTHER", status="405") == other + 1


def test_sandbox_payment_counts_the_event_and_the_credit_once(client, clock):
    processed = value("webhook_events_total", provider="sbp", outcome="processed")
    duplicate = value("webhook_events_total", provider="sbp", outcome="duplicate")
    credits = value("fulfilments_total", kind="credit")
    qrc_id = create(client, telegramId=42, credit=500).get_json()["qrcId"]
    pay(client, qrc_id)
    pay(client, qrc_id)
    assert value("webhook_events_total", provider="sbp", outcome="processed") == processed + 1
    assert value("webhook_events_total", provider="sbp", outcome="duplicate") == duplicate + 1
    assert value("fulfilments_total", kind="credit") == credits + 1


def test_bad_signature_is_counted_for_the_provider(make_app):
    client = make_app(**TBANK).test_client()
    before = value("webhook_events_total", provider="sbp", outcome="bad_signature")
    response = client.post("/webhook/sbp/tbank", json={"TerminalKey": "TinkoffBankTest", "Token": "0" * 64})
    assert response.status_code == 401
    assert value("webhook_events_total", provider="sbp", outcome="bad_signature") == before + 1


def test_fulfilment_counts_only_when_its_transaction_commits(app):
    before = value("fulfilments_total", kind="test_kind")
    with app.app_context():
        with pytest.raises(RuntimeError):
            with transaction():
                db.session.execute(text("SELECT 1"))
                metrics.record_fulfilment("test_kind")
                raise RuntimeError("rolled back")
        assert value("fulfilments_total", kind="test_kind") == before
        with transaction():
            db.session.execute(text("SELECT 1"))
            metrics.record_fulfilment("test_kind")
            assert value("fulfilments_total", kind="test_kind") == before
        assert value("fulfilments_total", kind="test_kind") == before + 1
        db.session.rollback()
        assert value("fulfilments_total", kind="test_kind") == before + 1


def test_worker_helpers_count_deliveries_and_reconciliations():
    delivered = value("delivery_attempts_total", channel="merchant", outcome="delivered")
    matched = value("reconciliation_results_total", provider="cryptobot", result="paid")
    metrics.record_delivery("merchant", "delivered")
    metrics.record_reconciliation("cryptobot", "paid")
    assert value("delivery_attempts_total", channel="merchant", outcome="delivered") == delivered + 1
    assert value("reconciliation_results_total", provider="cryptobot", result="paid") == matched + 1


def test_metrics_endpoint_serves_counters_and_empty_outbox_gauges(client):
    client.get("/health")
    samples = scrape(client)
    assert samples[("http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))] >= 1
    for channel in ("merchant", "panel", "telegram"):
        assert samples[("outbox_depth", (("channel", channel),))] == 0
        assert samples[("outbox_oldest_due_seconds", (("channel", channel),))] == 0


def test_outbox_gauges_count_waiting_messages_and_their_age(make_app, clock):
    app = make_app(**OUTBOX)
    app.config["CLOCK"] = clock
    client = app.test_client()
    for order_id in ("order-1", "order-2"):
        pay(client, create(client, orderId=order_id, telegramId=42, credit=5).get_json()["qrcId"])
    clock.advance(seconds=90)
    pay(client, create(client, orderId="order-3").get_json()["qrcId"])
    clock.advance(seconds=30)
    samples = scrape(client)
    assert samples[("outbox_depth", (("channel", "merchant"),))] == 3
    assert samples[("outbox_depth", (("channel", "telegram"),))] == 2
    assert samples[("outbox_oldest_due_seconds", (("channel", "merchant"),))] == 120
    assert samples[("outbox_oldest_due_seconds", (("channel", "telegram"),))] == 120
    assert samples[("outbox_depth", (("channel", "panel"),))] == 0


def test_outbox_message_not_yet_due_has_no_age(make_app, clock):
    app = make_app(**OUTBOX)
    app.config["CLOCK"] = clock
    client = app.test_client()
    pay(client, create(client).get_json()["qrcId"])
    clock.advance(seconds=-10)
    samples = scrape(client)
    assert samples[("outbox_depth", (("channel", "merchant"),))] == 1
    assert samples[("outbox_oldest_due_seconds", (("channel", "merchant"),))] == 0


def test_scrape_without_database_still_serves_process_metrics(make_app):
    client = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none").test_client()
    samples = scrape(client)
    assert any(name == "http_requests_total" for name, _ in samples)
    assert not any(name == "outbox_depth" for name, _ in samples)


def test_multiprocess_mode_counts_every_gunicorn_worker(base_env, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR set: workers write their values to files there and /metrics reads them all."""
    directory = tmp_path / "prometheus"
    route = ("http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))
    with LiveServer({**base_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}, workers=2,
                    log_path=tmp_path / "gunicorn.log") as live:
        before = scrape(live.url).get(route, 0)
        for _ in range(30):
            assert requests.get(live.url + "/health", timeout=10).ok
        samples = scrape(live.url)
    assert samples[route] == before + 30
    assert ("outbox_depth", (("channel", "merchant"),)) in samples
    assert any(path.name.startswith("counter_") for path in directory.iterdir())


RECORD = """
import sys
from webhook_app import create_app
client = create_app(dict(arg.split("=", 1) for arg in sys.argv[1:])).test_client()
for _ in range({count}):
    assert client.get("/health").status_code == 200
"""
SCRAPE = """
import sys
from webhook_app import create_app
sys.stdout.write(create_app(dict(arg.split("=", 1) for arg in sys.argv[1:])).test_client().get("/metrics").get_data(as_text=True))
"""


def test_multiprocess_scrape_adds_up_separate_processes(base_env, tmp_path):
    """Deterministically two processes (gunicorn may route every request to one worker), then a third scrapes."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    args = [f"{name}={value}" for name, value in base_env.items()]
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", RECORD.format(count=count), *args], env=env, cwd=ROOT, check=True)
    scraped = subprocess.run([sys.executable, "-c", SCRAPE, *args], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scraped) for s in family.samples}
    assert samples[("http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))] == 7
    assert len(list(directory.glob("counter_*.db"))) == 3
