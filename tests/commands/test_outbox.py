"""`flask outbox retry --dead`: dead-lettered messages go back in the queue, audited."""

from __future__ import annotations

from services.audit import AuditLog
from services.db import db, transaction
from services.models import OutboxMessage
from tests.support.admin import outbox_rows


def dead(app, channel: str, number: int, attempts: int = 8) -> int:
    with app.app_context(), transaction():
        row = OutboxMessage(channel=channel, kind=f"{'order' if channel == 'merchant' else 'notify'}.paid",
                            dedupe_key=f"{channel}:{number}", payload={}, status="dead", attempts=attempts,
                            last_error="gave up")
        db.session.add(row)
        db.session.flush()
        return row.id


def test_retry_dead_requeues_every_dead_message(app, clock, runner):
    dead(app, "merchant", 1)
    dead(app, "telegram", 2)
    result = runner.invoke(args=["outbox", "retry", "--dead"])
    assert result.exit_code == 0 and "Queued 2 dead-lettered message(s) again." in result.output
    rows = outbox_rows(app)
    assert [(row.status, row.attempts, row.next_attempt_at) for row in rows] == [("pending", 0, clock.now)] * 2
    assert rows[0].last_error == "gave up"
    with app.app_context(), transaction():
        [entry] = db.session.execute(db.select(AuditLog)).scalars()
    assert entry.action == "outbox.retry_dead" and len(entry.details["ids"]) == 2


def test_retry_dead_of_one_channel(app, runner):
    dead(app, "merchant", 1)
    dead(app, "telegram", 2)
    result = runner.invoke(args=["outbox", "retry", "--dead", "--channel", "merchant"])
    assert "Queued 1 dead-lettered message(s) again on channel merchant." in result.output
    assert [row.status for row in outbox_rows(app)] == ["pending", "dead"]


def test_retry_requires_dead(runner):
    result = runner.invoke(args=["outbox", "retry"])
    assert result.exit_code == 2 and "--dead" in result.output
