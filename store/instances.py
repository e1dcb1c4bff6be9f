"""An instance's row and its typed record, mapped in this one place, both ways.

The row keeps the provision as asked (`Instance.spec`, a JSON document) to tell a repeat from a
conflict; what the builders need of it beyond the columns is read from there once, typed, here.
Nothing outside the store sees the row or the document: it hands out InstanceRecord.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from messages.commands import (
    BackupPlan,
    CloneCommand,
    CreatingCommand,
    ImportCommand,
    ProvisionCommand,
)
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


ASKED_KEY = "asked"
"""Where the document of an instance made by a clone or an import keeps what its command asked
(beside the options it took from elsewhere); a provision's document is what it asked."""


def provision_document(command: ProvisionCommand) -> dict[str, object]:
    """What a provision asked for, as the row keeps it (to tell a repeat from a conflict)."""
    return command.data.model_dump(mode="json", exclude={"instance_id"})


def asked_document(command: CreatingCommand) -> dict[str, object]:
    """What the command that makes an instance asked: equal for a repeat, else a conflict."""
    if isinstance(command, ProvisionCommand):
        return provision_document(command)
    return {"type": command.type, **command.data.model_dump(mode="json", exclude={"instance_id"})}


def stored_asked(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the command that made the instance asked, from the row's document."""
    asked = spec.get(ASKED_KEY)
    return asked if isinstance(asked, Mapping) else spec


def creation_document(command: CreatingCommand, shape: InstanceShape) -> dict[str, object]:
    """The document the row of a new instance keeps: a provision's data; for a clone or an
    import, what it asked and the options the instance has (`_Asked` reads them back)."""
    if isinstance(command, ProvisionCommand):
        return provision_document(command)
    return {
        ASKED_KEY: asked_document(command),
        "demo_data": shape.demo_data,
        "language": shape.language,
        "admin_email": shape.admin_email,
        "modules": list(shape.modules),
        "neutralized": shape.neutralized,
    }


def creation_shape(
    command: CreatingCommand, source: InstanceShape | None, version: str | None
) -> InstanceShape:
    """The instance a creating command makes: a clone's from its `source` and the Odoo
    `version` of its backup (None: the source's)."""
    if isinstance(command, ProvisionCommand):
        return InstanceShape.asked(command.data)
    if isinstance(command, ImportCommand):
        return InstanceShape.imported(command.data)
    if source is None:
        raise ValueError(f"a clone of {command.data.source_instance_id} needs its source")
    return InstanceShape.cloned(command.data, source, version or source.odoo_version)


def _plan_of(command: CreatingCommand, source: InstanceRecord | None) -> BackupPlan | None:
    if isinstance(command, CloneCommand):
        if command.data.plan is not None:
            return command.data.plan.backups
        return source.backup_plan if source is not None else None
    return command.data.plan.backups


def instance_record(row: Instance, domains: Iterable[str] = ()) -> InstanceRecord:
    """The instance an ORM row holds, served also at its active `domains`."""
    return instance_record_of({column: getattr(row, column) for column in COLUMNS}, domains)


def instance_record_of(row: Mapping[str, Any], domains: Iterable[str] = ()) -> InstanceRecord:
    """The instance a row holds, as column name -> value (what SQLAlchemy Core reads), served
    also at its active `domains`."""
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
        domains=tuple(sorted(domains)),
    )


def new_instance(command: ProvisionCommand) -> Instance:
    """The ORM row of the instance a provision creates, `provisioning`."""
    return Instance(**new_instance_row(command, utcnow()))


def new_instance_row(
    command: CreatingCommand,
    now: datetime,
    source: InstanceRecord | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The row (column name -> value) of the instance a command creates (a clone's from its
    `source`, at the Odoo `version` of its backup)."""
    shape = creation_shape(command, source, version)
    backups = _plan_of(command, source)
    return {
        "id": shape.id,
        "customer_id": shape.customer_id,
        "subdomain": shape.subdomain,
        "odoo_version": shape.odoo_version,
        "cpu_millicores": shape.cpu_millicores,
        "memory_mib": shape.memory_mib,
        "storage_gib": shape.storage_gib,
        "backup_plan": backups.model_dump(mode="json") if backups is not None else None,
        "status": InstanceStatus.PROVISIONING.value,
        "hold": None,
        "spec": creation_document(command, shape),
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
