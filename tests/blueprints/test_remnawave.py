"""POST /webhook/remnawave: the panel's signed events stored once; "expires soon" and "expired" for a user we
created send the buyer one reminder per event."""

from __future__ import annotations

import json
import logging

import pytest

from services import timeline
from services.db import db, transaction, utcnow
from services.errors import SignatureInvalid
from services.models import ProviderEvent
from services.panels import remnawave_webhook as protocol
from tests.conftest import FrozenClock
from tests.fakes.remnawave import remnawave_signature
from tests.helpers import assert_error, post_concurrently
from tests.support.admin import outbox_rows, paid_subscription
from tests.support.panels import app_env, fresh_panel_sessions, wire  # noqa: F401
from tests.support.worker import run_worker

URL = "/webhook/remnawave"
SECRET = "TestWebhookSecret123"
# PROTOCOLS.md §8, computed.
VECTOR_BODY = (b'{"scope":"user","event":"user.expired","timestamp":"2026-01-07T11:57:29.426Z",'
               b'"data":{"id":42,"username":"tg_123456789","status":"EXPIRED"},"meta":null}')
VECTOR_SIGNATURE = "0ec7b7fb531f09e9ca68753bbc0604c6ca37e18076cf03f3870e9b5bf03e4b4d"
USER = "tg42_pro"
REMINDER = "notify.subscription_expiry"


@pytest.fixture
def app(make_app, remnawave):
    app = make_app(**app_env(wire("remnawave", remnawave)))
    app.config["CLOCK"] = FrozenClock(utcnow().replace(microsecond=0))
    return app


@pytest.fixture
def buyer(app, client, remnawave) -> str:
    """A paid subscription whose Remnawave user the panel worker created; its orderId."""
    order_id = paid_subscription(client)["orderId"]
    run_worker(app, "panel")
    return order_id


def deliver(client, body: bytes, signature: str | None = None):
    headers = {"Content-Type": "application/json", "User-Agent": "Remnawave",
               "X-Remnawave-Timestamp": "2026-01-07T11:57:29.426Z"}
    if signature != "":
        headers["X-Remnawave-Signature"] = signature or remnawave_signature(SECRET, body)
    return client.post(URL, data=body, headers=headers)


def stored_events(app) -> list[ProviderEvent]:
    with app.app_context(), transaction():
        return list(db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars())


def reminders(app) -> list[str]:
    return [row.payload["text"] for row in outbox_rows(app, "telegram", REMINDER)]


def test_the_protocol_vector_verifies():
    protocol.verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, SECRET)
    with pytest.raises(SignatureInvalid):
        protocol.verify_signature(VECTOR_BODY.replace(b"EXPIRED", b"ACTIVE"), VECTOR_SIGNATURE, SECRET)


def test_the_vector_delivery_is_stored_and_acknowledged(app, client):
    response = deliver(client, VECTOR_BODY, VECTOR_SIGNATURE)
    assert response.status_code == 200
    assert response.get_json() == {**response.get_json(), "success": True, "outcome": "ignored", "duplicate": False}
    [event] = stored_events(app)
    assert (event.provider, event.event_type, event.body, event.claimed_order_id) == (
        "remnawave", "user.expired", VECTOR_BODY, None)
    assert event.headers["X-Remnawave-Timestamp"] == "2026-01-07T11:57:29.426Z"
    assert reminders(app) == []  # tg_123456789 is no user of ours


@pytest.mark.parametrize("signature", ["", "0" * 64, VECTOR_SIGNATURE.upper()[:-1] + "0", "not hex"])
def test_a_bad_or_missing_signature_is_401_and_stores_nothing(app, client, signature):
    assert_error(deliver(client, VECTOR_BODY, signature), 401, "invalid_signature")
    assert stored_events(app) == []


def test_a_rejection_is_logged_without_the_secret(client, caplog):
    with caplog.at_level(logging.WARNING):
        deliver(client, VECTOR_BODY, "0" * 64)
    assert any("rejected a Remnawave webhook" in r.getMessage() for r in caplog.records)
    assert SECRET not in " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def test_without_a_secret_the_endpoint_is_503(make_app, remnawave):
    env = app_env(wire("remnawave", remnawave), REMNAWAVE_WEBHOOK_SECRET="")
    assert_error(deliver(make_app(**env).test_client(), VECTOR_BODY, VECTOR_SIGNATURE), 503, "not_configured")


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'"user.expired"'])
def test_a_signed_body_that_is_no_json_object_is_400(app, client, body):
    assert_error(deliver(client, body), 400)
    assert stored_events(app) == []


@pytest.mark.parametrize("event, meta, says", [
    ("user.expires_in_72_hours", None, "expires in 72 hours"),
    ("user.expires_in_24_hours", None, "expires in 24 hours"),
    ("user.expired", None, "has expired"),
    ("user.expired_24_hours_ago", None, "has expired"),
    ("user.expiration", {"expiration": 48}, "expires in 48 hours"),
    ("user.expiration", {"expiration": 1}, "expires in 1 hour."),
    ("user.expiration", {"expiration": -24}, "has expired"),
])
def test_an_expiry_event_for_our_user_reminds_the_buyer_once(app, client, remnawave, buyer, event, meta, says):
    body = remnawave.webhook_body(event, USER, meta=meta)
    first, again = deliver(client, body), deliver(client, body)
    assert first.get_json()["duplicate"] is False and again.get_json()["duplicate"] is True
    [text] = reminders(app)
    assert says in text and "“pro”" in text and "https://pay.example.test/miniapp/" in text
    [message] = outbox_rows(app, "telegram", REMINDER)
    assert message.payload["chat_id"] == 42 and message.order_pk is not None
    [event_row] = [e for e in stored_events(app) if e.provider == "remnawave"]
    assert event_row.claimed_order_id == buyer and event_row.details["hoursLeft"] is not None


def test_the_event_and_its_reminder_are_on_the_orders_timeline(app, client, remnawave, buyer):
    deliver(client, remnawave.webhook_body("user.expires_in_24_hours", USER))
    with app.app_context():
        entries = timeline.order_timeline(buyer)["entries"]
    assert [e["title"] for e in entries if e["kind"] == "event"][-1] == "remnawave user.expires_in_24_hours"
    assert len([e for e in entries if e["kind"] == "notification"]) == 3  # paid, link, reminder


def test_each_distinct_event_sends_its_own_reminder(app, client, remnawave, buyer):
    for hours in (72, 48, 24):
        deliver(client, remnawave.webhook_body(f"user.expires_in_{hours}_hours", USER))
    assert [text.split("expires in ")[1].split(".")[0] for text in reminders(app)] == [
        "72 hours", "48 hours", "24 hours"]


@pytest.mark.parametrize("event, meta", [("user.modified", None), ("user.revoked", None), ("user.enabled", None),
                                         ("user.expiration", None), ("user.expiration", {"expiration": "soon"})])
def test_other_events_for_our_user_are_stored_and_ignored(app, client, remnawave, buyer, event, meta):
    response = deliver(client, remnawave.webhook_body(event, USER, meta=meta))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert reminders(app) == []
    assert [e.event_type for e in stored_events(app) if e.provider == "remnawave"] == [event]


def test_an_expiry_event_for_a_user_we_did_not_create_sends_nothing(app, client, remnawave, buyer):
    with remnawave._lock:
        remnawave.users["someone_else"] = {**remnawave.users[USER], "username": "someone_else"}
    assert deliver(client, remnawave.webhook_body("user.expired", "someone_else")).status_code == 200
    assert reminders(app) == []


def test_an_event_of_another_scope_is_stored(app, client):
    body = json.dumps({"scope": "node", "event": "node.connection_lost", "timestamp": "2026-01-07T11:57:29.426Z",
                       "data": {"uuid": "n1", "name": "Node 1"}, "meta": None}).encode()
    assert deliver(client, body).get_json()["outcome"] == "ignored"
    assert [e.event_type for e in stored_events(app)] == ["node.connection_lost"]


def test_database_down_is_503(make_app, remnawave, tmp_path):
    env = app_env(wire("remnawave", remnawave), DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.db")
    assert_error(deliver(make_app(**env).test_client(), VECTOR_BODY, VECTOR_SIGNATURE), 503, "database_unavailable")


def test_concurrent_duplicate_deliveries_send_one_reminder(app, base_env, client, remnawave, buyer, tmp_path):
    from tests.support.live import LiveServer

    body = remnawave.webhook_body("user.expires_in_24_hours", USER)
    env = {**base_env, **app_env(wire("remnawave", remnawave))}
    with LiveServer(env, workers=2, log_path=tmp_path / "gunicorn.log") as live:
        headers = {"Content-Type": "application/json", "X-Remnawave-Signature": remnawave_signature(SECRET, body)}
        responses = post_concurrently(f"{live.url}{URL}", body, headers, 20)
    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 19
    assert len(reminders(app)) == 1
