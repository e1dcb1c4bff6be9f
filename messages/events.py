"""Events of the contract (exchange `instance.events`), one model per type, and their making."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, Self, get_args

from opentelemetry import propagate
from pydantic import ConfigDict, Field, model_validator

from messages.commands import InstanceCommand, PlanSpec, ReconcileCommand
from messages.envelope import Envelope, Frozen, type_name
from messages.errors import MessageRejected, RejectionCode
from messages.fields import InstanceId, PrintableId, Uuid

SOURCE: Final = "/instance-service"


class InstanceEventData(Frozen):
    """Data of events that name only their instance."""

    instance_id: InstanceId


class SecretReference(Frozen):
    """Where credentials live: never the credentials themselves."""

    namespace: str
    name: str


class ProvisionedData(InstanceEventData):
    """A new instance serves."""

    url: str = Field(description="public https URL")
    internal_url: str = Field(description="http://<service>.<namespace>.svc.cluster.local:8069")
    odoo_version: str
    credentials_secret: SecretReference


class ClonedData(ProvisionedData):
    """A copy of another instance serves."""

    source_instance_id: InstanceId
    backup_id: Uuid = Field(description="the backup of the source the copy was made from")
    neutralized: bool


class CertificateReference(Frozen):
    """The cert-manager Certificate that serves a customer's domain, and whether it is issued."""

    namespace: str
    name: str
    ready: bool


class DomainAddedData(InstanceEventData):
    """The instance is served at a customer's own domain, with a certificate of its own."""

    domain: str
    url: str = Field(description="https://<domain>")
    certificate: CertificateReference


class DomainRemovedData(InstanceEventData):
    """The instance is no longer served at the domain."""

    domain: str


class ResizedData(InstanceEventData):
    """The instance runs with a new plan."""

    plan: PlanSpec


class UpgradedData(InstanceEventData):
    """The instance runs a newer Odoo."""

    from_version: str
    to_version: str


class ObjectLocationData(Frozen):
    """An object in object storage (never credentials)."""

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)


class BackedUpData(InstanceEventData):
    """A backup was written off the cluster and checked there."""

    backup_id: Uuid
    size_bytes: int = Field(ge=0, description="of the object: the sealed archive")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="of the object's bytes, also its `sha256` tag"
    )
    scheduled: bool = Field(
        default=False, description="taken by the service's schedule, not asked for by a command"
    )
    location: ObjectLocationData


class BackupsPrunedData(InstanceEventData):
    """Backups the retention policy removed from object storage (their ids stay taken)."""

    backup_ids: list[Uuid] = Field(min_length=1)


class RestoredData(InstanceEventData):
    """A backup was restored."""

    backup_id: Uuid


class ErrorInfo(Frozen):
    """What went wrong."""

    code: str
    message: str


class RejectionDetail(Frozen):
    """One field and the rule it broke."""

    field: str
    message: str


class RejectionInfo(Frozen):
    """Why a command was rejected, field by field."""

    code: RejectionCode
    message: str
    details: tuple[RejectionDetail, ...] = ()


class CommandFailedData(Frozen):
    """A valid command could not be carried out (`instance_id` is absent for fleet commands)."""

    instance_id: InstanceId | None = None
    command_id: str
    command_type: str
    error: ErrorInfo
    rolled_back: bool


class CommandRejectedData(Frozen):
    """A command was refused; id and type are present when they could be read."""

    command_id: str | None = None
    command_type: str | None = None
    error: RejectionInfo


class StatusChangedData(InstanceEventData):
    """The observed status of an instance changed."""

    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    reason: str


class FleetReconciledData(Frozen):
    """Counts of a reconciliation run."""

    checked: int = Field(ge=0)
    repaired: int = Field(ge=0)
    orphans: int = Field(ge=0)


class Event(Envelope):
    """An event: a new UUID id, our source, the cause and correlation of its command."""

    id: Uuid
    source: Literal["/instance-service"] = SOURCE
    subject: InstanceId | None = None
    causationid: PrintableId = Field(
        description="id of the command that caused the event; `observation:<event id>` for a "
        "status change the watcher observed"
    )
    correlationid: PrintableId = Field(
        description="the command's correlationid, else its id; the instance id for an "
        "observed status change"
    )

    @model_validator(mode="after")
    def _subject_is_the_instance(self) -> Self:
        # Every concrete event declares `data` (after `subject`, so this runs once both are set).
        instance_id = getattr(getattr(self, "data", None), "instance_id", None)
        if instance_id is not None and self.subject != instance_id:
            raise ValueError(f"subject must be the instance the event is about ({instance_id})")
        return self

    @classmethod
    def caused_by(
        cls,
        command: InstanceCommand | ReconcileCommand,
        data: Frozen,
        *,
        subject: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Self:
        """The event `command` caused, with ids and correlation as the contract requires.

        `subject` defaults to the command's; a fleet command's events about one instance name it.
        """
        if subject is None and isinstance(command, InstanceCommand):
            subject = command.subject
        return cls._new(
            data,
            subject=subject,
            causationid=command.id,
            correlationid=command.correlationid or command.id,
            traceparent=traceparent,
            tracestate=tracestate,
            event_id=event_id,
            time=time,
        )

    @classmethod
    def _new(
        cls,
        data: object,
        *,
        subject: str | None,
        causationid: str | None,
        correlationid: str | None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Self:
        if traceparent is None:
            # The span that produces the event: its subscribers continue this trace.
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            traceparent, tracestate = carrier.get("traceparent"), carrier.get("tracestate")
        return cls.model_validate(
            {
                "specversion": "1.0",
                "id": event_id or str(uuid.uuid4()),
                "type": type_name(cls),
                "subject": subject,
                "time": time or datetime.now(UTC),
                "datacontenttype": "application/json",
                "causationid": causationid,
                "correlationid": correlationid,
                "traceparent": traceparent,
                "tracestate": tracestate,
                "data": data,
            }
        )


class ProvisionedEvent(Event):
    """`odoo.instance.provisioned.v1`"""

    type: Literal["odoo.instance.provisioned.v1"]
    data: ProvisionedData


class ClonedEvent(Event):
    """`odoo.instance.cloned.v1`"""

    type: Literal["odoo.instance.cloned.v1"]
    data: ClonedData


class ImportedEvent(Event):
    """`odoo.instance.imported.v1`: `odoo_version` as the archive's manifest states it."""

    type: Literal["odoo.instance.imported.v1"]
    data: ProvisionedData


class DomainAddedEvent(Event):
    """`odoo.instance.domain.added.v1`"""

    type: Literal["odoo.instance.domain.added.v1"]
    data: DomainAddedData


class DomainRemovedEvent(Event):
    """`odoo.instance.domain.removed.v1`"""

    type: Literal["odoo.instance.domain.removed.v1"]
    data: DomainRemovedData


class StartedEvent(Event):
    """`odoo.instance.started.v1`"""

    type: Literal["odoo.instance.started.v1"]
    data: InstanceEventData


class StoppedEvent(Event):
    """`odoo.instance.stopped.v1`"""

    type: Literal["odoo.instance.stopped.v1"]
    data: InstanceEventData


class RestartedEvent(Event):
    """`odoo.instance.restarted.v1`"""

    type: Literal["odoo.instance.restarted.v1"]
    data: InstanceEventData


class SuspendedEvent(Event):
    """`odoo.instance.suspended.v1`"""

    type: Literal["odoo.instance.suspended.v1"]
    data: InstanceEventData


class UnsuspendedEvent(Event):
    """`odoo.instance.unsuspended.v1`"""

    type: Literal["odoo.instance.unsuspended.v1"]
    data: InstanceEventData


class TerminatedEvent(Event):
    """`odoo.instance.terminated.v1`"""

    type: Literal["odoo.instance.terminated.v1"]
    data: InstanceEventData


class ReactivatedEvent(Event):
    """`odoo.instance.reactivated.v1`"""

    type: Literal["odoo.instance.reactivated.v1"]
    data: InstanceEventData


class DeletedEvent(Event):
    """`odoo.instance.deleted.v1`"""

    type: Literal["odoo.instance.deleted.v1"]
    data: InstanceEventData


class ResizedEvent(Event):
    """`odoo.instance.resized.v1`"""

    type: Literal["odoo.instance.resized.v1"]
    data: ResizedData


class UpgradedEvent(Event):
    """`odoo.instance.upgraded.v1`"""

    type: Literal["odoo.instance.upgraded.v1"]
    data: UpgradedData


class BackedUpEvent(Event):
    """`odoo.instance.backed_up.v1`"""

    type: Literal["odoo.instance.backed_up.v1"]
    data: BackedUpData


class BackupsPrunedEvent(Event):
    """`odoo.instance.backups.pruned.v1`: after a backup (its command is the cause), or by the
    scheduler's run (backups whose time is up)."""

    type: Literal["odoo.instance.backups.pruned.v1"]
    data: BackupsPrunedData

    @classmethod
    def by_retention(cls, data: BackupsPrunedData) -> Self:
        """Pruned by the scheduler's run, no command: the cause is the retention policy
        (`retention:<event id>`), correlated by the instance id."""
        event_id = str(uuid.uuid4())
        return cls._new(
            data,
            subject=data.instance_id,
            causationid=f"retention:{event_id}",
            correlationid=data.instance_id,
            event_id=event_id,
        )


class RestoredEvent(Event):
    """`odoo.instance.restored.v1`"""

    type: Literal["odoo.instance.restored.v1"]
    data: RestoredData


class CommandFailedEvent(Event):
    """`odoo.instance.command.failed.v1`"""

    type: Literal["odoo.instance.command.failed.v1"]
    data: CommandFailedData


class CommandRejectedEvent(Event):
    """`odoo.instance.command.rejected.v1`: the cause may be unreadable, so ids are optional."""

    type: Literal["odoo.instance.command.rejected.v1"]
    data: CommandRejectedData
    causationid: PrintableId | None = None  # type: ignore[assignment]
    correlationid: PrintableId | None = None  # type: ignore[assignment]

    @classmethod
    def for_rejection(
        cls,
        rejection: MessageRejected,
        *,
        subject: str | None = None,
        correlationid: str | None = None,
        traceparent: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Self:
        """The answer to a rejected message, whatever of it could be read."""
        data = {
            "command_id": rejection.command_id,
            "command_type": rejection.command_type,
            "error": rejection.as_error(),
        }
        return cls._new(
            data,
            subject=subject,
            causationid=rejection.command_id,
            correlationid=correlationid or rejection.command_id,
            traceparent=traceparent,
            event_id=event_id,
            time=time,
        )


class StatusChangedEvent(Event):
    """`odoo.instance.status.changed.v1`"""

    type: Literal["odoo.instance.status.changed.v1"]
    data: StatusChangedData

    @classmethod
    def observed(cls, data: StatusChangedData, correlationid: str) -> Self:
        """A change the watcher saw, not one a command made: the cause is the observation
        (`observation:<event id>`); the watcher passes the instance id as the correlation, so
        all observed changes of an instance correlate."""
        event_id = str(uuid.uuid4())
        return cls._new(
            data,
            subject=data.instance_id,
            causationid=f"observation:{event_id}",
            correlationid=correlationid,
            event_id=event_id,
        )


class FleetReconciledEvent(Event):
    """`odoo.fleet.reconciled.v1`: about the fleet, so without a subject."""

    type: Literal["odoo.fleet.reconciled.v1"]
    data: FleetReconciledData
    subject: None = None


AnyEventModel = (
    ProvisionedEvent
    | StartedEvent
    | StoppedEvent
    | RestartedEvent
    | SuspendedEvent
    | UnsuspendedEvent
    | TerminatedEvent
    | ReactivatedEvent
    | DeletedEvent
    | ResizedEvent
    | UpgradedEvent
    | BackedUpEvent
    | BackupsPrunedEvent
    | RestoredEvent
    | ClonedEvent
    | ImportedEvent
    | DomainAddedEvent
    | DomainRemovedEvent
    | CommandFailedEvent
    | CommandRejectedEvent
    | StatusChangedEvent
    | FleetReconciledEvent
)
AnyEvent = Annotated[AnyEventModel, Field(discriminator="type")]
"""Any event, told apart by its `type`."""

EVENT_MODELS: dict[str, type[Event]] = {type_name(m): m for m in get_args(AnyEventModel)}
"""Event type -> model."""
