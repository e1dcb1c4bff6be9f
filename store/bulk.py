"""A batch's rows in one statement per table, on either store.

`connection.execute(statement, rows)` is an executemany: SQLite's driver loops over the rows in
C, but psycopg sends them one by one (in a pipeline), and its Python per row was most of a
no-op command's store time on PostgreSQL (docs/throughput.md). So on PostgreSQL an insert asks
an insert selects its rows from `unnest` of one array per column, and an update joins the table
to such an `unnest`. The statement's text does not change with the number of rows, so it is
compiled and prepared once; SQLAlchemy's multi-row VALUES (`insertmanyvalues`) was tried first
and cost more, because psycopg parses a long statement's text again on every execution (it
caches only short ones). SQLite keeps the executemany, which is cheaper there (and SQLite has
no arrays).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert, Update

KEY = "b_id"
"""The name an update's rows give their primary key (a column of the table may not be bound
under its own name in its own UPDATE)."""


def insert_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert these rows (all with the same keys); the `returning` columns of the rows
    written, in no particular order."""
    if not rows:
        return []
    names = tuple(rows[0])
    if connection.dialect.name != "postgresql":
        result = connection.execute(_insert(table, tuple(returning)), list(rows))
        return list(result.all()) if returning else []
    arrays = {name: [row[name] for row in rows] for name in names}
    result = connection.execute(_unnest_insert(table, names, tuple(returning)), arrays)
    return list(result.all()) if returning else []


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
    types = {KEY: key.type, **{name: table.c[name].type for name in columns}}
    batch = _unnest(table, (KEY, *columns), types)
    return (
        update(table)
        .where(key == batch.c[KEY])
        .values({name: batch.c[name] for name in columns} | {"updated_at": bindparam("updated_at")})
    )


@cache
def _insert(table: Table, returning: tuple[str, ...]) -> Insert:
    """The plain INSERT, built once (its cache key is then computed once too)."""
    statement = insert(table)
    if returning:
        return statement.returning(*(table.c[name] for name in returning))
    return statement


@cache
def _unnest_insert(table: Table, names: tuple[str, ...], returning: tuple[str, ...]) -> Insert:
    """`INSERT INTO t (c, ...) SELECT * FROM unnest(:c, ...)`: one array per column."""
    statement = insert(table).from_select(names, select(*_unnest(table, names).c))
    if returning:
        return statement.returning(*(table.c[name] for name in returning))
    return statement


def _unnest(table: Table, names: Sequence[str], types: Mapping[str, Any] | None = None) -> Any:
    """`unnest(:a, :b, ...) AS batch(a, b, ...)`, each bound as an array of its column's type."""
    types = types or {name: table.c[name].type for name in names}
    arrays = (bindparam(name, type_=postgresql.ARRAY(types[name])) for name in names)
    return func.unnest(*arrays).table_valued(*names).render_derived(name="batch")


@cache
def _by_key(table: Table) -> Update:
    """The plain UPDATE by primary key, built once."""
    return update(table).where(table.c[_primary_key(table)] == bindparam(KEY))


def _primary_key(table: Table) -> str:
    (key,) = table.primary_key.columns
    return key.name
