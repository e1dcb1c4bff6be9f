"""How fresh the fleet's routine work is, read from the store for the alert rules
(deploy/monitoring/): when fleet reconciliation last succeeded, and how long each instance the
backup schedule looks after has gone without a backup.

The watcher reports these (consumers/watcher.py): it is the one process that is always on, and
what it reports comes from the store, so any replica, or a restarted one, reports the same.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from store.database import reading
from store.lifecycle import InstanceStatus
from store.models import InboxEntry
from store.schedule import Standing, standings

RECONCILE_COMMAND = "odoo.fleet.reconcile.v1"


@dataclass(frozen=True)
class BackupAge:
    """One instance's time without a backup, against its plan's interval."""

    instance_id: str
    age_seconds: float
    """Since its newest taken backup, or since it was created when it has none."""
    every_seconds: float


def last_success(engine: Engine, command_type: str = RECONCILE_COMMAND) -> datetime | None:
    """When a command of this type was last answered `succeeded` (None: never)."""
    query = (
        select(InboxEntry.recorded_at)
        .where(InboxEntry.command_type == command_type, InboxEntry.outcome == "succeeded")
        .order_by(InboxEntry.recorded_at.desc())
        .limit(1)
    )
    with reading(engine) as connection:
        found: datetime | None = connection.scalar(query)
        return found


def expects_backups(standing: Standing) -> bool:
    """Whether the schedule should be backing this instance up (store/schedule.py's rules): not
    held, and not stopped with a backup taken since its data last changed."""
    stopped = standing.status is InstanceStatus.STOPPED
    return not standing.held and not (stopped and standing.unchanged)


def backup_ages(engine: Engine, now: datetime) -> list[BackupAge]:
    """Every instance the schedule looks after, with its time without a backup (one query)."""
    ages = []
    for standing in standings(engine):
        since = standing.last_backup or standing.created_at
        if since is None or not expects_backups(standing):
            continue
        ages.append(
            BackupAge(
                standing.instance_id,
                max(0.0, (now - since).total_seconds()),
                standing.plan.every_hours * 3600.0,
            )
        )
    return ages
