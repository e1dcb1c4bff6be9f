"""The gauges the alert rules need and the watcher reports: its heartbeat, the last succeeded
reconcile and each scheduled instance's time without a backup, from a stand-in for the store
(the real store's side: tests/store/test_freshness.py)."""

from datetime import UTC, datetime, timedelta

from consumers.freshness import REUSE_SECONDS, FleetFreshness
from store.database import StoreUnavailableError
from store.freshness import BackupAge
from telemetry.metrics import INSTANCE_ID, METRICS
from tests.telemetry_capture import Telemetry

RECONCILED = datetime(2026, 12, 3, 9, 17, tzinfo=UTC)


class Store:
    """Answers as the ledger does, counting reads; `down` makes it unavailable."""

    def __init__(self) -> None:
        self.reads = 0
        self.down = False

    def last_success(self) -> datetime | None:
        if self.down:
            raise StoreUnavailableError("the database does not answer")
        return RECONCILED

    def backup_ages(self, now: datetime) -> list[BackupAge]:
        if self.down:
            raise StoreUnavailableError("the database does not answer")
        self.reads += 1
        assert now.tzinfo is UTC
        return [BackupAge("i-1", 50 * 3600.0, 24 * 3600.0), BackupAge("i-2", 60.0, 6 * 3600.0)]


def test_one_read_of_the_backups_serves_a_collection() -> None:
    store, now = Store(), [100.0]
    freshness = FleetFreshness(store, clock=lambda: now[0])
    assert freshness.last_reconcile() == RECONCILED.timestamp()
    first = freshness.backup_ages()
    assert (
        freshness.backup_ages()
        == first
        == [
            ("i-1", 50 * 3600.0, 24 * 3600.0),
            ("i-2", 60.0, 6 * 3600.0),
        ]
    )
    assert store.reads == 1
    now[0] += REUSE_SECONDS
    freshness.backup_ages()
    assert store.reads == 2


def test_a_store_that_does_not_answer_reports_nothing_rather_than_a_stale_figure() -> None:
    store = Store()
    freshness = FleetFreshness(store, clock=lambda: 0.0)
    store.down = True
    assert freshness.last_reconcile() is None
    assert freshness.backup_ages() == []


def test_the_watcher_gauges_report_their_sources(telemetry: Telemetry) -> None:
    beat = (datetime.now(UTC) - timedelta(seconds=3)).timestamp()
    METRICS.watch_heartbeat(lambda: beat)
    METRICS.watch_fleet(FleetFreshness(Store()))
    try:
        now = telemetry.snapshot()
    finally:
        METRICS.watch_heartbeat(None)
        METRICS.watch_fleet(None)
    assert now[("instance_service.watcher.heartbeat_timestamp", frozenset())] == beat
    reconcile = "instance_service.reconcile.last_success_timestamp"
    assert now[(reconcile, frozenset())] == RECONCILED.timestamp()
    one = frozenset({(INSTANCE_ID, "i-1")})
    assert now[("instance_service.backup.age", one)] == 50 * 3600.0
    assert now[("instance_service.backup.interval", one)] == 24 * 3600.0
    # Once the watcher stops, nothing more is reported for it.
    later = telemetry.snapshot()
    assert ("instance_service.watcher.heartbeat_timestamp", frozenset()) not in later
    assert ("instance_service.backup.age", one) not in later
