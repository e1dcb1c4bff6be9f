"""An instance's row and its typed record, mapped in this one place, both ways.

The row keeps the provision as asked (`Instance.spec`, a JSON document) to tell a repeat from a
conflict; what the builders need of it beyond the columns is read from there once, typed, here.
Nothing outside the store sees the row or the document: it hands out InstanceRecord.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from messages.commands import BackupPlan, ProvisionCommand
from store.lifecycle import Hold, InstanceStatus
from store.models import Instance, utcnow
from store.records import InstanceRecord, InstanceShape


class _Asked(BaseModel):
    """The options of a stored provision document; a row without one gets the defaults."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    demo_data: bool = False
    language: str | None = None
    admin_email: str | None = None
    modules: tuple[str, ...] = ()
    neutralized: bool = False
    """Written by the command that makes a neutralized copy; a provision's document never is."""


COLUMNS = tuple(column.key for column in Instance.__table__.columns)
"""The instances table's columns, as the ORM model and a Core row name them."""


def provision_document(command: ProvisionCommand) -> dict[str, object]:
    """What a provision asked for, as the row keeps it (to tell a repeat from a conflict)."""
    return command.data.model_dump(mode="json", exclude={"instance_id"})


def instance_record(row: Instance) -> InstanceRecord:
    """The instance an ORM row holds."""
    return instance_record_of({column: getattr(row, column) for column in COLUMNS})


def instance_record_of(row: Mapping[str, Any]) -> InstanceRecord:
    """The instance a row holds, as column name -> value (what SQLAlchemy Core reads)."""
    asked = _Asked.model_validate(row["spec"])
    return InstanceRecord(
        id=row["id"],
        customer_id=row["customer_id"],
        subdomain=row["subdomain"],
        odoo_version=row["odoo_version"],
        cpu_millicores=row["cpu_millicores"],
        memory_mib=row["memory_mib"],
        storage_gib=row["storage_gib"],
        demo_data=asked.demo_data,
        language=asked.language,
        admin_email=asked.admin_email,
        modules=asked.modules,
        neutralized=asked.neutralized,
        backup_plan=BackupPlan.model_validate(row["backup_plan"]) if row["backup_plan"] else None,
        status=InstanceStatus(row["status"]),
        hold=Hold(row["hold"]) if row["hold"] else None,
        last_command_time=row["last_command_time"],
        current_operation_id=row["current_operation_id"],
        kubernetes_names=dict(row["kubernetes_names"]),
        url=row["url"],
        internal_url=row["internal_url"],
        last_error=row["last_error"],
    )


def new_instance(command: ProvisionCommand) -> Instance:
    """The ORM row of the instance a provision creates, `provisioning`."""
    return Instance(**new_instance_row(command, utcnow()))


def new_instance_row(command: ProvisionCommand, now: datetime) -> dict[str, Any]:
    """The row (column name -> value) of the instance a provision creates, `provisioning`."""
    shape = InstanceShape.asked(command.data)
    return {
        "id": shape.id,
        "customer_id": shape.customer_id,
        "subdomain": shape.subdomain,
        "odoo_version": shape.odoo_version,
        "cpu_millicores": shape.cpu_millicores,
        "memory_mib": shape.memory_mib,
        "storage_gib": shape.storage_gib,
        "backup_plan": (
            backups.model_dump(mode="json")
            if (backups := command.data.plan.backups) is not None
            else None
        ),
        "status": InstanceStatus.PROVISIONING.value,
        "hold": None,
        "spec": provision_document(command),
        "last_command_time": command.time,
        "last_command_id": command.id,
        "current_operation_id": None,
        "kubernetes_names": {},
        "url": None,
        "internal_url": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
