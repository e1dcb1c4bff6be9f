"""Grandfather-father-son retention, over a year of simulated slots, and the time-kept kinds."""

from datetime import UTC, datetime, timedelta

import pytest

from messages.commands import BackupPlan
from store.retention import BackupKind, RetentionTimes, Taken, gfs_keep, to_prune

TIMES = RetentionTimes(manual_keep_days=90, final_backup_days=30)
START = datetime(2026, 1, 1, 3, 17, tzinfo=UTC)  # a slot offset, as the schedule spreads them


def _expected(taken: list[Taken], plan: BackupPlan) -> set[str]:
    """The GFS set, computed independently: group every backup by day, ISO week and month; keep
    the newest of each of the most recent groups."""
    newest: dict[tuple[str, object], Taken] = {}
    for backup in taken:
        for kind, key in (
            ("day", backup.taken_at.date()),
            ("week", tuple(backup.taken_at.isocalendar())[:2]),
            ("month", (backup.taken_at.year, backup.taken_at.month)),
        ):
            held = newest.get((kind, key))
            if held is None or backup.taken_at > held.taken_at:
                newest[(kind, key)] = backup
    kept = {max(taken, key=lambda b: b.taken_at).id}
    for kind, count in (
        ("day", plan.keep_daily),
        ("week", plan.keep_weekly),
        ("month", plan.keep_monthly),
    ):
        keys = sorted((key for k, key in newest if k == kind), reverse=True)[:count]  # type: ignore[type-var]
        kept |= {newest[(kind, key)].id for key in keys}
    return kept


@pytest.mark.parametrize(
    ("every_hours", "plan"),
    [
        (24, BackupPlan()),  # the defaults: daily, 7/4/3
        (1, BackupPlan(every_hours=1, keep_daily=7, keep_weekly=4, keep_monthly=3)),
        (6, BackupPlan(every_hours=6, keep_daily=14, keep_weekly=8, keep_monthly=12)),
        (168, BackupPlan(every_hours=168, keep_daily=0, keep_weekly=4, keep_monthly=6)),
        (24, BackupPlan(keep_daily=0, keep_weekly=0, keep_monthly=0)),  # only the newest
    ],
)
def test_pruning_after_every_backup_of_a_year_keeps_exactly_the_gfs_set(
    every_hours: int, plan: BackupPlan
) -> None:
    alive: list[Taken] = []
    every: list[Taken] = []
    pruned_total = 0
    slot, end = 0, START + timedelta(days=365)
    while (at := START + timedelta(hours=every_hours * slot)) < end:
        backup = Taken(f"b{slot:05d}", BackupKind.SCHEDULED, at)
        every.append(backup)
        alive.append(backup)
        pruned = set(to_prune(alive, plan, TIMES, at))
        assert backup.id not in pruned  # the one just taken always stays
        alive = [b for b in alive if b.id not in pruned]
        pruned_total += len(pruned)
        slot += 1
    kept = {b.id for b in alive}
    assert kept == _expected(every, plan)
    assert len(kept) + pruned_total == len(every)
    # Read as an operator would: one of each of the last days, weeks and months, no more.
    days = sorted({b.taken_at.date() for b in every}, reverse=True)[: plan.keep_daily]
    months = sorted({(b.taken_at.year, b.taken_at.month) for b in every})[-plan.keep_monthly :]
    assert set(days) <= {b.taken_at.date() for b in alive}
    if plan.keep_monthly:
        assert set(months) <= {(b.taken_at.year, b.taken_at.month) for b in alive}
    assert len(kept) <= 1 + plan.keep_daily + plan.keep_weekly + plan.keep_monthly
    print(f"every {every_hours} h for a year: {len(every)} taken, {len(kept)} kept")


def test_a_pause_keeps_the_last_backups_from_before_it() -> None:
    # Held for two months: the periods counted are those that have backups, so the set is not
    # emptied by the time passed.
    taken = [
        Taken(f"b{day}", BackupKind.SCHEDULED, START + timedelta(days=day)) for day in range(30)
    ]
    later = START + timedelta(days=90)
    kept = set(gfs_keep(taken, BackupPlan()))
    assert to_prune(taken, BackupPlan(), TIMES, later) == [b.id for b in taken if b.id not in kept]
    assert {f"b{day}" for day in range(23, 30)} <= kept  # the last seven days that have one


def test_manual_and_safety_backups_are_kept_for_their_days_final_ones_while_alive() -> None:
    now = START + timedelta(days=100)
    taken = [
        Taken("old-manual", BackupKind.MANUAL, now - timedelta(days=91)),
        Taken("new-manual", BackupKind.MANUAL, now - timedelta(days=89)),
        Taken("old-safety", BackupKind.SAFETY, now - timedelta(days=95)),
        Taken("final", BackupKind.FINAL, now - timedelta(days=200)),
        Taken("scheduled", BackupKind.SCHEDULED, now - timedelta(days=1)),
    ]
    assert to_prune(taken, BackupPlan(), TIMES, now) == ["old-safety", "old-manual"]
    forever = RetentionTimes(manual_keep_days=0, final_backup_days=30)
    assert to_prune(taken, BackupPlan(), forever, now) == []


def test_a_deleted_instances_backups_go_all_together_after_its_final_days() -> None:
    deleted_at = START + timedelta(days=10)
    taken = [
        Taken("scheduled", BackupKind.SCHEDULED, START),
        Taken("final", BackupKind.FINAL, deleted_at),
    ]
    assert to_prune(taken, BackupPlan(), TIMES, deleted_at + timedelta(days=29), deleted_at) == []
    assert to_prune(taken, BackupPlan(), TIMES, deleted_at + timedelta(days=30), deleted_at) == [
        "scheduled",
        "final",
    ]
