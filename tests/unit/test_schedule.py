"""The backup schedule's decisions: slots spread over the interval, ids derived from the slot,
and who is skipped and why."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from messages.commands import BackupPlan
from store.lifecycle import InstanceStatus
from store.schedule import Due, Skip, Standing, decide, scheduled_ids, slot_of

NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)


def _standing(**changes: object) -> Standing:
    values: dict[str, object] = {
        "instance_id": "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f",
        "status": InstanceStatus.RUNNING,
        "held": False,
        "plan": BackupPlan(every_hours=1),
        "last_scheduled": None,
        "last_backup": None,
        "last_change": None,
    }
    values.update(changes)
    return Standing(**values)  # type: ignore[arg-type]


def test_slots_spread_over_the_interval_and_hold_now() -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    starts = [slot_of(instance_id, 24, NOW).start for instance_id in ids]
    assert all(start <= NOW < start + timedelta(hours=24) for start in starts)
    hours = {start.hour for start in starts}
    assert len(hours) == 24  # not all at the top of one hour
    assert len({start.minute for start in starts}) > 50


def test_a_slots_ids_are_the_same_in_every_run_and_differ_between_slots() -> None:
    instance_id = str(uuid.uuid4())
    first = slot_of(instance_id, 1, NOW)
    again = slot_of(instance_id, 1, NOW + timedelta(seconds=1))
    assert scheduled_ids(instance_id, first) == scheduled_ids(instance_id, again)
    following = slot_of(instance_id, 1, first.start + timedelta(hours=1))
    assert following.index == first.index + 1
    assert scheduled_ids(instance_id, following) != scheduled_ids(instance_id, first)
    command_id, backup_id = scheduled_ids(instance_id, first)
    assert command_id.startswith("scheduled-backup-")
    assert uuid.UUID(backup_id)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"last_scheduled": NOW - timedelta(hours=3)}, None),
        ({"last_scheduled": NOW}, Skip.DONE),
        ({"held": True}, Skip.HELD),
        ({"status": InstanceStatus.BACKING_UP}, Skip.BUSY),
        ({"status": InstanceStatus.ERROR}, Skip.BUSY),
        ({"status": InstanceStatus.PROVISIONING}, Skip.BUSY),
        ({"status": InstanceStatus.DEGRADED}, None),
        # Stopped: once after it stopped, then not until something changes its data.
        ({"status": InstanceStatus.STOPPED}, None),
        (
            {
                "status": InstanceStatus.STOPPED,
                "last_change": NOW - timedelta(days=2),
                "last_backup": NOW - timedelta(days=1),
            },
            Skip.UNCHANGED,
        ),
        (
            {
                "status": InstanceStatus.STOPPED,
                "last_change": NOW - timedelta(hours=2),
                "last_backup": NOW - timedelta(days=1),
            },
            None,
        ),
    ],
)
def test_who_is_due_and_why_not(changes: dict[str, object], expected: Skip | None) -> None:
    decided = decide(_standing(**changes), NOW)
    if expected is None:
        assert isinstance(decided, Due), decided
    else:
        assert decided is expected
