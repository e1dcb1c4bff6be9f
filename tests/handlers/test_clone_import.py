"""Acceptance of clone and import, end to end through the bus on the local stack.

The clone's and the import's Jobs run this service's own `instance-service job` for real (the
local stack's job runner plays the kubelet for them) against the tenants' real databases, their
filestores on the volumes' host directories and the stack's object storage. The tenant databases
have no Odoo tables, so the tests create the rows neutralization must change.
"""

import io
import json
import subprocess
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg.conninfo import make_conninfo

from k8s.kinds import NETWORK_POLICY
from k8s.settings import ImportSettings
from store.lifecycle import InstanceStatus
from tests.handlers.checks import (
    _admin_s3,
    files_under,
    filestore,
    found,
    names_of,
    objects_of,
    pods,
    tenant_database_exists,
    tenant_sql,
)
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."
LOGO = ("3f", "3f786850e387550fdab836ed7e6dc881de23001b", b"logo")

ODOO_TABLES = """
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module text, name text, model text, res_id int);
CREATE TABLE ir_cron (id serial PRIMARY KEY, name text, active boolean);
CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name text, active boolean);
CREATE TABLE fetchmail_server (id serial PRIMARY KEY, name text, active boolean);
CREATE TABLE payment_provider (id serial PRIMARY KEY, code text, state text);
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key text UNIQUE, value text);
CREATE TABLE clone_marker (note text);
INSERT INTO ir_cron (name, active) VALUES ('Mail: send queue', true), ('Base: autovacuum', true);
INSERT INTO ir_model_data (module, name, model, res_id)
     VALUES ('base', 'autovacuum_job', 'ir.cron', 2);
INSERT INTO ir_mail_server (name, active) VALUES ('smtp.example.com', true);
INSERT INTO fetchmail_server (name, active) VALUES ('imap.example.com', true);
INSERT INTO payment_provider (code, state)
     VALUES ('stripe', 'enabled'), ('adyen', 'test'), ('paypal', 'disabled');
INSERT INTO ir_config_parameter (key, value)
     VALUES ('web.base.url', 'https://acme.odoo.test'), ('database.uuid', 'original-uuid');
"""


def _source(driver: Lifecycle) -> str:
    """A running instance with Odoo's tables, a marker row and a filestore file."""
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    for statement in ODOO_TABLES.strip().split(";\n"):
        tenant_sql(driver, instance_id, statement)
    marker = f"written to {instance_id} before the clone"
    tenant_sql(driver, instance_id, f"INSERT INTO clone_marker VALUES ('{marker}')")  # noqa: S608
    directory, name, content = LOGO
    store = filestore(driver, instance_id)
    (store / directory).mkdir(parents=True)
    (store / directory / name).write_bytes(content)
    return instance_id


def _clone_data(source_id: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    instance_id, subdomain = new_instance()
    data = {
        "instance_id": instance_id,
        "source_instance_id": source_id,
        "customer_id": "cus_staging",
        "subdomain": subdomain,
        **changes,
    }
    return instance_id, data


def _server_pods(driver: Lifecycle, instance_id: str) -> set[str]:
    return {pod.metadata.uid for pod in pods(driver, instance_id)}


def _egress_ports(driver: Lifecycle, instance_id: str) -> set[int]:
    policy = found(driver, NETWORK_POLICY, names_of(instance_id).base)
    return {
        int(port.port)
        for rule in policy.spec.egress or []
        for port in rule.ports or []
        if port.port is not None
    }


def _left_behind(driver: Lifecycle, instance_id: str) -> dict[str, Any]:
    """What exists of an instance anywhere: cluster objects, database, role, objects."""
    names = names_of(instance_id)
    selector = f"app.kubernetes.io/instance={names.base}"
    core, apps = client.CoreV1Api(driver.api), client.AppsV1Api(driver.api)
    batch, networking = client.BatchV1Api(driver.api), client.NetworkingV1Api(driver.api)
    ns = driver.namespace
    objects: dict[str, list[Any]] = {
        "deployments": apps.list_namespaced_deployment(ns, label_selector=selector).items,
        "jobs": batch.list_namespaced_job(ns, label_selector=selector).items,
        "services": core.list_namespaced_service(ns, label_selector=selector).items,
        "secrets": core.list_namespaced_secret(ns, label_selector=selector).items,
        "claims": core.list_namespaced_persistent_volume_claim(ns, label_selector=selector).items,
        "policies": networking.list_namespaced_network_policy(ns, label_selector=selector).items,
        "ingresses": networking.list_namespaced_ingress(ns, label_selector=selector).items,
    }
    left: dict[str, Any] = {
        kind: [o.metadata.name for o in items] for kind, items in objects.items() if items
    }
    if tenant_database_exists(driver, instance_id):
        left["database"] = names.database
    with psycopg.connect(driver.admin_url) as connection:
        if connection.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (names.role,)
        ).fetchone():
            left["role"] = names.role
    if objects_of(driver, instance_id):
        left["objects"] = objects_of(driver, instance_id)
    return left


# -- clone -------------------------------------------------------------------------------------


def test_a_clone_of_a_running_instance_is_a_neutralized_copy_and_the_source_kept_serving(
    driver: Lifecycle,
) -> None:
    source_id = _source(driver)
    pods_before = _server_pods(driver, source_id)
    instance_id, data = _clone_data(source_id)
    event = driver.run(f"{T}clone.v1", data)

    assert event_kind(event) == "cloned", event
    assert event["data"]["source_instance_id"] == source_id
    assert event["data"]["neutralized"] is True
    assert event["data"]["credentials_secret"]["name"] == names_of(instance_id).secret
    # The source was backed up by a backup command of its own, answered on the bus, and never
    # stopped: the same server pod served throughout.
    backed_up = [
        e
        for e in driver.recorded_events_of_type(f"{T}backed_up.v1")
        if e["data"]["backup_id"] == event["data"]["backup_id"]
    ]
    assert [e["subject"] for e in backed_up] == [source_id]
    assert backed_up[0]["source"] == "/instance-service"
    assert backed_up[0]["correlationid"] == event["correlationid"]
    assert _server_pods(driver, source_id) == pods_before
    assert driver.instance(source_id).status is InstanceStatus.RUNNING

    # Its own database, with the source's rows, neutralized; its own filestore copy.
    marker = tenant_sql(driver, instance_id, "SELECT note FROM clone_marker")
    assert marker == [(f"written to {source_id} before the clone",)]
    assert tenant_sql(driver, instance_id, "SELECT name, active FROM ir_cron ORDER BY id") == [
        ("Mail: send queue", False),
        ("Base: autovacuum", True),
    ]
    assert tenant_sql(driver, instance_id, "SELECT active FROM ir_mail_server") == [(False,)]
    assert tenant_sql(driver, instance_id, "SELECT active FROM fetchmail_server") == [(False,)]
    providers = tenant_sql(
        driver, instance_id, "SELECT code, state FROM payment_provider ORDER BY id"
    )
    assert providers == [("stripe", "disabled"), ("adyen", "test"), ("paypal", "disabled")]
    parameters = dict(tenant_sql(driver, instance_id, "SELECT key, value FROM ir_config_parameter"))
    assert parameters["database.is_neutralized"] == "True"
    assert parameters["database.uuid"] != "original-uuid"
    directory, name, content = LOGO
    assert files_under(filestore(driver, instance_id)) == {f"{directory}/{name}": content}
    assert filestore(driver, instance_id) != filestore(driver, source_id)
    # The source is untouched: its crons still run, its mail server still sends.
    assert tenant_sql(driver, source_id, "SELECT bool_and(active) FROM ir_cron") == [(True,)]
    assert tenant_sql(driver, source_id, "SELECT active FROM ir_mail_server") == [(True,)]
    # A copy reaches no mail server: its policy has no SMTP egress (the source's has, where the
    # platform allows mail at all).
    assert 587 not in _egress_ports(driver, instance_id)
    assert (587 in _egress_ports(driver, source_id)) is driver.tenants.mail_egress
    # The copy is recorded as neutralized, and nothing was left in its prefix.
    assert driver.instance(instance_id).neutralized is True
    assert driver.instance(instance_id).status is InstanceStatus.RUNNING
    assert objects_of(driver, instance_id) == []


def test_a_clone_of_a_given_backup_not_neutralized_keeps_the_rows_as_they_were(
    driver: Lifecycle,
) -> None:
    source_id = _source(driver)
    backup_id = str(uuid.uuid4())
    backed = driver.run(f"{T}backup.v1", {"instance_id": source_id, "backup_id": backup_id})
    assert event_kind(backed) == "backed_up", backed
    tenant_sql(driver, source_id, "INSERT INTO clone_marker VALUES ('after the backup')")
    instance_id, data = _clone_data(source_id, backup_id=backup_id, neutralize=False)

    event = driver.run(f"{T}clone.v1", data)

    assert event_kind(event) == "cloned", event
    assert (event["data"]["backup_id"], event["data"]["neutralized"]) == (backup_id, False)
    assert len(tenant_sql(driver, instance_id, "SELECT note FROM clone_marker")) == 1
    assert tenant_sql(driver, instance_id, "SELECT bool_and(active) FROM ir_cron") == [(True,)]
    assert driver.instance(instance_id).neutralized is False


def test_clones_the_service_refuses_are_rejected_naming_why(driver: Lifecycle) -> None:
    source_id = _source(driver)
    unknown = str(uuid.uuid4())
    _, of_unknown = _clone_data(unknown)
    assert _rejected(driver, of_unknown) == ("unknown_instance", ["data.source_instance_id"])

    other_backup = str(uuid.uuid4())
    _, of_another_backup = _clone_data(source_id, backup_id=other_backup)
    assert _rejected(driver, of_another_backup) == ("invalid_data", ["data.backup_id"])

    suspended = driver.run(f"{T}suspend.v1", {"instance_id": source_id, "reason": "abuse"})
    assert event_kind(suspended) == "suspended"
    _, of_held = _clone_data(source_id)
    assert _rejected(driver, of_held)[0] == "not_allowed_in_state"


def _rejected(driver: Lifecycle, data: dict[str, Any]) -> tuple[str, list[str]]:
    event = driver.run(f"{T}clone.v1", data)
    assert event_kind(event) == "command.rejected", event
    error = event["data"]["error"]
    assert not _left_behind(driver, data["instance_id"])
    return error["code"], [detail["field"] for detail in error["details"]]


def test_a_clone_whose_source_is_deleted_meanwhile_fails_and_leaves_nothing(
    driver: Lifecycle,
) -> None:
    source_id = _source(driver)
    instance_id, data = _clone_data(source_id)
    # Both wait in the queue; the clone is admitted first (its source runs), then the delete
    # begins before the source's backup, which the clone sends, arrives: that backup waits for
    # the delete and is then refused, and the clone undoes everything it made. One worker, so
    # the queue's order is the order of admission (with more, the two are decided side by side
    # and the delete may begin first: the clone is then rejected, a test of something else).
    driver.stop()
    clone_id = driver.send(f"{T}clone.v1", data)
    delete_id = driver.send(f"{T}delete.v1", {"instance_id": source_id, "final_backup": False})
    driver.consumer = driver.consumer.model_copy(update={"workers": 1})
    driver.start()

    assert event_kind(driver.terminal(delete_id)) == "deleted"
    failed = driver.terminal(clone_id)
    assert event_kind(failed) == "command.failed", failed
    assert failed["data"]["error"]["code"] == "source_backup_failed"
    assert failed["data"]["rolled_back"] is True
    assert _left_behind(driver, instance_id) == {}
    assert driver.instance(instance_id).status is InstanceStatus.ERROR


# -- import ------------------------------------------------------------------------------------


def _dump_of(driver: Lifecycle, instance_id: str) -> bytes:
    """A real plain-SQL pg_dump of a tenant's database, as Odoo's database manager makes it."""
    conninfo = make_conninfo(driver.admin_url, dbname=names_of(instance_id).database)
    answer = subprocess.run(
        ["pg_dump", "--no-owner", f"--dbname={conninfo}"],
        capture_output=True,
        check=True,
    )
    return answer.stdout


def _manifest(version: str = "17.0") -> bytes:
    return json.dumps(
        {
            "odoo_dump": "1",
            "db_name": "acme",
            "version": version,
            "version_info": [int(version.split(".")[0]), 0, 0, "final", 0, ""],
            "major_version": version,
            "pg_version": "15.0",
            "modules": {"base": version + ".1.3"},
        }
    ).encode()


Member = tuple[str, bytes] | zipfile.ZipInfo


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]], level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def _upload(driver: Lifecycle, content: bytes) -> str:
    key = f"tests/{uuid.uuid4()}.zip"
    _admin_s3(driver).put_object(Bucket=driver.backups.import_bucket, Key=key, Body=content)
    return key


def _import_data(key: str, **changes: Any) -> dict[str, Any]:
    instance_id, subdomain = new_instance()
    data = provision_data(instance_id, subdomain)
    for option in ("demo_data", "modules"):
        data.pop(option, None)
    return {**data, "archive": {"bucket": "instance-service-imports", "key": key}, **changes}


def test_a_database_manager_zip_is_imported_with_its_rows_and_files(driver: Lifecycle) -> None:
    origin = _source(driver)
    directory, name, content = LOGO
    archive = _zip(
        [
            ("dump.sql", _dump_of(driver, origin)),
            ("manifest.json", _manifest()),
            (f"filestore/{directory}/{name}", content),
            ("filestore/ab/abcdef", b"an attachment"),
        ]
    )
    data = _import_data(_upload(driver, archive))
    instance_id = data["instance_id"]

    event = driver.run(f"{T}import.v1", data)

    assert event_kind(event) == "imported", event
    assert event["data"]["odoo_version"] == "17.0"
    marker = tenant_sql(driver, instance_id, "SELECT note FROM clone_marker")
    assert marker == [(f"written to {origin} before the clone",)]
    # Imported as they were: an import is no copy, nothing is neutralized.
    assert tenant_sql(driver, instance_id, "SELECT bool_and(active) FROM ir_cron") == [(True,)]
    assert files_under(filestore(driver, instance_id)) == {
        f"{directory}/{name}": content,
        "ab/abcdef": b"an attachment",
    }
    # The tables belong to the new instance's own role.
    owners = tenant_sql(
        driver, instance_id, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    )
    assert owners == [(names_of(instance_id).role,)]
    assert objects_of(driver, instance_id) == []


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info, target.encode()


HOSTILE: dict[str, tuple[Callable[[bytes], list[tuple[Any, bytes]]], str]] = {
    "zip slip": (
        lambda dump: [
            ("dump.sql", dump),
            ("manifest.json", _manifest()),
            ("filestore/../../etc/cron.d/x", b"x"),
        ],
        "a path that leaves the archive",
    ),
    "absolute path": (
        lambda dump: [("dump.sql", dump), ("manifest.json", _manifest()), ("/etc/passwd", b"x")],
        "an absolute path",
    ),
    "symlink member": (
        lambda dump: [
            ("dump.sql", dump),
            ("manifest.json", _manifest()),
            _symlink("filestore/ab/link", "/etc/shadow"),
        ],
        "a symbolic link",
    ),
    "version not allowed": (
        lambda dump: [("dump.sql", dump), ("manifest.json", _manifest("12.0"))],
        "not on the allow-list",
    ),
    "10,000 members": (
        lambda dump: [
            ("dump.sql", dump),
            ("manifest.json", _manifest()),
            *((f"filestore/{n % 256:02x}/{n}", b"") for n in range(10_000)),
        ],
        "10002 members, more than the 5000 allowed",
    ),
    "compressed member over the bound": (
        lambda dump: [
            ("dump.sql", dump),
            ("manifest.json", _manifest()),
            ("filestore/00/bomb", bytes(64 * 1024 * 1024)),
        ],
        "more than 8388608",
    ),
    "ALTER ROLE": (
        lambda dump: [
            ("dump.sql", dump + b"\nALTER ROLE CURRENT_USER SUPERUSER;\n"),
            ("manifest.json", _manifest()),
        ],
        "changes roles",
    ),
    "CREATE ROLE": (
        lambda dump: [
            ("dump.sql", b"CREATE ROLE intruder LOGIN;\n" + dump),
            ("manifest.json", _manifest()),
        ],
        "changes roles",
    ),
    "\\connect": (
        lambda dump: [("dump.sql", b"\\connect postgres\n" + dump), ("manifest.json", _manifest())],
        "psql meta-command \\connect",
    ),
}


def test_hostile_archives_are_refused_naming_the_member_and_leave_nothing(
    driver: Lifecycle,
) -> None:
    driver.reconfigure(imports=ImportSettings(max_members=5000, max_file_mib=8))
    origin = _source(driver)
    dump = _dump_of(driver, origin)
    sent: dict[str, tuple[str, str]] = {}
    for case, (members, _reason) in HOSTILE.items():
        data = _import_data(_upload(driver, _zip(members(dump))))
        sent[case] = (driver.send(f"{T}import.v1", data), data["instance_id"])
    for case, (command_id, instance_id) in sent.items():
        event = driver.terminal(command_id, timeout=300)
        assert event_kind(event) == "command.failed", (case, event)
        error = event["data"]["error"]
        assert error["code"] == "archive_invalid", (case, error)
        assert HOSTILE[case][1] in error["message"], (case, error)
        assert event["data"]["rolled_back"] is True
        assert _left_behind(driver, instance_id) == {}, case
        assert driver.instance(instance_id).status is InstanceStatus.ERROR
    # Nothing of the dumps ran: no role was made, none was changed.
    with psycopg.connect(driver.admin_url) as connection:
        assert not connection.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = 'intruder'"
        ).fetchone()
        superusers = connection.execute("SELECT count(*) FROM pg_roles WHERE rolsuper").fetchone()
    assert superusers == (1,)


def test_imports_the_service_refuses_are_rejected_naming_the_field(driver: Lifecycle) -> None:
    missing = _import_data("tests/no-such-archive.zip")
    event = driver.run(f"{T}import.v1", missing)
    assert event_kind(event) == "command.rejected"
    assert [d["field"] for d in event["data"]["error"]["details"]] == ["data.archive.key"]
    elsewhere = _import_data("x.zip", archive={"bucket": "someone-elses", "key": "x.zip"})
    event = driver.run(f"{T}import.v1", elsewhere)
    assert [d["field"] for d in event["data"]["error"]["details"]] == ["data.archive.bucket"]
    assert not _left_behind(driver, missing["instance_id"])
