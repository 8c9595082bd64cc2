"""The public QR image (no token) is served only while its order can still be paid (SPEC §7).

A paid, expired or unknown orderId all answer the one same 404, so the endpoint tells nobody which
orderIds exist, and nobody keeps paying a QR code that no longer settles anything.
"""

from __future__ import annotations

import re

import pytest

from services.db import db, transaction
from services.models import Order
from tests.conftest import AUTH
from tests.helpers import create


@pytest.fixture
def pending(client, clock):
    created = create(client, orderId="qr-1")
    assert created.status_code == 201
    return created.get_json()


def unknown_404(client, fmt: str = "png") -> tuple[int, dict]:
    response = client.get(f"/api/payment/never-created/qr.{fmt}")
    return response.status_code, response.get_json()


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_pending_order_has_its_qr(client, pending, fmt):
    assert client.get(f"/api/payment/qr-1/qr.{fmt}").status_code == 200


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_paid_order_answers_like_an_unknown_one(client, pending, fmt):
    assert client.post(f"/sandbox/sbp/{pending['qrcId']}/pay", headers=AUTH).status_code == 200
    response = client.get(f"/api/payment/qr-1/qr.{fmt}")
    assert (response.status_code, response.get_json()) == unknown_404(client, fmt)
    assert unknown_404(client, fmt)[0] == 404


def test_order_past_its_expiry_answers_like_an_unknown_one(client, pending, clock):
    clock.advance(seconds=900)
    response = client.get("/api/payment/qr-1/qr.png")
    assert (response.status_code, response.get_json()) == unknown_404(client)


@pytest.mark.parametrize("status", ["expired", "cancelled", "failed"])
def test_order_no_longer_pending_answers_like_an_unknown_one(app, client, pending, status):
    with app.app_context(), transaction():
        db.session.execute(db.update(Order).where(Order.order_id == "qr-1").values(status=status))
    response = client.get("/api/payment/qr-1/qr.png")
    assert (response.status_code, response.get_json()) == unknown_404(client)


def test_a_cached_etag_does_not_revive_a_paid_orders_qr(client, pending):
    etag = client.get("/api/payment/qr-1/qr.png").headers["ETag"]
    client.post(f"/sandbox/sbp/{pending['qrcId']}/pay", headers=AUTH)
    assert client.get("/api/payment/qr-1/qr.png", headers={"If-None-Match": etag}).status_code == 404


def test_caches_keep_the_image_no_longer_than_the_order_is_payable(client, pending, clock):
    clock.advance(seconds=600)
    cache_control = client.get("/api/payment/qr-1/qr.png").headers["Cache-Control"]
    assert int(re.search(r"max-age=(\d+)", cache_control).group(1)) <= 300
