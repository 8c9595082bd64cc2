"""Fixtures running each fake provider for the duration of one test."""

from __future__ import annotations

from typing import Iterator

import pytest

from .base import FakeServer, RecordedRequest, Response
from .cryptopay import FakeCryptoPay
from .marzban import FakeMarzban
from .merchant import FakeMerchant
from .remnawave import FakeRemnawave
from .tbank import FakeTBank
from .telegram import FakeTelegram
from .xui import FakeXui
from .yookassa import FakeYooKassa


class Sink(FakeServer):
    """Accepts anything with 200 OK; stands in for the gateway when testing the fakes' senders."""

    def handle(self, req: RecordedRequest) -> Response:
        return Response(200, "OK")


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


@pytest.fixture
def tbank() -> Iterator[FakeTBank]:
    with FakeTBank("TinkoffBankTest", "TinkoffBankTest") as server:
        yield server


@pytest.fixture
def cryptopay() -> Iterator[FakeCryptoPay]:
    with FakeCryptoPay() as server:
        yield server


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def marzban() -> Iterator[FakeMarzban]:
    with FakeMarzban() as server:
        yield server


@pytest.fixture
def merchant() -> Iterator[FakeMerchant]:
    with FakeMerchant() as server:
        yield server


@pytest.fixture
def yookassa() -> Iterator[FakeYooKassa]:
    with FakeYooKassa() as server:
        yield server


@pytest.fixture
def remnawave() -> Iterator[FakeRemnawave]:
    with FakeRemnawave() as server:
        yield server


@pytest.fixture
def xui() -> Iterator[FakeXui]:
    """A current panel (v3.1+ client routes, CSRF) under a random-looking web base path."""
    with FakeXui(base_path="/abc123/") as server:
        yield server


@pytest.fixture
def xui_legacy() -> Iterator[FakeXui]:
    """A v2.x panel: inbound client routes, no csrf-token route."""
    with FakeXui(base_path="/abc123/", routes="legacy", csrf=False) as server:
        yield server
