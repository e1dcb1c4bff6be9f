"""Plain, immutable views of stored rows that handlers and the consumer work with."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from messages.commands import BackupPlan, CloneData, ImportData, ProvisionData
from store.lifecycle import Hold, InstanceStatus, Transition
from store.models import InboxEntry
from store.retention import BackupKind

READY_AT_KEY = "ready_at"
"""Key of an operation's result: when (epoch seconds) its instance was last seen Ready; the
terminal event of a successful command carries it to the outbox for the Ready-to-event metric."""


class Outcome(StrEnum):
    """How a command ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StoredOutcome:
    """A command's terminal record: what a redelivery answers with."""

    command_id: str
    command_type: str
    instance_id: str | None
    outcome: Outcome
    terminal_event_id: str

    @classmethod
    def of(cls, entry: InboxEntry) -> "StoredOutcome":
        """From its inbox row."""
        return cls(
            entry.command_id,
            entry.command_type,
            entry.instance_id,
            Outcome(entry.outcome),
            entry.terminal_event_id,
        )


@dataclass(frozen=True, kw_only=True)
class InstanceShape:
    """What an instance is: the one shape that goes from the store to the manifest builders.

    Its Odoo version and plan are the current ones (upgrade and resize change them); the rest is
    as provisioned. A stored instance is one (InstanceRecord); a provision's is `asked(data)`;
    `handlers.specs.instance_spec` is the one mapper from it to what the builders take.
    """

    id: str
    customer_id: str
    subdomain: str
    odoo_version: str
    cpu_millicores: int
    memory_mib: int
    storage_gib: int
    demo_data: bool
    language: str | None
    admin_email: str | None
    modules: tuple[str, ...]
    neutralized: bool
    """A copy that must not reach the outside (a clone's): no mail egress, whatever its plan."""

    @classmethod
    def asked(cls, data: ProvisionData) -> "InstanceShape":
        """The instance a provision asks for."""
        return cls(
            id=data.instance_id,
            customer_id=data.customer_id,
            subdomain=data.subdomain,
            odoo_version=data.odoo_version,
            cpu_millicores=data.plan.cpu_millicores,
            memory_mib=data.plan.memory_mib,
            storage_gib=data.plan.storage_gib,
            demo_data=data.demo_data,
            language=data.language,
            admin_email=data.admin_email,
            modules=tuple(data.modules),
            neutralized=False,  # a provision makes an original, never a copy
        )

    @classmethod
    def cloned(cls, data: CloneData, source: "InstanceShape", odoo_version: str) -> "InstanceShape":
        """The copy a clone asks for: the source's options, its own name and plan, and the Odoo
        version of the backup it is made from."""
        plan = data.plan
        return cls(
            id=data.instance_id,
            customer_id=data.customer_id,
            subdomain=data.subdomain,
            odoo_version=odoo_version,
            cpu_millicores=plan.cpu_millicores if plan else source.cpu_millicores,
            memory_mib=plan.memory_mib if plan else source.memory_mib,
            storage_gib=plan.storage_gib if plan else source.storage_gib,
            demo_data=source.demo_data,
            language=source.language,
            admin_email=source.admin_email,
            modules=source.modules,
            neutralized=data.neutralize,
        )

    @classmethod
    def imported(cls, data: ImportData) -> "InstanceShape":
        """The instance an import asks for (its database comes from the archive)."""
        return cls(
            id=data.instance_id,
            customer_id=data.customer_id,
            subdomain=data.subdomain,
            odoo_version=data.odoo_version,
            cpu_millicores=data.plan.cpu_millicores,
            memory_mib=data.plan.memory_mib,
            storage_gib=data.plan.storage_gib,
            demo_data=False,
            language=data.language,
            admin_email=data.admin_email,
            modules=(),
            neutralized=False,
        )


@dataclass(frozen=True, kw_only=True)
class InstanceRecord(InstanceShape):
    """An instance as stored: its shape, and where it stands (store/instances.py reads it)."""

    status: InstanceStatus
    hold: Hold | None
    """A billing hold (suspended, terminated), kept apart from the status: it lasts through
    working statuses and failures until unsuspend, reactivate or delete lift it."""
    last_command_time: datetime
    current_operation_id: str | None
    kubernetes_names: dict[str, Any]
    url: str | None
    internal_url: str | None
    last_error: str | None
    backup_plan: BackupPlan | None = None
    """Scheduled backups and their retention (None: the defaults)."""
    domains: tuple[str, ...] = ()
    """The customer's own domains it is served at (active ones, sorted)."""


@dataclass(frozen=True)
class Admission:
    """Leave to run a command: the instance as it was, the transition, and the operation.

    `operation_id` is set when the command resumes its own operation after a redelivery.
    """

    instance: InstanceRecord | None
    transition: Transition | None
    operation_id: str | None = None


@dataclass(frozen=True)
class OperationRecord:
    """A command's operation as stored: the last step it recorded and what it noted so far."""

    id: str
    command_id: str
    kind: str
    state: str
    step: str
    attempts: int
    result: dict[str, Any]


@dataclass(frozen=True)
class BackupRecord:
    """A completed backup: where its archive is and how to check it."""

    id: str
    instance_id: str
    location: str
    size_bytes: int
    sha256: str
    label: str | None = None
    odoo_version: str | None = None
    """The Odoo version whose database the backup holds (None: recorded before it was kept)."""
    kind: BackupKind = BackupKind.MANUAL
    taken_at: datetime | None = None
    """When it was recorded (None on a new record: now)."""


@dataclass(frozen=True)
class InstanceUpdate:
    """Changes a handler asks for along with a command's outcome; None leaves a field alone.

    The status and the hold are not among them: the status machine decides those from how the
    command ended (`store.lifecycle.settle`); a failure says only whether it `rolled_back`.
    """

    odoo_version: str | None = None
    cpu_millicores: int | None = None
    memory_mib: int | None = None
    storage_gib: int | None = None
    backup_plan: BackupPlan | None = None
    kubernetes_names: dict[str, Any] | None = None
    url: str | None = None
    internal_url: str | None = None
    last_error: str | None = None
    rolled_back: bool = False
    """A failure that changed nothing: the instance goes back to the status it had."""
