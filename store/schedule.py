"""Which instances are due a scheduled backup, and which backups' time is up, in a bounded number
of queries whatever the fleet's size (bench/schedule.py measures it).

Each instance's schedule is a series of slots `every_hours` long. Its slots are offset by a hash
of its id, so the fleet's backups spread over the interval rather than all starting at the top of
the hour. In the slot that holds `now`, an instance is due unless (docs/data-operations.md):

- a scheduled backup of it completed in this slot already;
- it is held (suspended, terminated): billing stopped it, its data does not change;
- it is not at rest (provisioning, working on a command, in error): the next run looks again,
  and the slot stays due until it ends;
- it is stopped, and a backup completed after the last command that could change its data: a
  stopped instance's data does not change, so one backup after it stops is enough.

A due instance's command id and backup id are derived from the instance and the slot, so a
second run, or a second scheduler, publishes the same command and the consumer answers it from
its inbox: never a second backup of one slot.
"""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine

from messages.commands import BackupPlan
from store.database import reading
from store.lifecycle import InstanceStatus
from store.models import Backup, Instance, Operation
from store.retention import BackupKind

SLOTS = uuid.UUID("8f0f8a57-4a0e-4f5e-9a43-2f1e6a1c9d70")
"""Namespace of the ids derived from an instance's slot."""
BACKUP_COMMAND = "odoo.instance.backup.v1"
AT_REST = frozenset({InstanceStatus.RUNNING, InstanceStatus.DEGRADED, InstanceStatus.STOPPED})
TAKEN = ("completed", "pruned")
"""Backup statuses that count as taken (a pruned one was taken in its slot all the same)."""


class Skip(StrEnum):
    """Why an instance is not backed up in this run."""

    DONE = "backed up in this slot"
    HELD = "held"
    BUSY = "not at rest"
    UNCHANGED = "stopped, unchanged since its last backup"


@dataclass(frozen=True)
class Slot:
    """One interval of an instance's schedule."""

    index: int
    start: datetime
    every_hours: int


def slot_of(instance_id: str, every_hours: int, now: datetime) -> Slot:
    """The slot of the instance's schedule that holds `now`."""
    interval = every_hours * 3600
    offset = int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:8], "big") % interval
    seconds = int(now.timestamp())
    index = (seconds - offset) // interval
    start = datetime.fromtimestamp(offset + index * interval, UTC)
    return Slot(index, start, every_hours)


def scheduled_ids(instance_id: str, slot: Slot) -> tuple[str, str]:
    """The command id and the backup id of the instance's backup in `slot`."""
    name = f"{instance_id}/{slot.every_hours}h/{slot.index}"
    return (
        f"scheduled-backup-{uuid.uuid5(SLOTS, 'command/' + name)}",
        str(uuid.uuid5(SLOTS, "backup/" + name)),
    )


@dataclass(frozen=True)
class Standing:
    """What the schedule needs of one instance, read in the one query."""

    instance_id: str
    status: InstanceStatus
    held: bool
    plan: BackupPlan
    last_scheduled: datetime | None
    last_backup: datetime | None
    last_change: datetime | None
    created_at: datetime | None = None

    @property
    def unchanged(self) -> bool:
        """A backup was taken after the last command that could change its data."""
        return self.last_backup is not None and (
            self.last_change is None or self.last_backup >= self.last_change
        )


@dataclass(frozen=True)
class Due:
    """A backup the schedule asks for."""

    instance_id: str
    slot: Slot
    command_id: str
    backup_id: str


def decide(standing: Standing, now: datetime) -> Due | Skip:
    """Due in this slot, or why not (the module's docstring)."""
    slot = slot_of(standing.instance_id, standing.plan.every_hours, now)
    if standing.last_scheduled is not None and standing.last_scheduled >= slot.start:
        return Skip.DONE
    if standing.held:
        return Skip.HELD
    if standing.status not in AT_REST:
        return Skip.BUSY
    if standing.status is InstanceStatus.STOPPED and standing.unchanged:
        return Skip.UNCHANGED
    command_id, backup_id = scheduled_ids(standing.instance_id, slot)
    return Due(standing.instance_id, slot, command_id, backup_id)


def standings(engine: Engine) -> list[Standing]:
    """Every live instance's standing, in one query."""
    scheduled = (
        select(Backup.instance_id, func.max(Backup.completed_at).label("at"))
        .where(Backup.status.in_(TAKEN), Backup.kind == BackupKind.SCHEDULED.value)
        .group_by(Backup.instance_id)
        .subquery()
    )
    any_backup = (
        select(Backup.instance_id, func.max(Backup.completed_at).label("at"))
        .where(Backup.status.in_(TAKEN))
        .group_by(Backup.instance_id)
        .subquery()
    )
    # Any command but a backup may change the data: a start, a restore, an upgrade, ...
    changed = (
        select(Operation.instance_id, func.max(Operation.updated_at).label("at"))
        .where(Operation.kind != BACKUP_COMMAND)
        .group_by(Operation.instance_id)
        .subquery()
    )
    query = (
        select(
            Instance.id,
            Instance.status,
            Instance.hold,
            Instance.backup_plan,
            scheduled.c.at,
            any_backup.c.at,
            changed.c.at,
            Instance.created_at,
        )
        .outerjoin(scheduled, scheduled.c.instance_id == Instance.id)
        .outerjoin(any_backup, any_backup.c.instance_id == Instance.id)
        .outerjoin(changed, changed.c.instance_id == Instance.id)
        .where(Instance.status != InstanceStatus.DELETED.value)
        .order_by(Instance.id)
    )
    with reading(engine) as connection:
        rows = connection.execute(query).all()
    return [
        Standing(
            instance_id=row[0],
            status=InstanceStatus(row[1]),
            held=row[2] is not None,
            plan=BackupPlan.model_validate(row[3]) if row[3] else BackupPlan(),
            last_scheduled=_aware(row[4]),
            last_backup=_aware(row[5]),
            last_change=_aware(row[6]),
            created_at=row[7],
        )
        for row in rows
    ]


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates skip the column type's conversion: SQLite hands back naive UTC (or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Expired:
    """A backup whose time is up, by the retention settings rather than a plan."""

    instance_id: str
    backup_id: str
    location: str


def expired(
    engine: Engine, now: datetime, manual_keep_days: int, final_backup_days: int
) -> list[Expired]:
    """Backups of deleted instances `final_backup_days` after the delete, and backups taken by a
    command `manual_keep_days` after they were taken (0: kept while the instance lives), in one
    query (store/retention.py holds the same rules for one instance)."""
    deleted = and_(
        Instance.status == InstanceStatus.DELETED.value,
        Instance.updated_at <= now - timedelta(days=final_backup_days),
    )
    conditions = [deleted]
    if manual_keep_days:
        conditions.append(
            and_(
                Instance.status != InstanceStatus.DELETED.value,
                Backup.kind.in_((BackupKind.MANUAL.value, BackupKind.SAFETY.value)),
                Backup.completed_at <= now - timedelta(days=manual_keep_days),
            )
        )
    query = (
        select(Backup.instance_id, Backup.id, Backup.location)
        .join(Instance, Instance.id == Backup.instance_id)
        .where(Backup.status == "completed", Backup.location.is_not(None), or_(*conditions))
        .order_by(Backup.instance_id, Backup.completed_at)
    )
    with reading(engine) as connection:
        return [Expired(row[0], row[1], str(row[2])) for row in connection.execute(query)]
