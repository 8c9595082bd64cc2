"""Queuing outbox rows: one statement for the messages of one cause, each still deduplicated on its own key."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from services import driver, outbox
from services.db import db, transaction
from services.models import OutboxMessage

NOW = datetime(2026, 12, 4, 23, 0, tzinfo=timezone.utc)


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """The SQL of every statement run on the driver's cursor."""
    seen: list[str] = []
    run = driver._run

    def counted(connection, compiled, values):
        seen.append(compiled.sql)
        return run(connection, compiled, values)

    monkeypatch.setattr(driver, "_run", counted)
    return seen


def stored() -> dict[str, tuple[str, str, dict]]:
    with transaction():
        rows = db.session.execute(select(OutboxMessage)).scalars().all()
        return {row.dedupe_key: (row.channel, row.kind, row.payload) for row in rows}


def test_the_messages_of_one_cause_are_queued_in_one_statement(app, statements):
    merchant = outbox.Message(outbox.MERCHANT, "order.paid", "merchant:o-1:paid", {"amount": Decimal("10.50")})
    buyer = outbox.Message("telegram", "notify.paid", "telegram:o-1:paid", {"chat_id": 7, "text": "Paid"})
    with app.app_context():
        with transaction():
            outbox.enqueue_all([merchant, None, buyer], NOW)
        assert len(statements) == 1
        assert stored() == {"merchant:o-1:paid": ("merchant", "order.paid", {"amount": Decimal("10.50")}),
                            "telegram:o-1:paid": ("telegram", "notify.paid", {"chat_id": 7, "text": "Paid"})}
        with transaction():
            row = db.session.execute(select(OutboxMessage).where(OutboxMessage.channel == "telegram")).scalar_one()
            assert (row.status, row.attempts, row.next_attempt_at, row.created_at) == ("pending", 0, NOW, NOW)


def test_a_repeated_cause_queues_only_the_messages_not_yet_queued(app):
    first = outbox.Message(outbox.MERCHANT, "order.paid", "merchant:o-2:paid", {"v": 1})
    with app.app_context():
        with transaction():
            outbox.enqueue_all([first], NOW)
        with transaction():
            outbox.enqueue_all([outbox.Message(outbox.MERCHANT, "order.paid", "merchant:o-2:paid", {"v": 2}),
                                outbox.Message("telegram", "notify.paid", "telegram:o-2:paid", {"v": 3})], NOW)
        assert stored() == {"merchant:o-2:paid": ("merchant", "order.paid", {"v": 1}),
                            "telegram:o-2:paid": ("telegram", "notify.paid", {"v": 3})}


def test_nothing_to_send_runs_no_statement(app, statements):
    with app.app_context():
        with transaction():
            outbox.enqueue_all([None, None], NOW)
        assert statements == []
        assert stored() == {}
