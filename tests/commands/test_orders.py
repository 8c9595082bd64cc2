"""`flask orders show/list`: order timelines and listings for operators."""

from __future__ import annotations

import json

from tests.support.admin import create_order, pay


def test_show_prints_the_timeline(app, client, clock, runner):
    pay(client, create_order(client, "order-7", telegramId=3, credit=5))
    result = runner.invoke(args=["orders", "show", "order-7"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Order order-7: paid, 100 RUB via sbp"
    assert any("created" in line and "Order created" in line for line in lines)
    assert any("event" in line and "sbp CONFIRMED [processed]" in line for line in lines)
    assert any("Fulfilment: credit" in line for line in lines)
    assert any("verification: sandbox" in line for line in lines)


def test_show_as_json(app, client, clock, runner, make_app):
    pay(client, create_order(client, "order-7", telegramId=3, credit=5))
    result = runner.invoke(args=["orders", "show", "order-7", "--json"])
    document = json.loads(result.output)
    assert (document["orderId"], document["status"], document["amount"]) == ("order-7", "paid", 100)
    kinds = [entry["kind"] for entry in document["timeline"]]
    assert kinds[0] == "created" and "event" in kinds and "fulfilment" in kinds
    assert document["timeline"][0]["at"] == "2026-11-23T10:00:00Z"


def test_show_unknown_order_fails(runner):
    result = runner.invoke(args=["orders", "show", "missing"])
    assert result.exit_code == 1 and "No order with orderId 'missing'" in result.output


def test_list_filters_by_status_and_limits(app, client, clock, runner):
    for number in range(3):
        create_order(client, f"pending-{number}")
        clock.advance(seconds=1)
    pay(client, create_order(client, "paid-1"))
    result = runner.invoke(args=["orders", "list", "--status", "pending", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.output.splitlines()] == ["pending-2", "pending-1"]
    paid = runner.invoke(args=["orders", "list", "--status", "paid", "--json"])
    assert [json.loads(line)["orderId"] for line in paid.output.splitlines()] == ["paid-1"]


def test_list_refuses_an_unknown_status(runner):
    result = runner.invoke(args=["orders", "list", "--status", "lost"])
    assert result.exit_code == 2 and "Invalid value for '--status'" in result.output
