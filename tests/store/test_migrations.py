"""Alembic builds, reports and removes the schema on both databases."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from store.migrate import HEAD_REVISION, current_revision, downgrade, head_revision, upgrade
from store.models import Backup, Instance

TABLES = {"instances", "inbox", "operations", "outbox", "backups", "alembic_version"}


def test_upgrade_builds_every_table_and_is_idempotent(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert current_revision(engine) == head_revision()
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_the_start_up_shortcut_knows_the_newest_revision() -> None:
    # `upgrade` skips alembic when the database is at HEAD_REVISION: it must be the real head.
    assert head_revision() == HEAD_REVISION


def test_an_older_schema_is_still_upgraded(engine: Engine) -> None:
    downgrade(engine, "0002")
    assert current_revision(engine) == "0002"
    assert "ready_at" not in {c["name"] for c in inspect(engine).get_columns("outbox")}
    upgrade(engine)
    assert current_revision(engine) == HEAD_REVISION
    assert "ready_at" in {c["name"] for c in inspect(engine).get_columns("outbox")}


def test_downgrade_to_base_removes_the_schema_and_upgrade_restores_it(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_times_come_back_aware_in_utc(engine: Engine) -> None:
    local = datetime(2026, 11, 27, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        session.add(_instance(local))
    with Session(engine) as session:
        stored = session.get_one(Instance, "i-1").last_command_time
    assert stored == local
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)


def test_naive_times_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(_instance(datetime(2026, 11, 27, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_backups_belong_to_an_existing_instance(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(_instance(datetime.now(UTC)))
        session.flush()  # no ORM relationship orders the inserts
        session.add(Backup(id="b-1", instance_id="i-1", status="pending"))
    with Session(engine) as session:
        session.add(Backup(id="b-2", instance_id="no-such-instance", status="pending"))
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            session.commit()


def _instance(when: datetime) -> Instance:
    return Instance(
        id="i-1",
        customer_id="c",
        subdomain="acme",
        odoo_version="17.0",
        cpu_millicores=500,
        memory_mib=1024,
        storage_gib=10,
        status="running",
        spec={},
        last_command_time=when,
        last_command_id="x",
        kubernetes_names={},
    )
