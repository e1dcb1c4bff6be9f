"""Which backups to keep: grandfather-father-son for the scheduled ones, a time for the others.

Pure: given an instance's backups, its plan and the time, the ids to prune. The rules
(docs/data-operations.md, "Retention"):

- scheduled: the newest of each of the `keep_daily` most recent days that have one, of the
  `keep_weekly` most recent ISO weeks, and of the `keep_monthly` most recent months (UTC), and
  always the newest of all. The periods are counted among those that have backups, so a pause (a
  held instance is not backed up) does not empty the set. Keeping the newest of each period makes
  pruning after every backup give the same set as pruning once at the end.
- manual and safety (taken by a command): kept `manual_keep_days` after they were taken (0: until
  the instance is deleted).
- an instance deleted: all its backups, its final one among them, are kept `final_backup_days`
  after the deletion, then pruned.
"""

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from messages.commands import BackupPlan


class BackupKind(StrEnum):
    """Why a backup was taken, which decides how long it is kept."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    SAFETY = "safety"
    FINAL = "final"


@dataclass(frozen=True)
class Taken:
    """What retention needs of one backup."""

    id: str
    kind: BackupKind
    taken_at: datetime


@dataclass(frozen=True)
class RetentionTimes:
    """The settings beyond an instance's plan."""

    manual_keep_days: int
    final_backup_days: int


def _newest_per_period(
    backups: list[Taken], count: int, period: Callable[[datetime], Hashable]
) -> set[str]:
    """The newest backup of each of the `count` most recent periods that have one."""
    kept: dict[Hashable, str] = {}
    for backup in sorted(backups, key=lambda b: b.taken_at, reverse=True):
        key = period(backup.taken_at)
        if key not in kept:
            if len(kept) == count:
                break
            kept[key] = backup.id
    return set(kept.values())


def gfs_keep(scheduled: Iterable[Taken], plan: BackupPlan) -> set[str]:
    """The scheduled backups the plan keeps."""
    backups = list(scheduled)
    if not backups:
        return set()
    newest = max(backups, key=lambda b: b.taken_at)
    return (
        {newest.id}
        | _newest_per_period(backups, plan.keep_daily, lambda t: t.date())
        | _newest_per_period(backups, plan.keep_weekly, lambda t: t.isocalendar()[:2])
        | _newest_per_period(backups, plan.keep_monthly, lambda t: (t.year, t.month))
    )


def to_prune(
    backups: Iterable[Taken],
    plan: BackupPlan,
    times: RetentionTimes,
    now: datetime,
    deleted_at: datetime | None = None,
) -> list[str]:
    """The ids of the backups to remove now, oldest first."""
    backups = sorted(backups, key=lambda b: b.taken_at)
    if deleted_at is not None:
        expired = now >= deleted_at + timedelta(days=times.final_backup_days)
        return [backup.id for backup in backups] if expired else []
    kept = gfs_keep((b for b in backups if b.kind == BackupKind.SCHEDULED), plan)
    pruned = []
    for backup in backups:
        if backup.kind == BackupKind.SCHEDULED:
            if backup.id not in kept:
                pruned.append(backup.id)
        elif backup.kind in (BackupKind.MANUAL, BackupKind.SAFETY):
            limit = times.manual_keep_days
            if limit and now >= backup.taken_at + timedelta(days=limit):
                pruned.append(backup.id)
    return pruned
