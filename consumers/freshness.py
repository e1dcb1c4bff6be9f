"""The watcher's source of the freshness gauges (telemetry/metrics.py `FleetSource`): when the
fleet reconcile last succeeded and each scheduled instance's time without a backup, read from
the store (store/freshness.py).

One read serves a whole collection: the backup age and interval gauges are observed one after
the other and share it. While the store does not answer, the gauges report nothing (the
store's own alerts say why) rather than a stale figure.
"""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from store.database import StoreUnavailableError
from store.freshness import BackupAge

REUSE_SECONDS = 5.0
"""How long one read of the backups serves (a collection observes both gauges within it)."""


class FreshnessReader(Protocol):
    """The store's side (store.ledger.Ledger)."""

    def last_success(self) -> datetime | None:
        """When the fleet reconcile last succeeded."""

    def backup_ages(self, now: datetime) -> list[BackupAge]:
        """Each scheduled instance's time without a backup."""


class FleetFreshness:
    """Reads the store for the freshness gauges; safe to call from the exporter's thread."""

    def __init__(
        self, ledger: FreshnessReader, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self._lock = threading.Lock()
        self._backups: tuple[float, list[tuple[str, float, float]]] | None = None

    def last_reconcile(self) -> float | None:
        """Unix time of the last succeeded fleet reconcile (None: never, or the store is down)."""
        try:
            when = self.ledger.last_success()
        except StoreUnavailableError:
            return None
        return None if when is None else when.timestamp()

    def backup_ages(self) -> list[tuple[str, float, float]]:
        """(instance id, seconds without a backup, interval in s) per scheduled instance."""
        with self._lock:
            now = self.clock()
            if self._backups is not None and now - self._backups[0] < REUSE_SECONDS:
                return self._backups[1]
            try:
                ages = self.ledger.backup_ages(datetime.now(UTC))
            except StoreUnavailableError:
                return []
            answer = [(age.instance_id, age.age_seconds, age.every_seconds) for age in ages]
            self._backups = (now, answer)
            return answer
