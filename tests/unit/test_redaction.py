"""URLs shown to people keep everything but the password."""

import pytest

from telemetry.redaction import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://svc:s3cr3t@127.0.0.1:5672/vhost", "amqp://svc:***@127.0.0.1:5672/vhost"),
        (
            "postgresql+psycopg://role:p%40ss@db.example:5432/state",
            "postgresql+psycopg://role:***@db.example:5432/state",
        ),
        ("amqp://svc:pw@[::1]:5672/%2F", "amqp://svc:***@[::1]:5672/%2F"),
        ("amqp://:onlypass@host/", "amqp://:***@host/"),
        ("amqp://user@host:5672/", "amqp://user@host:5672/"),
        ("sqlite:///instance-service.db", "sqlite:///instance-service.db"),
    ],
)
def test_redact_url_masks_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
