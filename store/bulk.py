"""A batch's rows in one statement per table, on either store.

`connection.execute(statement, rows)` is an executemany: SQLite's driver loops over the rows in
C, but psycopg sends them one by one (in a pipeline), and its Python per row was most of a
no-op command's store time on PostgreSQL (docs/throughput.md). So on PostgreSQL an insert asks
SQLAlchemy for its multi-row VALUES form (`insertmanyvalues`, which it uses for an INSERT with
RETURNING) and an update joins the table to `unnest` of one array per column (a statement text
that does not change with the number of rows, so it is compiled and prepared once); SQLite keeps
the executemany, which is cheaper there (and SQLite has no arrays).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert, Update

KEY = "b_id"
"""The name an update's rows give their primary key (a column of the table may not be bound
under its own name in its own UPDATE)."""


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert these rows (all with the same keys)."""
    if rows:
        connection.execute(_insert(table, connection.dialect.name), list(rows))


def update_rows(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    now: datetime,
) -> None:
    """Set `columns` (and `updated_at` to `now`) on the rows whose primary key is each row's
    `KEY`; every row carries every column."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(_by_key(table), [{**row, "updated_at": now} for row in rows])
        return
    arrays = {name: [row[name] for row in rows] for name in (KEY, *columns)}
    connection.execute(_unnest_update(table, tuple(columns)), arrays | {"updated_at": now})


@cache
def _unnest_update(table: Table, columns: tuple[str, ...]) -> Update:
    """`UPDATE t SET c = batch.c ... FROM unnest(:key, :c, ...) AS batch(key, c, ...)`: one
    array per column, so the statement is the same for any number of rows (compiled once)."""
    key = table.c[_primary_key(table)]
    names = (KEY, *columns)
    types = {KEY: key.type, **{name: table.c[name].type for name in columns}}
    arrays = (bindparam(name, type_=postgresql.ARRAY(types[name])) for name in names)
    batch = func.unnest(*arrays).table_valued(*names).render_derived(name="batch")
    return (
        update(table)
        .where(key == batch.c[KEY])
        .values({name: batch.c[name] for name in columns} | {"updated_at": bindparam("updated_at")})
    )


def _insert(table: Table, dialect: str) -> Insert:
    """PostgreSQL: RETURNING the key, which makes SQLAlchemy send one multi-row statement."""
    statement = insert(table)
    if dialect == "postgresql":
        return statement.returning(table.c[_primary_key(table)])
    return statement


def _by_key(table: Table) -> Update:
    return update(table).where(table.c[_primary_key(table)] == bindparam(KEY))


def _primary_key(table: Table) -> str:
    (key,) = table.primary_key.columns
    return key.name
