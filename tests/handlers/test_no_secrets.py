"""No credential leaves the Kubernetes Secret: a whole life of an instance on the real stack,
with every log line (DEBUG, every library), span, metric, event, dead letter, the service's own
database, the instance's other Kubernetes objects and the service Jobs' output scanned for the
generated passwords and the service's own."""

import base64
import io
import json
import logging
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pika
import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from devstack.layout import default_layout
from k8s.kinds import SECRET
from telemetry.logs import JsonFormatter
from tests.handlers.checks import names_of, tenant_sql
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data
from tests.telemetry_capture import Telemetry

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."
DEAD_LETTER_QUEUE = "instance-service.dead-letter"
PASSWORD_KEYS = ("database-password", "admin-password", "admin-passwd")
"""The generated credentials in an instance's Secret (its other keys name the role and host)."""


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, as the service formats them."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the conftest's autouse fixture restores the level
    chatty = {name: logging.getLogger(name).level for name in ("pika", "urllib3", "kubernetes")}
    for name in chatty:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        for name, level in chatty.items():
            logging.getLogger(name).setLevel(level)


def _forms(secret: str) -> set[str]:
    """A secret as it could appear: itself, base64-encoded (as in a Secret's data), URL-quoted."""
    return {secret, base64.b64encode(secret.encode()).decode(), quote(secret, safe="")}


def _password_of(url: str) -> str:
    password = urlsplit(url).password
    assert password, f"no password in {url.split('@')[-1]}"
    return unquote(password)


def _instance_objects(api: client.ApiClient, namespace: str) -> str:
    """Every object of the namespace except Secrets, serialized (pods include Job reports)."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    networking = client.NetworkingV1Api(api)
    listed: list[Any] = [
        core.list_namespaced_pod(namespace),
        core.list_namespaced_service(namespace),
        core.list_namespaced_persistent_volume_claim(namespace),
        core.list_namespaced_config_map(namespace),
        apps.list_namespaced_deployment(namespace),
        apps.list_namespaced_replica_set(namespace),
        batch.list_namespaced_job(namespace),
        networking.list_namespaced_ingress(namespace),
        networking.list_namespaced_network_policy(namespace),
        core.list_namespaced_event(namespace),
    ]
    return json.dumps([items.to_dict() for items in listed], default=str)


def _dead_letters(amqp_url: str) -> str:
    """The dead-letter queue's messages with their headers (the reasons), consumed."""
    found: list[Any] = []
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(DEAD_LETTER_QUEUE, auto_ack=True)
            if method is None:
                return json.dumps(found, default=str)
            found.append([dict(properties.headers or {}), body.decode(errors="replace")])


def _store_bytes(engine: Engine) -> bytes:
    """The service's own SQLite database, its write-ahead log included."""
    database = Path(str(engine.url.database))
    return b"".join(
        path.read_bytes()
        for path in (database, database.with_name(database.name + "-wal"))
        if path.exists()
    )


def _whole_life(driver: Lifecycle, instance_id: str, subdomain: str) -> dict[str, str]:
    """Every command once (with a refusal and a failure); returns the instance's credentials."""
    ident = {"instance_id": instance_id}
    assert event_kind(driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))) == (
        "provisioned"
    )
    secret: Any = driver.platform.cluster().get(SECRET, names_of(instance_id).secret)
    assert secret is not None
    credentials = {key: base64.b64decode(value).decode() for key, value in secret.data.items()}
    assert {"database-password", "admin-password", "admin-passwd", "odoo.conf"} <= set(credentials)
    tenant_sql(driver, instance_id, "CREATE TABLE partner (id int PRIMARY KEY, name text)")

    plan = {"cpu_millicores": 1000, "memory_mib": 2048, "storage_gib": 8}
    backup_id = "9c3e4f5a-6b7c-4d8e-9f0a-" + instance_id[-12:]
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("stop", ident, "stopped"),
        ("start", ident, "started"),
        ("restart", ident, "restarted"),
        ("suspend", {**ident, "reason": "payment_failed"}, "suspended"),
        ("start", ident, "command.rejected"),  # not while suspended
        ("unsuspend", ident, "unsuspended"),
        ("resize", {**ident, "plan": plan}, "resized"),
        ("backup", {**ident, "backup_id": backup_id}, "backed_up"),
        ("restore", {**ident, "backup_id": backup_id}, "restored"),
        # a backup it does not have: refused in admission (issue 16, item 6)
        ("restore", {**ident, "backup_id": "0" * 8 + backup_id[8:]}, "command.rejected"),
        ("upgrade", {**ident, "odoo_version": "18.0"}, "upgraded"),
        ("terminate", {**ident, "reason": "subscription_cancelled"}, "terminated"),
        ("reactivate", ident, "reactivated"),
        ("delete", ident, "deleted"),  # with its final backup
    ]
    for verb, data, expected in steps:
        event = driver.run(f"{T}{verb}.v1", data)
        assert event_kind(event) == expected, event
    return credentials


def test_no_credential_appears_outside_its_secret_during_a_whole_life(
    driver: Lifecycle,
    telemetry: Telemetry,
    captured_logs: io.StringIO,
    amqp_url: str,
    admin_url: str,
) -> None:
    first_span = len(telemetry.spans.get_finished_spans())
    instance_id, subdomain = new_instance()
    credentials = _whole_life(driver, instance_id, subdomain)
    conf = credentials.pop("odoo.conf")
    # The values searched for are the ones Odoo is configured with.
    assert credentials["database-password"] in conf
    assert credentials["admin-passwd"] in conf
    secrets = {key: credentials[key] for key in PASSWORD_KEYS}
    secrets["amqp password"] = _password_of(amqp_url)
    secrets["tenant admin password"] = _password_of(admin_url)
    assert all(len(value) >= 8 for value in secrets.values()), "too short to search for"

    logs = captured_logs.getvalue()
    assert '"level": "DEBUG"' in logs  # the capture did see the chatty levels
    completed = [json.loads(line) for line in logs.splitlines() if "command completed" in line]
    assert completed, "no 'command completed' line captured"
    assert all(line["instance_id"] == instance_id and line["trace_id"] for line in completed)

    spans = telemetry.spans.get_finished_spans()[first_span:]
    assert any(s.name == "handle odoo.instance.provision.v1" for s in spans)
    span_text = json.dumps(
        [
            (
                s.name,
                dict(s.attributes or {}),
                [dict(e.attributes or {}) for e in s.events],
                s.status.description or "",
            )
            for s in spans
        ],
        default=str,
    )
    metric_text = json.dumps([sorted(map(str, key[1])) for key in telemetry.snapshot()])
    assert driver.observer is not None
    driver.observer.drain()
    bus = json.dumps(
        [[dict(p.headers or {}), body] for p, body in driver.observer.seen], default=str
    )
    assert bus.count("odoo.instance.") >= 16
    dead_letters = _dead_letters(amqp_url)
    assert len(json.loads(dead_letters)) == 2  # the refused start and the failed restore
    job_logs = "".join(
        path.read_text(errors="replace")
        for path in (default_layout().logs / "jobs").glob(f"{driver.namespace}_*.log")
    )
    assert job_logs, "no output of the service's backup and restore Jobs was found"
    places = {
        "logs": logs,
        "spans": span_text,
        "metrics": metric_text,
        "events on the bus": bus,
        "dead letters": dead_letters,
        "the service's database": _store_bytes(driver.engine).decode("latin-1"),
        "Kubernetes objects other than Secrets": _instance_objects(driver.api, driver.namespace),
        "the Jobs' output": job_logs,
    }
    leaks = [
        f"{name} in {place}"
        for name, value in secrets.items()
        for form in _forms(value)
        for place, text in places.items()
        if form in text
    ]
    assert leaks == []
