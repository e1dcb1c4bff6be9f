"""The watcher's picture of the domains' Certificates and the seconds of validity it reports."""

from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.certificates import CertificateExpiry

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _certificate(name: str, domain: str | None, expires: datetime | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "metadata": {
            "name": name,
            "labels": {"odoo.saas/instance-id": "i-1"},
            "annotations": {"odoo.saas/domain": domain} if domain else {},
        },
        "status": {},
    }
    if expires is not None:
        item["status"]["notAfter"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return item


def test_each_issued_certificate_reports_its_remaining_seconds() -> None:
    expiry = CertificateExpiry()
    expiry.listed(
        [
            _certificate("a", "a.example", NOW + timedelta(days=30)),
            _certificate("b", "b.example", None),  # not issued yet: no value
            _certificate("c", None, NOW + timedelta(days=1)),  # not one of ours
        ]
    )
    assert expiry.remaining(NOW) == [("i-1", "a.example", 30 * 86400.0)]

    expiry.changed("MODIFIED", _certificate("b", "b.example", NOW - timedelta(hours=1)))
    assert sorted(expiry.remaining(NOW)) == [
        ("i-1", "a.example", 30 * 86400.0),
        ("i-1", "b.example", -3600.0),  # expired: negative
    ]
    expiry.changed("DELETED", _certificate("a", "a.example", NOW + timedelta(days=30)))
    assert expiry.remaining(NOW) == [("i-1", "b.example", -3600.0)]
    expiry.listed([])  # a relist replaces the picture
    assert expiry.remaining(NOW) == []
