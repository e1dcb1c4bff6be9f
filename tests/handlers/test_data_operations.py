"""Acceptance of resize, backup, restore and upgrade, end to end through the bus.

Backup and restore Jobs run this service's own `instance-service job` for real (the local
stack's job runner plays the kubelet for them), against the tenant's real database and its
filestore on the volume's host directory; Odoo's update Jobs are played by kwok, and fail when
their pods carry `devstack.local/job=fail`.
"""

import hashlib
import uuid
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import select
from sqlalchemy.orm import Session

from devstack.kwok_stages import JOB_FAILS_LABEL, JOB_FAILS_VALUE
from k8s.kinds import PVC
from k8s.settings import TenantSettings
from store.lifecycle import InstanceStatus
from store.models import Operation
from tests.handlers.checks import (
    deployment,
    files_under,
    filestore,
    found,
    names_of,
    replace_object,
    serving,
    stored_object,
    tenant_sql,
    unfinished_uploads,
)
from tests.handlers.harness import (
    Lifecycle,
    event_kind,
    new_instance,
    provision_data,
    run_steps,
    tenant_settings,
)

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."
STEPS = {
    "resize": ["volume", "config", "deployment", "rollout", "health", "record"],
    "backup": ["backup-access", "backup-job", "backup-record", "prune", "prune-objects", "record"],
    "restore": [
        "safety-access",
        "safety-job",
        "safety-record",
        "access",
        "stop",
        "stopped",
        "restore-job",
        "start",
        "started",
        "health",
        "record",
    ],
    "upgrade": [
        "pre-upgrade-access",
        "pre-upgrade-job",
        "pre-upgrade-record",
        "stop",
        "stopped",
        "update-job",
        "deployment",
        "rollout",
        "health",
        "record",
    ],
}
ROLLBACK = [
    "pre-upgrade-access",
    "pre-upgrade-job",
    "pre-upgrade-record",
    "stop",
    "stopped",
    "update-job",
    "rollback-stop",
    "rollback-stopped",
    "rollback-image",
    "rollback-restore",
    "rollback-deployment",
    "rollback-rollout",
    "rollback-health",
]
"""The steps of an upgrade whose update Job fails: it ends failed, so there is no `record`."""


def _run(
    driver: Lifecycle,
    verb: str,
    data: dict[str, Any],
    crash: int | None = None,
    steps: list[str] | None = None,
) -> dict[str, Any]:
    return run_steps(driver, verb, data, steps or STEPS[verb], crash)


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    tenant_sql(driver, instance_id, "CREATE TABLE partner (id int PRIMARY KEY, name text)")
    tenant_sql(driver, instance_id, "INSERT INTO partner VALUES (1, 'Azure'), (2, 'Deco')")
    store = filestore(driver, instance_id)
    (store / "3f").mkdir(parents=True)
    (store / "3f" / "3f786850e387550fdab836ed7e6dc881de23001b").write_bytes(b"logo")
    return instance_id


def _change_data(driver: Lifecycle, instance_id: str) -> None:
    tenant_sql(driver, instance_id, "UPDATE partner SET name = 'changed' WHERE id = 1")
    tenant_sql(driver, instance_id, "CREATE TABLE added_later (x int)")
    (filestore(driver, instance_id) / "added-later").write_bytes(b"x")


def _data(driver: Lifecycle, instance_id: str) -> tuple[Any, Any, dict[str, bytes]]:
    return (
        tenant_sql(driver, instance_id, "SELECT * FROM partner ORDER BY id"),
        tenant_sql(driver, instance_id, "SELECT to_regclass('added_later')"),
        files_under(filestore(driver, instance_id)),
    )


def _data_life(driver: Lifecycle, crash: int | None) -> None:
    """Resize, back up, change, restore, upgrade: each killed at its `crash`-th step."""
    instance_id = _provisioned(driver)
    ident = {"instance_id": instance_id}
    names = names_of(instance_id)

    plan = {"cpu_millicores": 1000, "memory_mib": 2048, "storage_gib": 8}
    assert event_kind(_run(driver, "resize", {**ident, "plan": plan}, crash)) == "resized"
    container = deployment(driver, instance_id).spec.template.spec.containers[0]
    assert container.resources.limits == {"cpu": "1", "memory": "2Gi"}
    volume = found(driver, PVC, names.volume)
    assert volume.spec.resources.requests["storage"] == "8Gi"
    assert serving(driver, instance_id)
    record = driver.instance(instance_id)
    assert (record.cpu_millicores, record.memory_mib, record.storage_gib) == (1000, 2048, 8)

    before = _data(driver, instance_id)
    backup_id = "5d0c9a7e-1f2b-4c3d-8e9f-" + instance_id[-12:]
    backed_up = _run(driver, "backup", {**ident, "backup_id": backup_id, "label": "nightly"}, crash)
    assert event_kind(backed_up) == "backed_up", backed_up
    stored = driver.ledger.backup(backup_id)
    assert stored is not None
    location = backed_up["data"]["location"]
    assert stored.location == f"s3://{location['bucket']}/{location['key']}"
    assert location["key"] == f"backups/{instance_id}/{backup_id}.tar.tink"
    assert backed_up["data"]["scheduled"] is False
    archive = stored_object(driver, stored.location)  # in the real object storage
    assert backed_up["data"]["size_bytes"] == len(archive)
    assert backed_up["data"]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert unfinished_uploads(driver, instance_id) == []
    assert serving(driver, instance_id)  # the backup ran beside the serving instance

    _change_data(driver, instance_id)
    assert _data(driver, instance_id) != before
    assert (
        event_kind(_run(driver, "restore", {**ident, "backup_id": backup_id}, crash)) == "restored"
    )
    assert _data(driver, instance_id) == before
    assert serving(driver, instance_id)
    assert driver.instance(instance_id).status == InstanceStatus.RUNNING

    upgraded = _run(driver, "upgrade", {**ident, "odoo_version": "18.0"}, crash)
    assert event_kind(upgraded) == "upgraded", upgraded
    assert upgraded["data"] == {
        "instance_id": instance_id,
        "from_version": "17.0",
        "to_version": "18.0",
    }
    image = deployment(driver, instance_id).spec.template.spec.containers[0].image
    assert image == "docker.io/library/odoo:18.0"
    assert driver.instance(instance_id).odoo_version == "18.0"
    assert serving(driver, instance_id)
    assert _data(driver, instance_id) == before


def test_resize_backup_restore_and_upgrade(driver: Lifecycle) -> None:
    _data_life(driver, crash=None)


@pytest.mark.parametrize("crash", range(max(len(steps) for steps in STEPS.values())))
def test_killed_at_any_step_a_redelivery_converges(driver: Lifecycle, crash: int) -> None:
    _data_life(driver, crash=crash)


def test_storage_cannot_shrink(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    plan = {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 4}
    refused = driver.run(f"{T}resize.v1", {"instance_id": instance_id, "plan": plan})
    assert event_kind(refused) == "command.rejected"
    assert refused["data"]["error"]["code"] == "invalid_data"
    assert refused["data"]["error"]["details"] == [
        {"field": "data.plan.storage_gib", "message": "must be at least 5"}
    ]


def test_a_backup_damaged_in_storage_is_not_restored(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    backup_id = "6e1d0b8f-2a3c-4d4e-9fa0-" + instance_id[-12:]
    driver.run(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    stored = driver.ledger.backup(backup_id)
    assert stored is not None
    replace_object(driver, stored.location, stored_object(driver, stored.location) + b"bit rot")
    _change_data(driver, instance_id)
    changed = _data(driver, instance_id)

    failed = driver.run(f"{T}restore.v1", {"instance_id": instance_id, "backup_id": backup_id})
    assert event_kind(failed) == "command.failed"
    assert failed["data"]["error"]["code"] == "restore_failed"
    assert "backup_invalid" in failed["data"]["error"]["message"]  # it does not open
    assert failed["data"]["rolled_back"] is True
    assert _data(driver, instance_id) == changed
    assert driver.instance(instance_id).status == InstanceStatus.RUNNING


def _refused(driver: Lifecycle, verb: str, data: dict[str, Any]) -> dict[str, Any]:
    """The rejection of a command refused in admission: no operation of it was recorded."""
    command_id = driver.send(f"{T}{verb}.v1", data)
    refused = driver.terminal(command_id)
    assert event_kind(refused) == "command.rejected", refused
    with Session(driver.engine) as session:
        begun = session.scalar(select(Operation).where(Operation.command_id == command_id))
    assert begun is None
    return dict(refused["data"]["error"])


def test_refusals_are_rejections_before_anything_begins(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    ident = {"instance_id": instance_id}
    before = driver.instance(instance_id)

    for version in ("17.0", "16.0"):  # not newer: nothing was tried, so nothing failed
        error = _refused(driver, "upgrade", {**ident, "odoo_version": version})
        assert error["code"] == "invalid_data"
        assert error["details"] == [
            {"field": "data.odoo_version", "message": "must be newer than 17.0"}
        ]
    missing = "7f2e1c9a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    error = _refused(driver, "restore", {**ident, "backup_id": missing})
    assert error["code"] == "invalid_data"
    assert [detail["field"] for detail in error["details"]] == ["data.backup_id"]

    backup_id = "8b4a3e1c-5d6f-4a7b-8c9d-" + instance_id[-12:]
    backed_up = driver.run(f"{T}backup.v1", {**ident, "backup_id": backup_id})
    assert event_kind(backed_up) == "backed_up", backed_up
    error = _refused(driver, "backup", {**ident, "backup_id": backup_id})
    assert error["code"] == "conflict"
    assert error["details"] == [{"field": "data.backup_id", "message": "already used"}]

    after = driver.instance(instance_id)
    assert (after.status, after.odoo_version, after.last_error) == (
        InstanceStatus.RUNNING,
        before.odoo_version,
        None,
    )
    assert serving(driver, instance_id)


def _failing_update(driver: Lifecycle, crash: int | None) -> None:
    instance_id = _provisioned(driver)
    before = _data(driver, instance_id)
    fails: TenantSettings = tenant_settings(pod_labels={JOB_FAILS_LABEL: JOB_FAILS_VALUE})
    driver.reconfigure(fails)
    # A half-applied update: the data changes between the pre-upgrade backup and the failure.
    driver.faults.actions[(f"{T}upgrade.v1", "stopped")] = lambda: _change_data(driver, instance_id)
    failed = _run(
        driver, "upgrade", {"instance_id": instance_id, "odoo_version": "18.0"}, crash, ROLLBACK
    )
    assert event_kind(failed) == "command.failed", failed
    error = failed["data"]["error"]
    assert error["code"] == "upgrade_failed"
    assert "update_failed" in error["message"]
    assert "rolled back to Odoo 17.0" in error["message"]
    assert failed["data"]["rolled_back"] is True
    image = deployment(driver, instance_id).spec.template.spec.containers[0].image
    assert image == "docker.io/library/odoo:17.0"
    assert _data(driver, instance_id) == before
    assert serving(driver, instance_id)
    record = driver.instance(instance_id)
    assert record.status == InstanceStatus.RUNNING
    assert record.odoo_version == "17.0"


def test_an_upgrade_whose_update_fails_rolls_back(driver: Lifecycle) -> None:
    _failing_update(driver, crash=None)


@pytest.mark.parametrize("crash", range(len(ROLLBACK)))
def test_an_upgrade_rolling_back_killed_at_any_step_converges(
    driver: Lifecycle, crash: int
) -> None:
    _failing_update(driver, crash=crash)


def test_a_backup_survives_the_loss_of_every_local_copy(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    before = _data(driver, instance_id)
    backup_id = str(uuid.uuid4())
    backed_up = driver.run(f"{T}backup.v1", {"instance_id": instance_id, "backup_id": backup_id})
    assert event_kind(backed_up) == "backed_up", backed_up
    # Nothing of it is in the cluster: no backup volume, no archive on any volume.
    claims: Any = client.CoreV1Api(driver.api).list_namespaced_persistent_volume_claim(
        driver.namespace
    )
    assert [c.metadata.name for c in claims.items] == [names_of(instance_id).volume]
    volume = filestore(driver, instance_id).parent.parent
    assert not [p for p in volume.rglob("*") if p.name.endswith((".tar", ".tink"))]

    # The volume's contents and the database lost.
    for child in sorted(volume.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    tenant_sql(driver, instance_id, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    assert tenant_sql(driver, instance_id, "SELECT to_regclass('partner')") == [(None,)]
    assert not filestore(driver, instance_id).exists()

    restored = driver.run(f"{T}restore.v1", {"instance_id": instance_id, "backup_id": backup_id})
    assert event_kind(restored) == "restored", restored
    assert _data(driver, instance_id) == before  # from object storage alone
    assert serving(driver, instance_id)
