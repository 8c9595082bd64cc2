"""Provider webhooks received in front of Flask: exactly as the routes receive and answer them, and nothing else."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Callable

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from werkzeug.test import EnvironBuilder, run_wsgi_app

from blueprints import front_routes
from blueprints.webhook_reader import WebhookReader
from services import driver, events, settle
from services.db import db
from services.logs import json_handler
from services.models import LedgerEntry, Order, OutboxMessage, ProviderEvent
from services.providers.bmc import protocol as bmc
from tests.blueprints.test_bmc import event_body
from tests.blueprints.test_cryptobot import update_body
from tests.fakes import crypto_pay_signature
from tests.helpers import assert_error, balance, create, scrape
from tests.providers.bmc.test_protocol import SECRET as BMC_SECRET
from tests.support.hooks import REPRODUCED, hooks_on

TBANK_KEY = TBANK_PASSWORD = "TinkoffBankTest"


@dataclass
class Delivery:
    path: str
    body: bytes
    headers: dict[str, str]
    order_id: str = ""


@dataclass
class Provider:
    """How a test pays one order through a provider's webhook."""

    name: str
    settings: Callable[..., dict[str, str]]
    pay: Callable[..., Delivery]


def pay_cryptobot(client, cryptopay, tbank, n: int = 1) -> Delivery:
    invoice_id = create(client, provider="cryptobot", orderId=f"order-{n}", currency="USDT", amount="1.5",
                        telegramId=7, credit=5).get_json()["invoiceId"]
    body = update_body(cryptopay.mark_paid(invoice_id))
    return Delivery("/webhook/cryptobot", body,
                    {"Crypto-Pay-Api-Signature": crypto_pay_signature(cryptopay.token, body)}, f"order-{n}")


def pay_bmc(client, cryptopay, tbank, n: int = 1) -> Delivery:
    create(client, provider="bmc", orderId=f"order-4{n}", amount="5", telegramId=7, credit=5)
    body = event_body(event_id=n, message=f"order-4{n} thanks!", support_note=f"order-4{n} thanks!")
    return Delivery("/bmc-webhook", body, {"X-Signature-Sha256": bmc.signature(body, BMC_SECRET)}, f"order-4{n}")


def pay_sbp(client, cryptopay, tbank, n: int = 1) -> Delivery:
    create(client, orderId=f"order-{n}", telegramId=7, credit=5)
    body = json.dumps(tbank.notification(tbank.payment_by_order(f"order-{n}")["PaymentId"])).encode()
    return Delivery("/webhook/sbp/tbank", body, {}, f"order-{n}")


PROVIDERS = [
    Provider("cryptobot", lambda cryptopay, tbank: {"CRYPTOBOT_TOKEN": cryptopay.token,
                                                    "CRYPTOBOT_API_URL": cryptopay.api_url}, pay_cryptobot),
    Provider("bmc", lambda cryptopay, tbank: {"BMC_WEBHOOK_SECRET": BMC_SECRET,
                                              "BMC_PAGE_URL": "https://buymeacoffee.com/example"}, pay_bmc),
    Provider("sbp", lambda cryptopay, tbank: {"SBP_GATEWAY": "tbank", "TBANK_TERMINAL_KEY": TBANK_KEY,
                                              "TBANK_PASSWORD": TBANK_PASSWORD, "TBANK_API_URL": tbank.api_url},
             pay_sbp),
]


@pytest.fixture(params=PROVIDERS, ids=lambda provider: provider.name)
def provider(request) -> Provider:
    return request.param


@pytest.fixture
def paying(make_app, clock, cryptopay, tbank, provider):
    """(app, client, a delivery that pays one order) for each provider whose repeats the layer answers."""
    app = make_app(**provider.settings(cryptopay, tbank))
    app.config["CLOCK"] = clock
    client = app.test_client()
    return app, client, provider.pay(client, cryptopay, tbank)


@pytest.fixture
def looked_up(monkeypatch) -> list[tuple]:
    """The dedupe look-ups the database is asked (services/events.py: _already_settled)."""
    asked = []
    real = events.fetch_one
    monkeypatch.setattr(events, "fetch_one", lambda *args: asked.append(args) or real(*args))
    return asked


def reader_of(app) -> WebhookReader:
    layer = app.wsgi_app
    while not isinstance(layer, WebhookReader):
        layer = layer.inner
    return layer


def flask_answers(app, monkeypatch) -> list[str]:
    """The paths the layer hands to Flask, recorded as it hands them."""
    handed = []
    reader = reader_of(app)
    inner = reader.inner
    monkeypatch.setattr(reader, "inner", lambda environ, start: handed.append(environ["PATH_INFO"])
                        or inner(environ, start))
    return handed


def send(client, delivery: Delivery, content_type: str = "application/json", **extra: str):
    return client.post(delivery.path, data=delivery.body, content_type=content_type,
                       headers={**delivery.headers, **extra})


def answer(wsgi, delivery: Delivery):
    environ = EnvironBuilder(path=delivery.path, method="POST", data=delivery.body, content_type="application/json",
                             headers=delivery.headers, environ_base={"REMOTE_ADDR": "198.51.100.7"}).get_environ()
    body, status, headers = run_wsgi_app(wsgi, environ, buffered=True)
    return status, headers, b"".join(body)


def counted(rule: str, provider: str) -> tuple[float, float]:
    requests = REGISTRY.get_sample_value("http_requests_total", {"route": rule, "method": "POST", "status": "200"})
    duplicates = REGISTRY.get_sample_value("webhook_events_total", {"provider": provider, "outcome": "duplicate"})
    return requests or 0.0, duplicates or 0.0


def test_a_repeat_is_answered_in_front_of_flask_as_the_route_answers_it(paying, provider, request_log, monkeypatch):
    app, client, delivery = paying
    assert send(client, delivery).status_code == 200
    reader = reader_of(app)
    answers = []
    for wsgi in (reader, reader.inner):
        before, lines = counted(delivery.path, provider.name), len(request_log())
        status, headers, body = answer(wsgi, delivery)
        [line] = request_log()[lines:]
        answers.append((status, headers, body, line, [now - then for now, then in
                                                      zip(counted(delivery.path, provider.name), before)]))
    handed = flask_answers(app, monkeypatch)
    (status, headers, body, line, count), (flask_status, flask_headers, flask_body, flask_line, flask_count) = answers

    assert status == flask_status == "200 OK"
    assert body == flask_body
    assert body == b"OK" if provider.name == "sbp" else json.loads(body)["duplicate"] is True
    assert headers.pop("X-Request-ID") and flask_headers.pop("X-Request-ID")
    assert sorted(headers.items()) == sorted(flask_headers.items())
    assert line.pop("request_id") and flask_line.pop("request_id")
    for varying in ("time", "duration_ms"):
        assert isinstance(line.pop(varying), type(flask_line.pop(varying)))
    assert line == flask_line and line["order_id"] and line["remote_addr"] == "198.51.100.7"
    assert count == flask_count == [1, 1]
    assert send(client, delivery).status_code == 200 and handed == []
    assert balance(client, 7) == 5


@pytest.fixture
def app_log():
    """Every log line at INFO and above once the app is built (building it sets the level), as the production
    handler writes them, parsed."""
    stream, root = io.StringIO(), logging.getLogger()
    handler, level = json_handler(stream), root.level
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


# What two receipts of different payments store differently, by design.
_OWN_TO_EACH_EVENT = {"id", "event_key", "claimed_order_id", "order_pk", "provider_payment_id", "body", "headers",
                      "details"}


def received(app, delivery: Delivery) -> dict:
    """What the database holds of the delivery's event and its order, with what differs between payments left out."""
    with app.app_context():
        event = db.session.execute(select(ProviderEvent).where(ProviderEvent.body == delivery.body)).scalar_one()
        order = db.session.get(Order, event.order_pk)
        assert event.headers == {"Content-Type": "application/json", **delivery.headers}
        return {
            "event": {column: value for column, value in vars(event).items()
                      if not column.startswith("_") and column not in _OWN_TO_EACH_EVENT},
            "details": sorted(event.details), "match": event.details.get("orderMatch", "").replace(order.order_id, ""),
            "order": (order.status, order.amount, order.currency),
            "ledger": [(entry.amount, entry.reason) for entry in db.session.execute(
                select(LedgerEntry).where(LedgerEntry.order_pk == order.id)).scalars()],
            "outbox": sorted((message.channel, message.kind, sorted(message.payload)) for message in
                             db.session.execute(select(OutboxMessage).where(OutboxMessage.order_pk == order.id))
                             .scalars()),
        }


def logged(lines: list[dict], request_id: str, order_id: str) -> list[dict]:
    """The log lines of one request, each checked to carry its request id, and the parts that vary removed."""
    assert lines and all(line.pop("request_id") == request_id for line in lines)
    for line in lines:
        for varying in ("time", "duration_ms", "event_id"):
            line.pop(varying, None)
        assert line.pop("order_id") == order_id
    return lines


OUTBOX_ON = {"MERCHANT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
             "MERCHANT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "TELEGRAM_BOT_TOKEN": "123:abc"}


def counted_here(sample: tuple[str, tuple]) -> bool:
    """A count the request itself moves (not the process's, nor the scrape's own)."""
    name, labels = sample
    return name.endswith(("_total", "_count")) and not name.startswith(("process_", "python_")) \
        and ("route", "/metrics") not in labels


def test_a_new_event_is_received_in_front_of_flask_as_the_route_receives_it(make_app, clock, cryptopay, tbank,
                                                                          provider, app_log):
    # With the merchant's webhooks and the buyer's messages on, a payment queues both in the outbox.
    app = make_app(**provider.settings(cryptopay, tbank), **OUTBOX_ON)
    app.config["CLOCK"] = clock
    logging.getLogger().setLevel(logging.INFO)
    client = app.test_client()
    reader = reader_of(app)
    receipts = []
    for n, wsgi in ((1, reader), (2, reader.inner)):
        delivery = provider.pay(client, cryptopay, tbank, n)
        before, lines = scrape(client), len(app_log())
        status, headers, body = answer(wsgi, delivery)
        lines = logged(app_log()[lines:], headers["X-Request-ID"], delivery.order_id)
        after = scrape(client)
        counts = {sample: after[sample] - before.get(sample, 0) for sample in after if counted_here(sample)
                  and after[sample] != before.get(sample, 0)}
        receipts.append((status, headers, body, lines, counts, received(app, delivery)))
    (status, headers, body, lines, counts, stored), flask = receipts

    assert status == flask[0] == "200 OK"
    assert headers.pop("X-Request-ID") and flask[1].pop("X-Request-ID")
    assert sorted(headers.items()) == sorted(flask[1].items())
    assert body == b"OK" or json.loads(body)["outcome"] == json.loads(flask[2])["outcome"] == "processed"
    assert lines == flask[3] and any(line.get("event") == "request" for line in lines) and len(lines) > 1
    assert counts == flask[4] and counts
    assert stored == flask[5] and stored["order"][0] == "paid" and stored["ledger"] and len(stored["outbox"]) == 2
    assert stored["event"]["remote_addr"] == "198.51.100.7" and stored["event"]["status"] == "processed"
    assert balance(client, 7) == 10


def forged(delivery: Delivery) -> Delivery:
    """The same delivery with its signature (T-Bank: the Token inside the body) no longer matching."""
    if not delivery.headers:
        body = json.loads(delivery.body)
        return Delivery(delivery.path, json.dumps({**body, "Token": "0" * 64}).encode(), {})
    return Delivery(delivery.path, delivery.body, {name: "0" * 64 for name in delivery.headers})


def test_a_new_event_whose_signature_fails_is_the_routes_401_and_nothing_is_stored(paying, monkeypatch):
    app, client, delivery = paying
    handed = flask_answers(app, monkeypatch)

    response = send(client, forged(delivery))

    assert response.status_code == 401 and handed == [delivery.path]
    with app.app_context():
        assert db.session.execute(select(ProviderEvent)).first() is None
    assert balance(client, 7) == 0


def test_a_repeat_whose_signature_fails_is_the_routes_401(paying, monkeypatch):
    app, client, delivery = paying
    assert send(client, delivery).status_code == 200
    handed = flask_answers(app, monkeypatch)

    response = send(client, forged(delivery))

    assert response.status_code == 401 and handed == [delivery.path]


def test_a_new_event_is_looked_up_at_most_once_and_received_in_front_of_flask(paying, looked_up, monkeypatch):
    app, client, delivery = paying
    handed = flask_answers(app, monkeypatch)
    with app.app_context():
        # On PostgreSQL the event's claim reads the stored event itself (services/driver.py: insert_or_find).
        look_ups = 0 if driver.claim_finds_stored() else 1

    first = send(client, delivery)
    assert first.status_code == 200 and handed == [] and len(looked_up) == look_ups
    second = send(client, delivery)
    assert second.status_code == 200 and handed == [] and len(looked_up) == 2 * look_ups
    if first.is_json:
        assert (first.get_json()["outcome"], second.get_json()["duplicate"]) == ("processed", True)
    assert balance(client, 7) == 5


def test_a_failed_receipt_is_the_routes_503_after_one_attempt(paying, monkeypatch, caplog):
    app, client, delivery = paying
    handed = flask_answers(app, monkeypatch)
    attempts = []

    def down(*args):
        attempts.append(args)
        events.logger.warning("the receipt got this far")
        raise OperationalError("INSERT", (), Exception("connection refused"))

    monkeypatch.setattr(events, "_ingest_committed", down)
    with caplog.at_level(logging.WARNING):
        response = send(client, delivery)

    assert response.status_code == 503 and response.headers["Retry-After"]
    assert len(attempts) == 1 and handed == [delivery.path]
    # The route's answer keeps the id of the request whose receipt began in front of Flask.
    [line] = [record for record in caplog.records if record.getMessage() == "the receipt got this far"]
    assert line.request_id == response.headers["X-Request-ID"]
    monkeypatch.undo()
    assert send(client, delivery).status_code == 200
    assert balance(client, 7) == 5


def test_a_failed_look_up_is_the_routes_503_after_one_attempt(paying, monkeypatch):
    app, client, delivery = paying
    with app.app_context():
        if driver.claim_finds_stored():
            pytest.skip("PostgreSQL asks no look-up: a failed claim is the failed receipt above")
    asked = []

    def down(*args):
        asked.append(args)
        raise OperationalError("SELECT", (), Exception("connection refused"))

    monkeypatch.setattr(events, "fetch_one", down)
    response = send(client, delivery)

    assert response.status_code == 503 and response.headers["Retry-After"]
    assert len(asked) == 1


def test_an_event_whose_processing_failed_is_processed_again_by_the_route(paying, monkeypatch):
    app, client, delivery = paying
    real_apply = settle.apply
    monkeypatch.setattr(settle, "apply", lambda *args: 1 / 0)
    assert send(client, delivery).status_code == 200
    monkeypatch.setattr(settle, "apply", real_apply)
    handed = flask_answers(app, monkeypatch)

    response = send(client, delivery)

    assert response.status_code == 200 and handed == []
    assert response.get_data() == b"OK" or response.get_json()["outcome"] == "processed"
    assert balance(client, 7) == 5


@pytest.fixture
def repeated_cryptobot(make_app, clock, cryptopay):
    """(app, client, a CryptoBot delivery already settled once)."""
    app = make_app(CRYPTOBOT_TOKEN=cryptopay.token, CRYPTOBOT_API_URL=cryptopay.api_url)
    app.config["CLOCK"] = clock
    client = app.test_client()
    delivery = pay_cryptobot(client, cryptopay, None)
    assert send(client, delivery).status_code == 200
    return app, client, delivery


@pytest.mark.parametrize("change, expected", [
    (lambda d: Delivery(d.path, d.body, {"Crypto-Pay-Api-Signature": "0" * 64}), 401),
    (lambda d: Delivery(d.path, d.body, {}), 401),
    (lambda d: Delivery(d.path + "?again=1", d.body, d.headers), 200),
    (lambda d: Delivery(d.path, d.body, {**d.headers, "X-Note": "a\x00b"}), 400),
    (lambda d: Delivery("/webhook/cryptobot/", d.body, d.headers), 404),
], ids=["wrong signature", "no signature", "query string", "NUL in a header", "another path"])
def test_what_the_layer_does_not_answer_the_route_answers(repeated_cryptobot, monkeypatch, change, expected):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)
    changed = change(delivery)

    response = send(client, changed)

    assert response.status_code == expected
    assert handed == [changed.path.partition("?")[0]]


def test_a_refused_signature_is_logged_once(repeated_cryptobot, caplog):
    app, client, delivery = repeated_cryptobot
    with caplog.at_level(logging.WARNING):
        assert_error(send(client, Delivery(delivery.path, delivery.body, {"Crypto-Pay-Api-Signature": "0" * 64})),
                     401)
    assert len([record for record in caplog.records
                if record.getMessage().startswith("rejected a CryptoBot webhook")]) == 1


def test_a_signed_body_that_is_not_json_is_the_routes_400(repeated_cryptobot, cryptopay, monkeypatch):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)
    body = b'{"update_id": 1,'
    broken = Delivery(delivery.path, body, {"Crypto-Pay-Api-Signature": crypto_pay_signature(cryptopay.token, body)})

    assert_error(send(client, broken), 400, "malformed_payload")
    assert handed == [delivery.path]


def test_a_stale_repeat_is_left_to_the_route_which_flags_it(repeated_cryptobot, clock, monkeypatch, caplog):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)
    clock.advance(minutes=20)

    with caplog.at_level(logging.WARNING):
        response = send(client, delivery)

    assert response.status_code == 200 and response.get_json()["duplicate"] is True
    assert handed == [delivery.path]
    assert any(record.getMessage() == "CryptoBot update with a stale request_date" for record in caplog.records)


def test_a_form_body_is_left_to_the_nul_guard(repeated_cryptobot, monkeypatch):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)

    response = send(client, delivery, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200 and handed == [delivery.path]


def test_a_body_without_a_length_is_read_by_flask(repeated_cryptobot, monkeypatch):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)
    environ = EnvironBuilder(path=delivery.path, method="POST", input_stream=io.BytesIO(delivery.body),
                             content_type="application/json", headers=delivery.headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True

    body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)

    assert status == "200 OK" and json.loads(b"".join(body))["duplicate"] is True
    assert handed == [delivery.path]


class Unreadable(io.BytesIO):
    def read(self, *args):
        raise AssertionError("a body over the limit was read")

    readinto = readline = read


def test_a_body_over_the_limit_is_flasks_413_unread(make_app, cryptopay, monkeypatch):
    app = make_app(CRYPTOBOT_TOKEN=cryptopay.token, MAX_BODY_BYTES="1024")
    handed = flask_answers(app, monkeypatch)
    environ = EnvironBuilder(path="/webhook/cryptobot", method="POST", input_stream=Unreadable(),
                             content_type="application/json").get_environ()
    environ["CONTENT_LENGTH"] = str(10 ** 9)

    body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)

    assert status.startswith("413") and json.loads(b"".join(body))["error"]["code"]
    assert handed == ["/webhook/cryptobot"]


def test_every_layer_route_is_a_flask_post_route(app):
    routes = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}
    paths = [route.path for route in front_routes()]

    assert sorted(paths) == ["/bmc-webhook", "/webhook/cryptobot", "/webhook/sbp/tbank"]
    assert all("POST" in routes[path] for path in paths)


def test_every_hook_a_webhook_passes_through_is_one_the_layer_reproduces(app):
    """A hook added to every request, or to these blueprints, must be added to blueprints/repeat_reader.py too
    (or the route left to Flask): REPRODUCED is what the layer does in their place."""
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    blueprints = [endpoints[route.path].rpartition(".")[0] for route in front_routes()]

    assert sorted(blueprints) == ["bmc", "cryptobot", "sbp"]
    for blueprint in blueprints:
        assert hooks_on(app, blueprint) == REPRODUCED


def test_in_debug_mode_flask_answers(repeated_cryptobot, monkeypatch):
    app, client, delivery = repeated_cryptobot
    handed = flask_answers(app, monkeypatch)
    app.debug = True

    assert send(client, delivery).get_json()["duplicate"] is True
    assert handed == [delivery.path]
