"""Alembic builds, reports and removes the schema on both databases."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, column, inspect, select, table, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from store.migrate import HEAD_REVISION, current_revision, downgrade, head_revision, upgrade
from store.models import Backup, Instance, UtcDateTime

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


def test_a_last_command_time_in_the_future_is_clamped_to_when_it_was_recorded(
    engine: Engine,
) -> None:
    # Before 0004 a command dated years ahead became its instance's last command time, and
    # every later suspend or delete was `stale`. The revision repairs such rows.
    downgrade(engine, "0003")
    recorded = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    future = datetime(2036, 11, 30, 12, 0, tzinfo=UTC)
    past = datetime(2026, 11, 1, tzinfo=UTC)
    instances = table(
        "instances",
        *(column(name) for name in ("customer_id", "subdomain", "odoo_version", "status")),
        *(column(name) for name in ("cpu_millicores", "memory_mib", "storage_gib")),
        column("id"),
        column("spec", JSON),
        column("kubernetes_names", JSON),
        column("last_command_id"),
        column("last_command_time", UtcDateTime()),
        column("created_at", UtcDateTime()),
        column("updated_at", UtcDateTime()),
    )
    inbox = table(
        "inbox",
        *(column(name) for name in ("command_id", "command_type", "outcome")),
        column("terminal_event_id"),
        column("recorded_at", UtcDateTime()),
    )
    common = {
        "customer_id": "c",
        "odoo_version": "17.0",
        "status": "running",
        "cpu_millicores": 500,
        "memory_mib": 1024,
        "storage_gib": 1,
        "spec": {},
        "kubernetes_names": {},
        "created_at": past,
        "updated_at": past,
    }
    with engine.begin() as connection:
        connection.execute(
            instances.insert(),
            [
                {**common, "id": "ahead", "subdomain": "a", "last_command_id": "c-ahead",
                 "last_command_time": future},
                {**common, "id": "no-record", "subdomain": "b", "last_command_id": "c-lost",
                 "last_command_time": future},
                {**common, "id": "fine", "subdomain": "c", "last_command_id": "c-fine",
                 "last_command_time": past},
            ],
        )  # fmt: skip
        connection.execute(
            inbox.insert(),
            [{"command_id": "c-ahead", "command_type": "odoo.instance.restart.v1",
              "outcome": "succeeded", "terminal_event_id": "e", "recorded_at": recorded}],
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        times = dict(
            connection.execute(select(instances.c.id, instances.c.last_command_time)).all()
        )
    assert times["ahead"] == recorded
    assert times["fine"] == past
    assert past < times["no-record"] <= datetime.now(UTC)


def test_revision_0006_gives_every_backup_its_kind_from_its_label(engine: Engine) -> None:
    downgrade(engine, "0005")
    with Session(engine) as session, session.begin():
        session.execute(
            text(
                "INSERT INTO instances (id, customer_id, subdomain, odoo_version, cpu_millicores,"
                " memory_mib, storage_gib, status, spec, last_command_time, last_command_id,"
                " kubernetes_names, created_at, updated_at) VALUES ('i-1', 'c', 'acme', '17.0',"
                " 500, 1024, 10, 'running', '{}', :now, 'x', '{}', :now, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        labels = {
            "final": "final backup before delete",
            "safety": "before restoring x",
            "upgrade": "before the upgrade to 18.0",
            "manual": "nightly",
            "unlabelled": None,
        }
        for backup_id, label in labels.items():
            session.execute(
                text(
                    "INSERT INTO backups (id, instance_id, label, status, created_at)"
                    " VALUES (:id, 'i-1', :label, 'completed', :now)"
                ),
                {"id": backup_id, "label": label, "now": datetime.now(UTC)},
            )
    upgrade(engine)
    with Session(engine) as session:
        kinds = {row[0]: row[1] for row in session.execute(select(Backup.id, Backup.kind))}
        plans = session.scalars(select(Instance.backup_plan)).all()
    assert kinds == {
        "final": "final",
        "safety": "safety",
        "upgrade": "safety",
        "manual": "manual",
        "unlabelled": "manual",
    }
    assert plans == [None]  # the defaults
