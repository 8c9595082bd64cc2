"""GET /admin/events: the events that need support, newest first, with the ids /admin/events/{id}/assign takes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.db import db, transaction
from services.models import ProviderEvent
from tests.conftest import AUTH
from tests.helpers import assert_error
from tests.support.admin import ADMIN, app, create_order, fresh_panel_tokens  # noqa: F401

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


def add_event(app, key: str, status: str, minutes: int, error: str | None = None, amount: str = "100",
              order_id: str | None = None) -> int:
    with app.app_context(), transaction():
        event = ProviderEvent(provider="bmc", event_key=key, event_type="donation.created", status=status,
                              amount=Decimal(amount), currency="RUB", verification="valid", details={}, headers={},
                              body=b"{}", error=error, claimed_order_id=order_id,
                              received_at=T0 + timedelta(minutes=minutes))
        db.session.add(event)
    return event.id


@pytest.fixture
def events(app) -> dict[str, int]:
    return {
        "unmatched-old": add_event(app, "e1", "unmatched", 1),
        "processed": add_event(app, "e2", "processed", 2),
        "mismatch": add_event(app, "e3", "mismatch", 3, "amount 90 RUB differs from the order's 100 RUB",
                              amount="90", order_id="order-9"),
        "failed": add_event(app, "e4", "failed", 4, "KeyError: 'total_amount'"),
        "conflict": add_event(app, "e5", "conflict", 5),
        "unmatched-new": add_event(app, "e6", "unmatched", 6),
    }


def listed(client, query: str = "") -> dict:
    response = client.get(f"/admin/events{query}", headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_lists_what_needs_support_newest_first(client, events):
    body = listed(client)
    assert body["success"] is True and body["nextBefore"] is None
    assert [event["id"] for event in body["events"]] == [
        events["unmatched-new"], events["conflict"], events["failed"], events["mismatch"], events["unmatched-old"]]


def test_each_event_says_what_support_needs(client, events):
    mismatch = next(event for event in listed(client)["events"] if event["id"] == events["mismatch"])
    assert mismatch == {"id": events["mismatch"], "provider": "bmc", "eventType": "donation.created",
                        "status": "mismatch", "amount": 90, "currency": "RUB", "receivedAt": "2026-11-20T09:03:00Z",
                        "orderId": "order-9", "reason": "amount 90 RUB differs from the order's 100 RUB"}
    unmatched = next(event for event in listed(client)["events"] if event["id"] == events["unmatched-new"])
    assert unmatched["orderId"] is None and "no order" in unmatched["reason"].lower()


@pytest.mark.parametrize("status, names", [
    ("unmatched", ["unmatched-new", "unmatched-old"]), ("failed", ["failed"]), ("conflict", ["conflict"]),
    ("mismatch", ["mismatch"]),
])
def test_filters_by_status(client, events, status, names):
    assert [event["id"] for event in listed(client, f"?status={status}")["events"]] == [events[n] for n in names]


def test_pages_through_with_limit_and_before(client, events):
    first = listed(client, "?limit=2")
    assert [event["id"] for event in first["events"]] == [events["unmatched-new"], events["conflict"]]
    assert first["nextBefore"] == events["conflict"]
    second = listed(client, f"?limit=2&before={first['nextBefore']}")
    assert [event["id"] for event in second["events"]] == [events["failed"], events["mismatch"]]
    third = listed(client, f"?limit=2&before={second['nextBefore']}")
    assert [event["id"] for event in third["events"]] == [events["unmatched-old"]] and third["nextBefore"] is None


def test_a_listed_id_is_what_assign_takes(client, events):
    create_order(client, "order-3")
    event_id = listed(client, "?status=unmatched")["events"][0]["id"]
    assigned = client.post(f"/admin/events/{event_id}/assign", json={"orderId": "order-3", "force": True},
                           headers=ADMIN)
    assert assigned.status_code == 200, assigned.get_json()
    assert event_id not in [event["id"] for event in listed(client)["events"]]


@pytest.mark.parametrize("query, field", [
    ("?status=processed", "status"), ("?status=", "status"), ("?limit=0", "limit"), ("?limit=101", "limit"),
    ("?limit=ten", "limit"), ("?before=0", "before"), (f"?before={2**31}", "before"), ("?page=2", "page"),
])
def test_bad_query_is_422_naming_the_parameter(client, query, field):
    error = assert_error(client.get(f"/admin/events{query}", headers=ADMIN), 422, "validation_error")
    assert field in error["fields"]


@pytest.mark.parametrize("headers", [{}, AUTH, {"Authorization": "Bearer wrong"}])
def test_needs_the_admin_key(client, headers):
    assert_error(client.get("/admin/events", headers=headers), 401, "unauthorized")


def test_without_admin_key_configured_is_503(make_app):
    assert_error(make_app().test_client().get("/admin/events", headers=ADMIN), 503, "not_configured")


def test_is_described_in_the_openapi_document(client):
    operation = client.get("/api/openapi.json").get_json()["paths"]["/admin/events"]["get"]
    assert operation["security"] == [{"adminKey": []}]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"status", "limit", "before"}
    assert {"200", "401", "422", "503"} <= set(operation["responses"])
