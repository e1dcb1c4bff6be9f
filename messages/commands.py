"""Commands of the contract (exchange `instance.commands`), one model per type."""

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator

from messages.envelope import Envelope, Frozen, type_name
from messages.fields import (
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
    | ReconcileCommand
)
Command = Annotated[AnyCommand, Field(discriminator="type")]
"""Any command, told apart by its `type`."""

COMMAND_MODELS: dict[str, type[AnyCommand]] = {type_name(m): m for m in get_args(AnyCommand)}
"""Command type -> model."""
