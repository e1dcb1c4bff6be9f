"""A batch's rows are written by one statement per table, and every value lands as given.

On PostgreSQL one statement means one `cursor.execute` (psycopg runs an `executemany` row by
row); on SQLite the driver's `executemany` is one call that loops in C, and is kept.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, event, select
from sqlalchemy.engine import Engine

from store.bulk import KEY, insert_rows, update_rows
from store.models import Instance, Operation

INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
OPERATIONS: Table = Operation.__table__  # type: ignore[assignment]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def instance_row(number: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "customer_id": f"customer-{number}",
        "subdomain": f"tenant{number}",
        "odoo_version": "17.0",
        "cpu_millicores": 500,
        "memory_mib": 1024,
        "storage_gib": 5,
        "status": "provisioning",
        "hold": None,
        "spec": {"language": "en_US"},
        "last_command_time": NOW,
        "last_command_id": f"provision-{number}",
        "current_operation_id": None,
        "kubernetes_names": {},
        "url": None,
        "internal_url": None,
        "last_error": None,
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """The driver calls made while the test runs, as "execute" or "executemany", but
    SQLite's `BEGIN IMMEDIATE` (store/database.py)."""
    sent: list[str] = []

    def executing(cursor: Any, statement: str, *rest: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append("execute")

    def executing_many(*args: Any) -> None:
        sent.append("executemany")

    event.listen(engine, "do_execute", executing)
    event.listen(engine, "do_executemany", executing_many)
    yield sent
    event.remove(engine, "do_execute", executing)
    event.remove(engine, "do_executemany", executing_many)


def one_statement(engine: Engine) -> list[str]:
    """What writing a batch's rows to one table should cost on this store."""
    return ["execute"] if engine.dialect.name == "postgresql" else ["executemany"]


def test_many_inserted_rows_are_one_statement(engine: Engine, statements: list[str]) -> None:
    rows = [instance_row(n) for n in range(30)]
    with engine.begin() as connection:
        insert_rows(connection, INSTANCES, rows)
    assert statements == one_statement(engine)
    with engine.connect() as connection:
        stored = connection.execute(select(INSTANCES.c.id, INSTANCES.c.spec)).all()
    assert sorted(stored) == sorted((r["id"], r["spec"]) for r in rows)


def test_many_updated_rows_are_one_statement_and_keep_their_values(
    engine: Engine, statements: list[str]
) -> None:
    rows = [instance_row(n) for n in range(30)]
    with engine.begin() as connection:
        insert_rows(connection, INSTANCES, rows)
    later = NOW + timedelta(minutes=5)
    changes = [
        {
            KEY: row["id"],
            "status": "running" if n % 2 else "failed",
            "hold": "suspended" if n % 3 == 0 else None,
            "cpu_millicores": 1000 + n,
            "kubernetes_names": {"deployment": f"odoo-{n}", "nested": {"n": n}},
            "url": f"https://tenant{n}.example" if n % 2 else None,
            "last_error": None if n % 2 else f"broke {n}; it's 'quoted'",
            "last_command_time": later + timedelta(seconds=n),
        }
        for n, row in enumerate(rows)
    ]
    columns = [c for c in changes[0] if c != KEY]
    statements.clear()
    with engine.begin() as connection:
        update_rows(connection, INSTANCES, columns, changes, later)
    assert statements == one_statement(engine)
    with engine.connect() as connection:
        stored = {row.id: row._mapping for row in connection.execute(select(INSTANCES))}
    for change in changes:
        row = stored[change[KEY]]
        assert {c: row[c] for c in columns} == {c: change[c] for c in columns}
        assert row["updated_at"] == later
        assert row["subdomain"] == f"tenant{int(change[KEY][-12:])}"  # untouched columns stay


def test_nothing_to_write_sends_nothing(engine: Engine, statements: list[str]) -> None:
    with engine.begin() as connection:
        insert_rows(connection, OPERATIONS, [])
        update_rows(connection, OPERATIONS, ["state"], [], NOW)
    assert statements == []
