"""The backup schedule's two queries on both databases: every live instance's standing, and the
backups whose time is up."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from messages.commands import BackupPlan
from store.lifecycle import InstanceStatus
from store.models import Backup, Instance, Operation
from store.schedule import Due, Skip, decide, expired, standings

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _instance(instance_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {
        "id": instance_id,
        "customer_id": "c",
        "subdomain": instance_id,
        "odoo_version": "17.0",
        "cpu_millicores": 500,
        "memory_mib": 1024,
        "storage_gib": 5,
        "status": status,
        "spec": {},
        "last_command_time": NOW - timedelta(days=50),
        "last_command_id": f"c-{instance_id}",
        "kubernetes_names": {},
        "created_at": NOW - timedelta(days=50),
        "hold": None,
        "backup_plan": None,
        **more,
    } | {"updated_at": more.get("updated_at", NOW - timedelta(days=1))}


def _backup(backup_id: str, instance_id: str, kind: str, age: timedelta) -> dict[str, Any]:
    return {
        "id": backup_id,
        "instance_id": instance_id,
        "location": f"s3://b/backups/{instance_id}/{backup_id}.tar.tink",
        "status": "completed",
        "kind": kind,
        "created_at": NOW - age,
        "completed_at": NOW - age,
    }


def stopped(instance_id: str, age: timedelta) -> dict[str, Any]:
    """The record of a stop that succeeded `age` ago: a change of the instance's data."""
    return {
        "id": f"op-stop-{instance_id}",
        "instance_id": instance_id,
        "command_id": f"stop-{instance_id}",
        "kind": "odoo.instance.stop.v1",
        "state": "succeeded",
        "step": "record",
        "attempts": 1,
        "result": {},
        "created_at": NOW - age,
        "updated_at": NOW - age,
    }


def test_standings_and_expired_backups_in_two_queries(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(Instance),
            [
                _instance("running", "running", backup_plan={"every_hours": 6}),
                _instance("stopped", "stopped"),
                _instance("held", "suspended", hold="suspended"),
                _instance("gone", "deleted", updated_at=NOW - timedelta(days=31)),
            ],
        )
        connection.execute(
            insert(Backup),
            [
                _backup("r-scheduled", "running", "scheduled", timedelta(hours=7)),
                _backup("r-manual", "running", "manual", timedelta(days=91)),
                _backup("s-manual", "stopped", "manual", timedelta(hours=1)),
                _backup("g-final", "gone", "final", timedelta(days=31)),
            ],
        )
        connection.execute(insert(Operation), [stopped("stopped", timedelta(hours=3))])

    found = {standing.instance_id: standing for standing in standings(engine)}
    assert set(found) == {"running", "stopped", "held"}  # not the deleted one
    running = found["running"]
    assert running.plan == BackupPlan(every_hours=6)
    assert running.last_scheduled == NOW - timedelta(hours=7)  # aware, in UTC, on both
    assert running.last_backup == NOW - timedelta(hours=7)
    assert found["stopped"].plan == BackupPlan()
    assert found["stopped"].last_change == NOW - timedelta(hours=3)
    assert isinstance(decide(running, NOW), Due)
    assert decide(found["stopped"], NOW) is Skip.UNCHANGED
    assert decide(found["held"], NOW) is Skip.HELD
    assert found["held"].status is InstanceStatus.SUSPENDED

    due = expired(engine, NOW, manual_keep_days=90, final_backup_days=30)
    assert {(item.instance_id, item.backup_id) for item in due} == {
        ("running", "r-manual"),
        ("gone", "g-final"),
    }
    assert expired(engine, NOW, manual_keep_days=0, final_backup_days=60) == []
