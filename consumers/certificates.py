"""How long each customer domain's certificate stays valid, for the metric an expiry alert reads.

The watcher follows the tenants' cert-manager Certificates with an informer (list + watch) and
keeps, per Certificate, its instance, its domain and `status.notAfter`; the gauge
`instance_service.certificate.remaining_validity` reports the seconds left for each, computed
when the metrics are collected. cert-manager renews a certificate well before it expires (at
two thirds of its life by default); one whose remaining validity keeps falling was not renewed.
No event is published: the contract has none for it.
"""

import threading
from datetime import UTC, datetime
from typing import Any

from k8s.certificates import domain_of, not_after
from k8s.spec import INSTANCE_LABEL


class CertificateExpiry:
    """The informer's picture of the Certificates: name -> (instance id, domain, not after)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, str, datetime | None]] = {}

    def listed(self, items: list[dict[str, Any]]) -> None:
        """Every Certificate, after a (re)list."""
        known = {}
        for item in items:
            entry = _entry(item)
            if entry is not None:
                known[item["metadata"]["name"]] = entry
        with self._lock:
            self._known = known

    def changed(self, change: str, item: dict[str, Any]) -> None:
        """One Certificate added, modified or deleted."""
        name = item["metadata"]["name"]
        entry = _entry(item)
        with self._lock:
            if change == "DELETED" or entry is None:
                self._known.pop(name, None)
            else:
                self._known[name] = entry

    def remaining(self, now: datetime | None = None) -> list[tuple[str, str, float]]:
        """(instance id, domain, seconds of validity left) of every issued Certificate."""
        moment = now or datetime.now(UTC)
        with self._lock:
            entries = list(self._known.values())
        return [
            (instance, domain, (expires - moment).total_seconds())
            for instance, domain, expires in entries
            if expires is not None
        ]


def _entry(item: dict[str, Any]) -> tuple[str, str, datetime | None] | None:
    domain = domain_of(item)
    instance = (item.get("metadata", {}).get("labels") or {}).get(INSTANCE_LABEL)
    if domain is None or not isinstance(instance, str):
        return None  # not one of ours
    return instance, domain, not_after(item)
