"""One valid example of every command and event, for the AsyncAPI document and the tests.

Ids and times are fixed so that the generated document is the same on every run.
"""

import copy
import json
from datetime import UTC, datetime
from typing import Any

from messages.commands import COMMAND_MODELS, PlanSpec
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from messages.events import (
    EVENT_MODELS,
    BackedUpData,
    BackupsPrunedData,
    CertificateReference,
    ClonedData,
    CommandFailedData,
    CommandRejectedEvent,
    DomainAddedData,
    DomainRemovedData,
    ErrorInfo,
    Event,
    FleetReconciledData,
    InstanceEventData,
    ObjectLocationData,
    ProvisionedData,
    ResizedData,
    RestoredData,
    SecretReference,
    StatusChangedData,
    UpgradedData,
)

INSTANCE_ID = "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f"
SOURCE_ID = "8a1d2e3f-4b5c-4d6e-8f70-1a2b3c4d5e6f"
BACKUP_ID = "5d0c9a7e-1f2b-4c3d-8e9f-a0b1c2d3e4f5"
TIME = "2026-11-27T10:00:00Z"
PLAN = {"cpu_millicores": 1000, "memory_mib": 2048, "storage_gib": 20}

_COMMAND_DATA: dict[str, dict[str, Any]] = {
    "odoo.instance.provision.v1": {
        "instance_id": INSTANCE_ID,
        "customer_id": "cus_4711",
        "subdomain": "acme",
        "odoo_version": "17.0",
        "plan": PLAN,
        "admin_email": "it@acme.example",
        "demo_data": False,
        "language": "en_US",
        "modules": ["sale_management", "crm"],
    },
    "odoo.instance.start.v1": {"instance_id": INSTANCE_ID},
    "odoo.instance.stop.v1": {"instance_id": INSTANCE_ID},
    "odoo.instance.restart.v1": {"instance_id": INSTANCE_ID},
    "odoo.instance.suspend.v1": {"instance_id": INSTANCE_ID, "reason": "payment_failed"},
    "odoo.instance.unsuspend.v1": {"instance_id": INSTANCE_ID},
    "odoo.instance.resize.v1": {
        "instance_id": INSTANCE_ID,
        "plan": {"cpu_millicores": 2000, "memory_mib": 4096, "storage_gib": 40},
    },
    "odoo.instance.upgrade.v1": {"instance_id": INSTANCE_ID, "odoo_version": "18.0"},
    "odoo.instance.backup.v1": {
        "instance_id": INSTANCE_ID,
        "backup_id": BACKUP_ID,
        "label": "before upgrade",
    },
    "odoo.instance.restore.v1": {"instance_id": INSTANCE_ID, "backup_id": BACKUP_ID},
    "odoo.instance.terminate.v1": {
        "instance_id": INSTANCE_ID,
        "reason": "subscription_cancelled",
    },
    "odoo.instance.reactivate.v1": {"instance_id": INSTANCE_ID},
    "odoo.instance.delete.v1": {
        "instance_id": INSTANCE_ID,
        "final_backup": True,
        "keep_data": False,
    },
    "odoo.instance.clone.v1": {
        "instance_id": INSTANCE_ID,
        "source_instance_id": SOURCE_ID,
        "backup_id": BACKUP_ID,
        "customer_id": "cus_4711",
        "subdomain": "acme-staging",
        "neutralize": True,
    },
    "odoo.instance.import.v1": {
        "instance_id": INSTANCE_ID,
        "customer_id": "cus_4711",
        "subdomain": "acme",
        "odoo_version": "17.0",
        "plan": PLAN,
        "admin_email": "it@acme.example",
        "language": "en_US",
        "archive": {"bucket": "instance-service-imports", "key": "cus_4711/acme-2026-11-26.zip"},
    },
    "odoo.instance.domain.add.v1": {"instance_id": INSTANCE_ID, "domain": "erp.acme.example"},
    "odoo.instance.domain.remove.v1": {"instance_id": INSTANCE_ID, "domain": "erp.acme.example"},
    "odoo.fleet.reconcile.v1": {},
}


def command_example(command_type: str) -> dict[str, Any]:
    """A valid command document of `command_type`, as a publisher would send it."""
    short = "-".join(command_type.split(".")[2:-1])
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{short}-7f3a9c21",
        "source": "/billing-service" if command_type != "odoo.fleet.reconcile.v1" else "/ops",
        "type": command_type,
        "time": TIME,
        "datacontenttype": "application/json",
        "correlationid": "order-2026-0042",
        "data": copy.deepcopy(_COMMAND_DATA[command_type]),  # callers may change their copy
    }
    if command_type != "odoo.fleet.reconcile.v1":
        document["subject"] = INSTANCE_ID
    return document


def _event_data(event_type: str) -> Any:
    instance = {"instance_id": INSTANCE_ID}
    match event_type:
        case "odoo.instance.provisioned.v1":
            return ProvisionedData(
                instance_id=INSTANCE_ID,
                url="https://acme.odoo.example.com",
                internal_url="http://odoo-0b8f3c1e.odoo-tenants.svc.cluster.local:8069",
                odoo_version="17.0",
                credentials_secret=SecretReference(namespace="odoo-tenants", name="odoo-0b8f3c1e"),
            )
        case "odoo.instance.imported.v1":
            return ProvisionedData(
                instance_id=INSTANCE_ID,
                url="https://acme.odoo.example.com",
                internal_url="http://odoo-0b8f3c1e.odoo-tenants.svc.cluster.local:8069",
                odoo_version="17.0",
                credentials_secret=SecretReference(namespace="odoo-tenants", name="odoo-0b8f3c1e"),
            )
        case "odoo.instance.cloned.v1":
            return ClonedData(
                instance_id=INSTANCE_ID,
                url="https://acme-staging.odoo.example.com",
                internal_url="http://odoo-0b8f3c1e.odoo-tenants.svc.cluster.local:8069",
                odoo_version="17.0",
                credentials_secret=SecretReference(namespace="odoo-tenants", name="odoo-0b8f3c1e"),
                source_instance_id=SOURCE_ID,
                backup_id=BACKUP_ID,
                neutralized=True,
            )
        case "odoo.instance.domain.added.v1":
            return DomainAddedData(
                instance_id=INSTANCE_ID,
                domain="erp.acme.example",
                url="https://erp.acme.example",
                certificate=CertificateReference(
                    namespace="odoo-tenants",
                    name="odoo-0b8f3c1e7c2d4d5e9f102a3b4c5d6e7f-d-cec400480b87",
                    ready=True,
                ),
            )
        case "odoo.instance.domain.removed.v1":
            return DomainRemovedData(instance_id=INSTANCE_ID, domain="erp.acme.example")
        case "odoo.instance.resized.v1":
            return ResizedData(instance_id=INSTANCE_ID, plan=PlanSpec(**PLAN))
        case "odoo.instance.upgraded.v1":
            return UpgradedData(instance_id=INSTANCE_ID, from_version="17.0", to_version="18.0")
        case "odoo.instance.backed_up.v1":
            return BackedUpData(
                instance_id=INSTANCE_ID,
                backup_id=BACKUP_ID,
                size_bytes=48_213_504,
                sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                scheduled=False,
                location=ObjectLocationData(
                    bucket="instance-service-backups",
                    key=f"backups/{INSTANCE_ID}/{BACKUP_ID}.tar.tink",
                ),
            )
        case "odoo.instance.restored.v1":
            return RestoredData(instance_id=INSTANCE_ID, backup_id=BACKUP_ID)
        case "odoo.instance.backups.pruned.v1":
            return BackupsPrunedData(
                instance_id=INSTANCE_ID,
                backup_ids=["1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"],
            )
        case "odoo.instance.command.failed.v1":
            return CommandFailedData(
                instance_id=INSTANCE_ID,
                command_id="upgrade-7f3a9c21",
                command_type="odoo.instance.upgrade.v1",
                error=ErrorInfo(code="upgrade_failed", message="module update job failed"),
                rolled_back=True,
            )
        case "odoo.instance.status.changed.v1":
            return StatusChangedData.model_validate(
                {**instance, "from": "running", "to": "degraded", "reason": "pod not ready"}
            )
        case "odoo.fleet.reconciled.v1":
            return FleetReconciledData(checked=120, repaired=2, orphans=1)
        case _:
            return InstanceEventData(instance_id=INSTANCE_ID)


_CAUSE = {
    "odoo.instance.provisioned.v1": "odoo.instance.provision.v1",
    "odoo.instance.started.v1": "odoo.instance.start.v1",
    "odoo.instance.stopped.v1": "odoo.instance.stop.v1",
    "odoo.instance.restarted.v1": "odoo.instance.restart.v1",
    "odoo.instance.suspended.v1": "odoo.instance.suspend.v1",
    "odoo.instance.unsuspended.v1": "odoo.instance.unsuspend.v1",
    "odoo.instance.terminated.v1": "odoo.instance.terminate.v1",
    "odoo.instance.reactivated.v1": "odoo.instance.reactivate.v1",
    "odoo.instance.deleted.v1": "odoo.instance.delete.v1",
    "odoo.instance.resized.v1": "odoo.instance.resize.v1",
    "odoo.instance.upgraded.v1": "odoo.instance.upgrade.v1",
    "odoo.instance.backed_up.v1": "odoo.instance.backup.v1",
    "odoo.instance.backups.pruned.v1": "odoo.instance.backup.v1",
    "odoo.instance.restored.v1": "odoo.instance.restore.v1",
    "odoo.instance.cloned.v1": "odoo.instance.clone.v1",
    "odoo.instance.imported.v1": "odoo.instance.import.v1",
    "odoo.instance.domain.added.v1": "odoo.instance.domain.add.v1",
    "odoo.instance.domain.removed.v1": "odoo.instance.domain.remove.v1",
    "odoo.instance.command.failed.v1": "odoo.instance.upgrade.v1",
    "odoo.instance.status.changed.v1": "odoo.fleet.reconcile.v1",
    "odoo.fleet.reconciled.v1": "odoo.fleet.reconcile.v1",
}


def event_example(event_type: str) -> Event:
    """A valid event of `event_type`, as the service would publish it."""
    event_id = "3c9e1b7a-5d4f-4e2a-9b8c-7d6e5f4a3b2c"
    time = datetime(2026, 11, 27, 10, 1, 30, tzinfo=UTC)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    if event_type == "odoo.instance.command.rejected.v1":
        rejection = MessageRejected(
            RejectionCode.INVALID_DATA,
            "1 field(s) of odoo.instance.provision.v1 break the contract",
            (FieldProblem("data.subdomain", "'www' is reserved"),),
            "provision-7f3a9c21",
            "odoo.instance.provision.v1",
        )
        return CommandRejectedEvent.for_rejection(
            rejection, subject=INSTANCE_ID, traceparent=traceparent, event_id=event_id, time=time
        )
    cause_type = _CAUSE[event_type]
    cause = COMMAND_MODELS[cause_type].model_validate_json(
        json.dumps(command_example(cause_type)), strict=True
    )
    data = _event_data(event_type)
    return EVENT_MODELS[event_type].caused_by(
        cause,
        data,
        subject=getattr(data, "instance_id", None),
        traceparent=traceparent,
        event_id=event_id,
        time=time,
    )
