"""The balance ledger: signed entries, one per order and reason, summed into a balance."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select

from services.db import reading
from services.driver import insert_ignore_rows
from services.models import LedgerEntry

if TYPE_CHECKING:
    from services.orders import OrderRow


def post(order: OrderRow, amount: int, reason: str, unit: str, now: datetime) -> None:
    """Add one entry for this order and reason, unless it was posted before (written later: nothing reads it back
    in the transaction, see services/unit.py)."""
    insert_ignore_rows(LedgerEntry, [{
        "telegram_id": order.telegram_id,
        "amount": amount,
        "unit": unit,
        "reason": reason,
        "order_pk": order.id,
        "created_at": now,
    }], ["order_pk", "reason"])


_BALANCE_QUERY = (select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                  .where(LedgerEntry.telegram_id == bindparam("telegram_id")))


def balance(telegram_id: int) -> int:
    """The committed balance, read without the ORM session or any write lock."""
    with reading() as connection:
        return int(connection.execute(_BALANCE_QUERY, {"telegram_id": telegram_id}).scalar_one())
