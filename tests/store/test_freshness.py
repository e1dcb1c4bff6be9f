"""The freshness the alert rules read, on both databases: the last succeeded fleet reconcile,
and each instance's time without a backup where the schedule expects one."""

from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from store.freshness import RECONCILE_COMMAND, backup_ages, last_success
from store.models import Backup, InboxEntry, Instance, Operation
from tests.store.test_schedule import NOW, _backup, _instance, stopped


def _answer(command_id: str, command_type: str, outcome: str, age: timedelta) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "command_type": command_type,
        "instance_id": None,
        "outcome": outcome,
        "terminal_event_id": f"event-{command_id}",
        "recorded_at": NOW - age,
    }


def test_the_last_succeeded_reconcile_is_the_newest_success_of_that_type(engine: Engine) -> None:
    assert last_success(engine) is None
    with engine.begin() as connection:
        connection.execute(
            insert(InboxEntry),
            [
                _answer("r1", RECONCILE_COMMAND, "succeeded", timedelta(hours=3)),
                _answer("r2", RECONCILE_COMMAND, "succeeded", timedelta(hours=2)),
                _answer("r3", RECONCILE_COMMAND, "failed", timedelta(minutes=5)),
                _answer("s1", "odoo.instance.stop.v1", "succeeded", timedelta(minutes=1)),
            ],
        )
    assert last_success(engine) == NOW - timedelta(hours=2)  # aware, in UTC, on both
    assert last_success(engine, "odoo.instance.stop.v1") == NOW - timedelta(minutes=1)


def test_backup_ages_cover_the_instances_the_schedule_backs_up(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(Instance),
            [
                _instance("running", "running", backup_plan={"every_hours": 6}),
                _instance("new", "running", created_at=NOW - timedelta(hours=2)),
                _instance("stopped-unchanged", "stopped"),
                _instance("stopped-changed", "stopped"),
                _instance("held", "suspended", hold="suspended"),
                _instance("gone", "deleted"),
            ],
        )
        connection.execute(
            insert(Backup),
            [
                _backup("r-old", "running", "scheduled", timedelta(hours=30)),
                _backup("r-new", "running", "manual", timedelta(hours=13)),
                _backup("su", "stopped-unchanged", "scheduled", timedelta(days=9)),
                _backup("sc", "stopped-changed", "scheduled", timedelta(days=4)),
                _backup("h", "held", "scheduled", timedelta(days=20)),
            ],
        )
        connection.execute(insert(Operation), [stopped("stopped-changed", timedelta(hours=3))])

    ages = {age.instance_id: age for age in backup_ages(engine, NOW)}

    # Held, deleted and stopped-since-backed-up instances are not backed up by the schedule.
    assert set(ages) == {"running", "new", "stopped-changed"}
    assert ages["running"].age_seconds == 13 * 3600  # the newest backup of any kind
    assert ages["running"].every_seconds == 6 * 3600
    assert ages["new"].age_seconds == 2 * 3600  # none yet: since it was created
    assert ages["new"].every_seconds == 24 * 3600  # the default plan
    assert ages["stopped-changed"].age_seconds == 4 * 86400
