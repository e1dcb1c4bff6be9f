"""Commands of the contract (exchange `instance.commands`), one model per type."""

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from messages.envelope import Envelope, Frozen, type_name
from messages.fields import (
    CustomerDomain,
    CustomerId,
    EmailAddress,
    InstanceId,
    Label,
    Language,
    ModuleName,
    OdooVersion,
    Subdomain,
    Uuid,
    contract_settings,
    within,
)


class BackupPlan(Frozen):
    """How often the service backs an instance up by itself, and which of those it keeps: the
    newest of each of the last `keep_daily` days, `keep_weekly` ISO weeks and `keep_monthly`
    months that have one (grandfather-father-son)."""

    every_hours: int = Field(default=24, ge=1, le=168)
    keep_daily: int = Field(default=7, ge=0, le=60)
    keep_weekly: int = Field(default=4, ge=0, le=52)
    keep_monthly: int = Field(default=3, ge=0, le=36)


class PlanSpec(Frozen):
    """Resources of an instance, as events report them."""

    cpu_millicores: int
    memory_mib: int
    storage_gib: int
    backups: BackupPlan | None = Field(
        default=None,
        description="scheduled backups and their retention; absent: the defaults (a "
        "provision), or unchanged (a resize)",
    )


class Plan(PlanSpec):
    """Resources a command asks for; bounds come from the contract settings."""

    @field_validator("cpu_millicores")
    @classmethod
    def _cpu(cls, value: int, info: ValidationInfo) -> int:
        return within(contract_settings(info).cpu_millicores, value, "millicores")

    @field_validator("memory_mib")
    @classmethod
    def _memory(cls, value: int, info: ValidationInfo) -> int:
        return within(contract_settings(info).memory_mib, value, "MiB")

    @field_validator("storage_gib")
    @classmethod
    def _storage(cls, value: int, info: ValidationInfo) -> int:
        return within(contract_settings(info).storage_gib, value, "GiB")


class InstanceData(Frozen):
    """Data of commands that name only their instance."""

    instance_id: InstanceId


class ProvisionData(InstanceData):
    """Create a new instance."""

    customer_id: CustomerId
    subdomain: Subdomain
    odoo_version: OdooVersion
    plan: Plan
    admin_email: EmailAddress
    demo_data: bool = False
    language: Language | None = None
    modules: Annotated[list[ModuleName], Field(max_length=100, default_factory=list)]


class CloneData(InstanceData):
    """Make a new instance (`instance_id`) from a backup of another (`source_instance_id`)."""

    source_instance_id: InstanceId
    backup_id: Uuid | None = Field(
        default=None,
        description="that completed backup of the source; absent: a fresh backup of the source, "
        "taken while it keeps serving",
    )
    customer_id: CustomerId
    subdomain: Subdomain
    plan: Plan | None = Field(default=None, description="absent: the source's plan")
    neutralize: bool = Field(
        default=True,
        description="no mail, no scheduled actions, payment providers off, the copy's ribbon "
        "(what Odoo's own `neutralize` does), before its first start",
    )

    @field_validator("source_instance_id")
    @classmethod
    def _another_instance(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("instance_id"):
            raise ValueError("must name another instance than instance_id")
        return value


BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class ArchiveLocation(Frozen):
    """An object in the service's import bucket."""

    bucket: Annotated[str, StringConstraints(pattern=BUCKET_PATTERN)]
    key: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=1024, pattern=r"^[^/\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
        ),
        Field(description="the object's key (no leading slash, no control characters)"),
    ]


class ImportData(InstanceData):
    """Make a new instance from an Odoo database-manager backup (zip: `dump.sql`, `filestore/`,
    `manifest.json`)."""

    customer_id: CustomerId
    subdomain: Subdomain
    odoo_version: OdooVersion
    plan: Plan
    admin_email: EmailAddress
    language: Language | None = None
    archive: ArchiveLocation


class SuspendData(InstanceData):
    """Stop serving for a billing reason until unsuspended."""

    reason: Literal["payment_failed", "invoice_overdue", "abuse", "manual"]


class ResizeData(InstanceData):
    """Change the plan (storage never shrinks; checked against the instance)."""

    plan: Plan


class UpgradeData(InstanceData):
    """Move to a newer Odoo version."""

    odoo_version: OdooVersion


class BackupData(InstanceData):
    """Take a backup under a caller-chosen id."""

    backup_id: Uuid
    label: Label | None = None


class RestoreData(InstanceData):
    """Restore a backup of this instance."""

    backup_id: Uuid


class TerminateData(InstanceData):
    """Stop serving and keep every byte."""

    reason: Literal["subscription_cancelled", "subscription_expired", "manual"]


class DeleteData(InstanceData):
    """Remove for good, after a final backup unless told otherwise."""

    final_backup: bool = True
    keep_data: bool = False


class DomainData(InstanceData):
    """Serve the instance also at a customer's own domain (add), or no longer (remove)."""

    domain: CustomerDomain


class ReconcileData(Frozen):
    """No fields: reconcile the whole fleet."""


class InstanceCommand(Envelope):
    """A command about one instance: `subject` is required and equals `data.instance_id`."""

    state_changing: ClassVar[bool] = True
    subject: InstanceId
    data: InstanceData

    @field_validator("data")
    @classmethod
    def _instance_is_the_subject(cls, data: InstanceData, info: ValidationInfo) -> InstanceData:
        subject = info.data.get("subject")
        if subject is not None and data.instance_id != subject:
            raise ValueError(f"instance_id '{data.instance_id}' differs from subject '{subject}'")
        return data


class ProvisionCommand(InstanceCommand):
    """`odoo.instance.provision.v1`"""

    type: Literal["odoo.instance.provision.v1"]
    data: ProvisionData


class StartCommand(InstanceCommand):
    """`odoo.instance.start.v1`"""

    type: Literal["odoo.instance.start.v1"]


class StopCommand(InstanceCommand):
    """`odoo.instance.stop.v1`"""

    type: Literal["odoo.instance.stop.v1"]


class RestartCommand(InstanceCommand):
    """`odoo.instance.restart.v1`"""

    type: Literal["odoo.instance.restart.v1"]


class SuspendCommand(InstanceCommand):
    """`odoo.instance.suspend.v1`"""

    type: Literal["odoo.instance.suspend.v1"]
    data: SuspendData


class UnsuspendCommand(InstanceCommand):
    """`odoo.instance.unsuspend.v1`"""

    type: Literal["odoo.instance.unsuspend.v1"]


class ResizeCommand(InstanceCommand):
    """`odoo.instance.resize.v1`"""

    type: Literal["odoo.instance.resize.v1"]
    data: ResizeData


class UpgradeCommand(InstanceCommand):
    """`odoo.instance.upgrade.v1`"""

    type: Literal["odoo.instance.upgrade.v1"]
    data: UpgradeData


class BackupCommand(InstanceCommand):
    """`odoo.instance.backup.v1`"""

    type: Literal["odoo.instance.backup.v1"]
    data: BackupData


class RestoreCommand(InstanceCommand):
    """`odoo.instance.restore.v1`"""

    type: Literal["odoo.instance.restore.v1"]
    data: RestoreData


class TerminateCommand(InstanceCommand):
    """`odoo.instance.terminate.v1`"""

    type: Literal["odoo.instance.terminate.v1"]
    data: TerminateData


class ReactivateCommand(InstanceCommand):
    """`odoo.instance.reactivate.v1`"""

    type: Literal["odoo.instance.reactivate.v1"]


class DeleteCommand(InstanceCommand):
    """`odoo.instance.delete.v1`"""

    type: Literal["odoo.instance.delete.v1"]
    data: DeleteData


class CloneCommand(InstanceCommand):
    """`odoo.instance.clone.v1`: `subject` is the new instance."""

    type: Literal["odoo.instance.clone.v1"]
    data: CloneData


class ImportCommand(InstanceCommand):
    """`odoo.instance.import.v1`: `subject` is the new instance."""

    type: Literal["odoo.instance.import.v1"]
    data: ImportData


class DomainAddCommand(InstanceCommand):
    """`odoo.instance.domain.add.v1`"""

    type: Literal["odoo.instance.domain.add.v1"]
    data: DomainData


class DomainRemoveCommand(InstanceCommand):
    """`odoo.instance.domain.remove.v1`"""

    type: Literal["odoo.instance.domain.remove.v1"]
    data: DomainData


CreatingCommand = ProvisionCommand | CloneCommand | ImportCommand
"""The commands that make a new instance (their transition `creates`)."""


class ReconcileCommand(Envelope):
    """`odoo.fleet.reconcile.v1`: no subject, empty data."""

    state_changing: ClassVar[bool] = False
    type: Literal["odoo.fleet.reconcile.v1"]
    data: ReconcileData


AnyCommand = (
    ProvisionCommand
    | StartCommand
    | StopCommand
    | RestartCommand
    | SuspendCommand
    | UnsuspendCommand
    | ResizeCommand
    | UpgradeCommand
    | BackupCommand
    | RestoreCommand
    | TerminateCommand
    | ReactivateCommand
    | DeleteCommand
    | CloneCommand
    | ImportCommand
    | DomainAddCommand
    | DomainRemoveCommand
    | ReconcileCommand
)
Command = Annotated[AnyCommand, Field(discriminator="type")]
"""Any command, told apart by its `type`."""

COMMAND_MODELS: dict[str, type[AnyCommand]] = {type_name(m): m for m in get_args(AnyCommand)}
"""Command type -> model."""
