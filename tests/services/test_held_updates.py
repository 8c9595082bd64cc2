"""Updates of a locked row held for the write unit's COMMIT (services/unit.py `hold_update`, orders.save), and the
writes sent with a PostgreSQL COMMIT as one statement (services/driver.py `as_few_statements`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, column, insert, select, table, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from services import driver, events, notices, orders, unit
from services.db import db, transaction
from services.models import Fulfilment, LedgerEntry, Order, OutboxMessage
from services.outbox import MERCHANT, Message, enqueue_all
from services.unit import hold_update, write_unit
from tests.helpers import create

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 12, 5, 10, 0, tzinfo=timezone.utc)
ORDERS = Order.__table__


@pytest.fixture
def order_id(app, client) -> str:
    assert create(client, orderId="held-1", telegramId=7, credit=10).status_code == 201
    return "held-1"


def stored(order_id: str) -> Order:
    with transaction():
        return db.session.execute(select(Order).where(Order.order_id == order_id)).scalar_one()


def held_in_unit() -> dict:
    return driver.CURRENT_UNIT.get().held


def claim_fulfilment(order: orders.OrderRow) -> int | None:
    return driver.insert_ignore(Fulfilment, {"order_pk": order.id, "kind": "credit", "event_pk": None,
                                             "details": {}, "created_at": NOW}, ["order_pk", "kind"])


def test_a_locked_orders_update_waits_past_an_insert_for_the_commit(app, order_id):
    with app.app_context():
        with write_unit():
            order = orders.lock_order(order_id)
            orders.save(order, NOW, status=orders.PAID, paid_at=NOW)
            assert claim_fulfilment(order) is not None
            assert list(held_in_unit().values()) == [{"status": "paid", "paid_at": NOW, "updated_at": NOW}]
        assert stored(order_id).status == orders.PAID


def test_a_read_after_a_held_update_sees_it(app, order_id):
    with app.app_context():
        with write_unit():
            orders.save(orders.lock_order(order_id), NOW, status=orders.PAID, paid_at=NOW)
            assert orders.lock_order(order_id).status == orders.PAID
            assert held_in_unit() == {}


def test_two_saves_of_a_locked_order_are_one_update_with_both_changes(app, order_id):
    with app.app_context():
        with write_unit():
            order = orders.lock_order(order_id)
            orders.save(order, NOW, status=orders.PAID, paid_at=NOW)
            orders.save(order, NOW, renewal={"chargeId": "charge-1"})
            assert len(held_in_unit()) == 1
        row = stored(order_id)
        assert (row.status, row.renewal) == (orders.PAID, {"chargeId": "charge-1"})


def test_an_order_the_unit_did_not_lock_is_written_at_once_and_must_exist(app, order_id):
    with app.app_context():
        with transaction():
            order = orders.lock_order(order_id)
        with write_unit():
            orders.save(order, NOW, status=orders.CANCELLED)
            assert held_in_unit() == {}
        assert stored(order_id).status == orders.CANCELLED
        with pytest.raises(RuntimeError, match="is not stored"):
            with write_unit():
                orders.save(dataclasses.replace(order, id=999_999), NOW, status=orders.PAID)


def test_a_held_update_may_not_change_a_key(app, order_id):
    with app.app_context():
        with pytest.raises(ValueError, match="must not change a key of orders: order_id"):
            with write_unit():
                order = orders.lock_order(order_id)
                hold_update(ORDERS, order.id, {"order_id": "another"})
        assert stored(order_id).order_id == order_id


def test_a_held_update_that_fails_fails_the_commit_and_nothing_of_the_unit_is_stored(app, order_id):
    with app.app_context():
        with pytest.raises(IntegrityError):
            with write_unit():
                order = orders.lock_order(order_id)
                assert claim_fulfilment(order) is not None
                # No purchase 999999: the foreign key fails the update, at the COMMIT.
                orders.save(order, NOW, status=orders.PAID, purchase_id=999_999)
        assert stored(order_id).status == orders.PENDING
        with transaction():
            assert db.session.execute(select(Fulfilment)).first() is None


def test_a_unit_that_raises_drops_its_held_updates(app, order_id):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with write_unit():
                orders.save(orders.lock_order(order_id), NOW, status=orders.PAID, paid_at=NOW)
                raise RuntimeError("bug")
        assert stored(order_id).status == orders.PENDING


def test_a_new_webhook_writes_its_order_after_the_fulfilment_with_the_commit(app, order_id, monkeypatch):
    before_commit: list[str] = []
    at_commit: list[str] = []
    run, commit_after = driver._run, unit.commit_after

    def record_run(connection, compiled, values):
        if not at_commit:
            before_commit.append(compiled.sql)
        return run(connection, compiled, values)

    def record_commit(connection, statements):
        at_commit.extend(compiled.sql for compiled, _values in statements)
        return commit_after(connection, statements)

    monkeypatch.setattr(driver, "_run", record_run)
    monkeypatch.setattr(unit, "commit_after", record_commit)
    notice = notices.Notice(event_key="held:paid", event_type="CONFIRMED", action=notices.PAID, order_id=order_id,
                            amount=Decimal("100"), currency="RUB")
    delivery = notices.Delivery(provider="sbp", body=b"{}", headers={}, remote_addr="127.0.0.1")
    with app.app_context():
        assert events.ingest(delivery, notice, app.config["SETTINGS"], NOW).outcome == "processed"
        assert stored(order_id).status == orders.PAID
    assert any(sql.startswith("INSERT INTO fulfilments") for sql in before_commit)
    assert not any(sql.startswith("UPDATE orders") for sql in before_commit)
    assert [sql for sql in at_commit if sql.startswith("UPDATE orders")] != []


def test_postgresql_sends_the_writes_to_distinct_tables_as_one_statement_each_part_with_its_values(
        app, order_id, monkeypatch):
    sent: list[list[str]] = []
    as_few = driver.as_few_statements

    def record(statements):
        combined = as_few(statements)
        sent.append([sql for sql, _values in combined])
        return combined

    monkeypatch.setattr(driver, "as_few_statements", record)
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite runs each statement as it is, under its writer lock")
        with write_unit():
            order = orders.lock_order(order_id)
            orders.save(order, NOW, status=orders.PAID, paid_at=NOW)
            driver.insert_ignore_rows(LedgerEntry, [{"telegram_id": 7, "amount": 10, "unit": "credits",
                                                     "reason": "order_paid", "order_pk": order.id,
                                                     "created_at": NOW}], ["order_pk", "reason"])
            enqueue_all([Message(MERCHANT, "order.paid", "merchant:held-1:paid", {"n": 1})], LATER)
        with transaction():
            # Each part has a created_at of its own, and got its own value.
            assert db.session.execute(select(LedgerEntry.created_at)).scalar_one() == NOW
            assert db.session.execute(select(OutboxMessage.created_at)).scalar_one() == LATER
        assert stored(order_id).status == orders.PAID
    [[statement]] = sent
    assert statement.startswith("WITH w0 AS (INSERT INTO ledger_entries") and statement.endswith(") SELECT 1")
    assert "w2 AS (UPDATE orders" in statement


def test_two_writes_of_one_table_or_a_read_are_not_combined():
    first = compiled(insert(table("first", column("n"))).values(n=bindparam("n")))
    second = compiled(update(table("second", column("n"))).values(n=bindparam("n")))
    read = compiled(select(column("n")).select_from(table("second")).where(column("n") == bindparam("n")))
    assert driver.as_few_statements([(first, {"n": 1}), (second, {"n": 2})]) == [(
        "WITH w0 AS (INSERT INTO first (n) VALUES (%s)), w1 AS (UPDATE second SET n=%s) SELECT 1", [1, 2])]
    assert len(driver.as_few_statements([(first, {"n": 1}), (first, {"n": 2})])) == 2
    assert len(driver.as_few_statements([(first, {"n": 1}), (read, {"n": 2})])) == 2
    assert driver.as_few_statements([(first, {"n": 1})]) == [(first.sql, {"n": 1})]


def test_each_part_takes_its_values_in_the_order_its_sql_names_them_on_every_run():
    first = compiled(insert(table("first", column("n"))).values(n=bindparam("n")))
    keyed = table("second", column("n"), column("k"))
    second = compiled(update(keyed).where(keyed.c.k == bindparam("k")).values(n=bindparam("n")))
    for run in range(2):
        assert driver.as_few_statements([(first, {"n": run}), (second, {"k": f"key{run}", "n": 10 + run})]) == [(
            "WITH w0 AS (INSERT INTO first (n) VALUES (%s)), w1 AS (UPDATE second SET n=%s WHERE second.k = %s) "
            "SELECT 1", [run, 10 + run, f"key{run}"])]


def compiled(statement):
    return driver._driver_statement(statement, postgresql.psycopg.dialect())
