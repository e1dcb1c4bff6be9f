"""Backups the service takes by itself: the schedule's run (`instance-service backups schedule`,
as the CronJob runs it, on a clock the test sets), two consumer replicas answering, and the
retention policy removing real objects from the real object storage.
"""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from messages.commands import BackupPlan
from objectstore.locations import backup_location
from store.lifecycle import InstanceStatus
from store.records import BackupRecord
from store.retention import BackupKind, Taken, gfs_keep
from store.schedule import scheduled_ids, slot_of
from tests.handlers.checks import objects_of, replace_object
from tests.handlers.consume_process import ConsumeProcess, consume_env, free_port
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."
PRUNED = f"{T}backups.pruned.v1"


def _store_url(driver: Lifecycle) -> str:
    return driver.engine.url.render_as_string(hide_password=False)


def _schedule(driver: Lifecycle, now: datetime, *more: str) -> str:
    """One run of the schedule, as the CronJob runs it; its output."""
    env = consume_env(driver.amqp_url, _store_url(driver), driver.namespace, free_port())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "instance_service",
            "backups",
            "schedule",
            "--now",
            now.isoformat(),
            *more,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return result.stdout


def _provisioned(driver: Lifecycle, plan: dict[str, int]) -> str:
    instance_id, subdomain = new_instance()
    data = provision_data(instance_id, subdomain)
    data["plan"] = {**data["plan"], "backups": plan}
    event = driver.run(f"{T}provision.v1", data)
    assert event_kind(event) == "provisioned", event
    return instance_id


def _events(driver: Lifecycle, kind: str, cause: str) -> list[dict[str, Any]]:
    assert driver.observer is not None
    seen = driver.observer.wait_for(
        lambda bodies: any(b["type"] == kind and b.get("causationid") == cause for b in bodies), 120
    )
    return [b for b in seen if b["type"] == kind and b.get("causationid") == cause]


@pytest.fixture
def second_replica(driver: Lifecycle, tmp_path: Path) -> Iterator[ConsumeProcess]:
    """Another consumer process on the same queues, store and namespace."""
    replica = ConsumeProcess.for_test(
        driver.amqp_url, _store_url(driver), driver.namespace, tmp_path / "replica"
    )
    replica.start()
    yield replica
    replica.stop()
    replica.close()


def test_scheduled_backups_come_once_per_slot_across_runs_and_replicas(
    driver: Lifecycle, second_replica: ConsumeProcess
) -> None:
    hourly = {"every_hours": 1, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3}
    a, b, held = (_provisioned(driver, hourly) for _ in range(3))
    assert event_kind(driver.run(f"{T}suspend.v1", {"instance_id": held, "reason": "manual"})) == (
        "suspended"
    )
    now = datetime.now(UTC)
    # Two runs of the same slot (a second scheduler, or a run retried), before anything is done.
    first = _schedule(driver, now)
    _schedule(driver, now)
    assert "3 instances" in first
    assert "2 due" in first
    assert "1 held" in first

    taken: dict[str, str] = {}
    for instance_id in (a, b):
        command_id, backup_id = scheduled_ids(instance_id, slot_of(instance_id, 1, now))
        event = driver.terminal(command_id, timeout=300)
        assert event_kind(event) == "backed_up", event
        assert event["data"]["scheduled"] is True
        assert event["data"]["backup_id"] == backup_id
        assert event["causationid"] == command_id
        (backup,) = driver.ledger.backups(instance_id)
        assert (backup.id, backup.kind) == (backup_id, BackupKind.SCHEDULED)
        assert objects_of(driver, instance_id) == [event["data"]["location"]["key"]]
        taken[instance_id] = backup_id
    assert driver.ledger.backups(held) == []
    assert objects_of(driver, held) == []

    again = _schedule(driver, now)  # the slot is done
    assert "2 backed up in this slot" in again
    assert "0 backup commands published" in again

    # The next slot: backed up again, and the retention policy keeps the newest of the day.
    later = now + timedelta(hours=1)
    assert "2 due" in _schedule(driver, later)
    for instance_id in (a, b):
        command_id, backup_id = scheduled_ids(instance_id, slot_of(instance_id, 1, later))
        event = driver.terminal(command_id, timeout=300)
        assert event_kind(event) == "backed_up", event
        (pruned,) = _events(driver, PRUNED, command_id)
        assert pruned["data"] == {"instance_id": instance_id, "backup_ids": [taken[instance_id]]}
        assert [backup.id for backup in driver.ledger.backups(instance_id)] == [backup_id]
        assert driver.ledger.backup(taken[instance_id]) is None
        assert objects_of(driver, instance_id) == [event["data"]["location"]["key"]]
    assert driver.instance(held).status == InstanceStatus.SUSPENDED
    assert second_replica.ready()  # it consumed beside the first all along


def test_pruning_keeps_exactly_the_gfs_set_of_real_objects(driver: Lifecycle) -> None:
    plan = BackupPlan(every_hours=24, keep_daily=3, keep_weekly=2, keep_monthly=1)
    instance_id = _provisioned(driver, plan.model_dump())
    now = datetime.now(UTC)
    settings = driver.backups
    # Three weeks of daily scheduled backups taken earlier: recorded, with their objects.
    history: list[Taken] = []
    for day in range(21, 0, -1):
        backup_id = str(uuid.uuid4())
        location = backup_location(settings.bucket, settings.prefix, instance_id, backup_id)
        replace_object(driver, location.uri, f"backup of day -{day}".encode())
        taken_at = now - timedelta(days=day)
        driver.ledger.add_backup(
            BackupRecord(
                id=backup_id,
                instance_id=instance_id,
                location=location.uri,
                size_bytes=0,
                sha256="0" * 64,
                kind=BackupKind.SCHEDULED,
                taken_at=taken_at,
            )
        )
        history.append(Taken(backup_id, BackupKind.SCHEDULED, taken_at))
    manual = driver.run(
        f"{T}backup.v1", {"instance_id": instance_id, "backup_id": str(uuid.uuid4())}
    )
    assert event_kind(manual) == "backed_up", manual

    _schedule(driver, now)
    command_id, backup_id = scheduled_ids(instance_id, slot_of(instance_id, 24, now))
    event = driver.terminal(command_id, timeout=300)
    assert event_kind(event) == "backed_up", event
    newest = Taken(backup_id, BackupKind.SCHEDULED, now + timedelta(minutes=1))
    kept = gfs_keep([*history, newest], plan)  # tests/unit/test_retention.py checks the rule

    # Pruned after each backup, the manual one's too: together, all the plan does not keep.
    _events(driver, PRUNED, command_id)
    pruned = [e for e in driver.recorded_events_of_type(PRUNED) if e["subject"] == instance_id]
    assert [e["causationid"] for e in pruned] == [manual["causationid"], command_id]
    assert [i for e in pruned for i in e["data"]["backup_ids"]] == [
        b.id for b in history if b.id not in kept
    ]
    remaining = {backup.id for backup in driver.ledger.backups(instance_id)}
    assert remaining == kept | {manual["data"]["backup_id"]}  # a manual one is not the plan's
    keys = {
        backup_location(settings.bucket, settings.prefix, instance_id, backup).key
        for backup in remaining
    }
    assert set(objects_of(driver, instance_id)) == keys


def test_a_deleted_instances_backups_are_pruned_after_its_final_days(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver, {"every_hours": 24})
    assert event_kind(driver.run(f"{T}delete.v1", {"instance_id": instance_id})) == "deleted"
    (final,) = driver.ledger.backups(instance_id)
    assert final.kind == BackupKind.FINAL
    assert len(objects_of(driver, instance_id)) == 1

    soon = datetime.now(UTC) + timedelta(days=29)
    assert "0 expired backups pruned" in _schedule(driver, soon)
    assert len(objects_of(driver, instance_id)) == 1

    out = _schedule(driver, datetime.now(UTC) + timedelta(days=31))
    assert "1 expired backups pruned" in out
    assert objects_of(driver, instance_id) == []
    assert driver.ledger.backups(instance_id) == []
    events = [e for e in driver.recorded_events_of_type(PRUNED) if e["subject"] == instance_id]
    assert [e["data"]["backup_ids"] for e in events] == [[final.id]]
    assert events[0]["causationid"].startswith("retention:")
