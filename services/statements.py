"""The hot paths' Core statements, built once per shape with bound parameters for services/driver.py to compile
and run: rebuilding a statement per call was a third of a webhook's CPU (docs/performance.md)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, bindparam, exists, false, null, select, true, type_coerce, union_all, update
from sqlalchemy.dialects import postgresql, sqlite


@functools.lru_cache(maxsize=64)
def update_by_key(table: Table, names: tuple[str, ...]):
    """UPDATE of these columns of the row whose primary key is `by_key`; its values as `by_key_values` gives them."""
    (primary_key,) = table.primary_key.columns
    return (update(table).where(primary_key == bindparam("by_key"))
            .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names}))


def by_key_values(key: Any, values: dict[str, Any]) -> dict[str, Any]:
    return {"by_key": key, **{f"new_{name}": value for name, value in values.items()}}


@functools.lru_cache(maxsize=256)
def insert_ignore_statement(table: Table, conflict_columns: tuple[str, ...], keys: tuple[str, ...], dialect: str):
    """INSERT of one row ON CONFLICT DO NOTHING RETURNING its id, its values named by their column keys."""
    module = postgresql if dialect == "postgresql" else sqlite
    return (module.insert(table).values({key: bindparam(key, type_=table.c[key].type) for key in keys})
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(table.c.id))


@functools.lru_cache(maxsize=64)
def insert_rows_statement(table: Table, conflict_columns: tuple[str, ...], keys: tuple[str, ...], count: int,
                          dialect: str):
    """INSERT of `count` rows ON CONFLICT DO NOTHING, the values of row i named `<key>_<i>`."""
    module = postgresql if dialect == "postgresql" else sqlite
    rows = [{key: bindparam(f"{key}_{index}", type_=table.c[key].type) for key in keys} for index in range(count)]
    return module.insert(table).values(rows).on_conflict_do_nothing(index_elements=list(conflict_columns))


@functools.lru_cache(maxsize=16)
def stored_row_statement(table: Table, conflict_columns: tuple[str, ...], found_columns: tuple[str, ...]):
    """The id and `found_columns` of the row with these values of the conflict columns."""
    return select(table.c.id, *(table.c[name] for name in found_columns)).where(*_same_key(table, conflict_columns))


@functools.lru_cache(maxsize=16)
def insert_or_find_statement(table: Table, conflict_columns: tuple[str, ...], keys: tuple[str, ...],
                             found_columns: tuple[str, ...]):
    """PostgreSQL: `insert_ignore_statement`, and in the same statement the row it conflicted with, if the
    statement's snapshot holds it: rows of (id, inserted, *found_columns). That snapshot cannot see the row the
    INSERT writes, so at most one part answers."""
    claimed = insert_ignore_statement(table, conflict_columns, keys, "postgresql").cte("claimed")
    # Typed as their columns: the values are converted by the first part's column types.
    inserted = select(claimed.c.id, true().label("inserted"),
                      *(type_coerce(null(), table.c[name].type).label(name) for name in found_columns))
    stored = (select(table.c.id, false().label("inserted"), *(table.c[name] for name in found_columns))
              .where(*_same_key(table, conflict_columns), ~exists(select(claimed.c.id))))
    return union_all(inserted, stored)


def _same_key(table: Table, columns: tuple[str, ...]) -> list:
    return [table.c[name] == bindparam(name, type_=table.c[name].type) for name in columns]
