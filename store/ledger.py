"""Commands and their outcomes: admission, operations, and the one transaction that records an
outcome together with the state change and the events that report it.

The order of work for a command (driven by the consumer, issue 4/10):

    stored = ledger.outcome_of(command.id)       # a redelivery: answer with this, do nothing
    with ledger.exclusive(command):              # InstanceBusyError: retry later
        ledger.outcome_of(command.id)            # asked again under the lock
        started = ledger.start(command)          # admit + begin in one transaction;
                                                 # MessageRejected: stale, state, unknown...
        ...side effects...
        ledger.record(command, Outcome.SUCCEEDED, event, update=...)
"""

import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from messages.commands import AnyCommand, InstanceCommand, ProvisionCommand
from messages.errors import MessageRejected, PermanentError, RejectionCode
from messages.events import Event
from messages.serialization import serialize_event
from store.admission import check_identity, check_record, rejection
from store.database import traced_session, traced_step
from store.instances import instance_record, new_instance
from store.lifecycle import Ending, Hold, InstanceStatus, StatusMachine, Verdict
from store.locks import InstanceBusyError, InstanceLocks, locks_for
from store.models import Backup, InboxEntry, Instance, Operation, OutboxEntry, utcnow
from store.records import (
    READY_AT_KEY,
    Admission,
    BackupRecord,
    InstanceRecord,
    InstanceUpdate,
    OperationRecord,
    Outcome,
    StoredOutcome,
)
from store.settings import OperationSettings
from store.watchdog import COMMAND_KEY, command_document

FLEET_LOCK = "fleet"


@dataclass(frozen=True)
class Started:
    """A command admitted and begun (`Ledger.start`): what its handler is given."""

    admission: Admission
    operation_id: str | None


class Ledger:
    """The store's command-facing side.

    `machine`: the status machine of the service's commands, derived from their declarations
    at the composition root. `versions_with_image`: the Odoo versions the service has an image
    for; a provision or upgrade to another is rejected in admission (None: not checked, the
    handlers' concern).
    """

    def __init__(
        self,
        engine: Engine,
        machine: StatusMachine,
        locks: InstanceLocks | None = None,
        *,
        versions_with_image: Collection[str] | None = None,
        operations: OperationSettings | None = None,
    ) -> None:
        self.engine = engine
        self.machine = machine
        self.locks = locks if locks is not None else locks_for(engine)
        self.operations = operations or OperationSettings()
        """How long an operation of each type may stay open (its deadline)."""
        self.versions_with_image = (
            frozenset(versions_with_image) if versions_with_image is not None else None
        )

    def _unit(self, name: str | None, *, write: bool = False) -> AbstractContextManager[Session]:
        """A session for one unit of work (a transaction when `write`), traced as `db <name>`
        (None: its steps are traced instead)."""
        return traced_session(self.engine, name, write=write)

    @contextmanager
    def _step(self, within: Session | None, name: str, *, write: bool = False) -> Iterator[Session]:
        """A unit of work of its own, or a traced step of the caller's (`within`)."""
        if within is None:
            with self._unit(name, write=write) as session:
                yield session
            return
        with traced_step(self.engine, name):
            yield within
            if write:
                within.flush()  # the step's statements inside its span

    def outcome_of(self, command_id: str) -> StoredOutcome | None:
        """The recorded outcome of a command id, if it has one."""
        with self._unit("outcome_of") as session:
            entry = session.get(InboxEntry, command_id)
            return StoredOutcome.of(entry) if entry else None

    def instance(self, instance_id: str) -> InstanceRecord | None:
        """An instance as stored."""
        with self._unit("instance") as session:
            row = session.get(Instance, instance_id)
            return instance_record(row) if row else None

    def instances(self) -> list[InstanceRecord]:
        """Every instance, deleted ones included, in one query (for reconciliation)."""
        with self._unit("instances") as session:
            return [instance_record(row) for row in session.scalars(select(Instance))]

    def record_observation(
        self, instance_id: str, expected: InstanceStatus, event: Event, status: InstanceStatus
    ) -> bool:
        """The watcher's status change and its event, in one transaction, only if the instance
        is still `expected` with no operation open; False (nothing written) otherwise.

        Holds the instance's lock like a command, so it never interleaves with one; a busy
        instance raises InstanceBusyError (the watcher looks again later).
        """
        with self.locks.hold(instance_id), self._unit("record_observation", write=True) as session:
            row = session.get(Instance, instance_id, with_for_update=True)
            if row is None or row.status != expected or row.current_operation_id is not None:
                return False
            if row.hold is not None:
                return False  # billing holds it: only unsuspend, reactivate or delete serve it
            row.status = status
            enqueue(session, [event])
            return True

    def operation(self, operation_id: str) -> OperationRecord:
        """An operation as stored (handlers resume from its step and result)."""
        with self._unit("operation") as session:
            row = session.get_one(Operation, operation_id)
            return OperationRecord(
                id=row.id,
                command_id=row.command_id,
                kind=row.kind,
                state=row.state,
                step=row.step,
                attempts=row.attempts,
                result=dict(row.result),
            )

    def add_backup(self, backup: BackupRecord) -> None:
        """Record a completed backup (a second call with the same id changes nothing)."""
        with self._unit("add_backup", write=True) as session:
            existing = session.get(Backup, backup.id)
            if existing is not None:
                if (existing.instance_id, existing.sha256) != (backup.instance_id, backup.sha256):
                    raise PermanentError(
                        "backup_exists",
                        f"backup id {backup.id} is taken by another backup; nothing recorded",
                        rolled_back=True,
                    )
                return
            session.add(
                Backup(
                    id=backup.id,
                    instance_id=backup.instance_id,
                    label=backup.label,
                    location=backup.location,
                    size_bytes=backup.size_bytes,
                    sha256=backup.sha256,
                    odoo_version=backup.odoo_version,
                    status="completed",
                    completed_at=utcnow(),
                )
            )

    def backups(self, instance_id: str) -> list[BackupRecord]:
        """An instance's completed backups, oldest first."""
        with self._unit("backups") as session:
            ids = session.scalars(
                select(Backup.id)
                .where(Backup.instance_id == instance_id, Backup.status == "completed")
                .order_by(Backup.completed_at)
            ).all()
        found = [self.backup(backup_id) for backup_id in ids]
        return [backup for backup in found if backup is not None]

    def backup(self, backup_id: str) -> BackupRecord | None:
        """A completed backup, if one has this id."""
        with self._unit("backup") as session:
            row = session.get(Backup, backup_id)
            if row is None or row.status != "completed" or row.location is None:
                return None
            return BackupRecord(
                id=row.id,
                instance_id=row.instance_id,
                location=row.location,
                size_bytes=int(row.size_bytes or 0),
                sha256=str(row.sha256),
                label=row.label,
                odoo_version=row.odoo_version,
            )

    @contextmanager
    def exclusive(self, command: AnyCommand) -> Iterator[None]:
        """Hold the command's instance (or the fleet) against every other replica."""
        key = FLEET_LOCK
        if isinstance(command, InstanceCommand) and self.machine.holds_instance(command.type):
            key = command.subject
        with self.locks.hold(key):
            yield

    def admit(self, command: AnyCommand, *, within: Session | None = None) -> Admission:
        """Decide whether the command may run now; raise MessageRejected or InstanceBusyError.

        Every refusal is decided here, before anything is recorded as begun: a provision's
        identity (conflict), staleness, the status machine (holds included), then what the
        command asks against the instance's record (store/admission.py). A redelivery of a
        command whose operation is running resumes it unchecked: its own effects (the backup it
        recorded, say) are no reason to refuse it.
        """
        if not isinstance(command, InstanceCommand):
            return Admission(instance=None, transition=None)
        transition = self.machine.transition(command.type)
        with self._step(within, "admit") as session:
            operation = session.scalar(select(Operation).where(Operation.command_id == command.id))
            row = session.get(Instance, command.subject)
            instance = instance_record(row) if row else None
            if operation is not None and operation.state == "running":
                return Admission(instance, transition, operation.id)  # resume after redelivery
            if isinstance(command, ProvisionCommand):
                check_identity(session, command, instance)
            if instance is not None and command.time < instance.last_command_time:
                raise rejection(
                    command,
                    RejectionCode.STALE,
                    f"sent at {command.time.isoformat()}, before the last command applied to "
                    f"the instance ({instance.last_command_time.isoformat()})",
                )
            self._check_status(command, instance)
            check_record(session, command, instance, self.versions_with_image)
        return Admission(instance, transition)

    def _check_status(self, command: InstanceCommand, instance: InstanceRecord | None) -> None:
        """The status machine's verdict: run, wait (InstanceBusyError) or a rejection."""
        status = instance.status if instance else None
        hold = instance.hold if instance else None
        verdict = self.machine.decide(status, command.type, hold)
        if verdict is Verdict.WAIT:
            raise InstanceBusyError(command.subject)
        if verdict is Verdict.UNKNOWN_INSTANCE:
            raise rejection(
                command, RejectionCode.UNKNOWN_INSTANCE, f"no instance {command.subject}"
            )
        if verdict is Verdict.NOT_ALLOWED:
            allowed_from = self.machine.transition(command.type).allowed_from
            allowed = ", ".join(sorted(allowed_from)) or "none"
            lifters = " or ".join(self.machine.lifted_by(hold)) if hold else ""
            held = f" (a billing hold: {lifters} lift it)" if hold else ""
            raise rejection(
                command,
                RejectionCode.NOT_ALLOWED_IN_STATE,
                f"instance is {status}{held}; {command.type} needs one of: {allowed}",
            )

    def begin(
        self, command: AnyCommand, admission: Admission, *, within: Session | None = None
    ) -> str | None:
        """Mark the instance as working and open the command's operation; return its id.

        Resuming (admission.operation_id set) changes nothing. The fleet command has no
        operation and returns None. The operation gets its type's deadline and keeps the
        command, so the watchdog can resume it if its continuation is lost
        (store/watchdog.py).
        """
        if admission.operation_id is not None:
            return admission.operation_id
        if not isinstance(command, InstanceCommand) or admission.transition is None:
            return None
        operation_id = str(uuid.uuid4())
        deadline = utcnow() + timedelta(
            seconds=self.machine.deadline(command.type, self.operations)
        )
        with self._step(within, "begin", write=True) as session:
            row = session.get(Instance, command.subject)
            before = InstanceStatus(row.status) if row else None
            if row is None:
                if not isinstance(command, ProvisionCommand):
                    raise RuntimeError(f"{command.type} admitted for a missing instance")
                row = new_instance(command)
                session.add(row)
            row.status = admission.transition.working or row.status
            row.hold = self.machine.hold_on_begin(command.type, _hold(row))
            row.last_command_time = command.time
            row.last_command_id = command.id
            row.current_operation_id = operation_id
            session.add(
                Operation(
                    id=operation_id,
                    instance_id=command.subject,
                    command_id=command.id,
                    kind=command.type,
                    state="running",
                    step="started",
                    attempts=1,
                    deadline=deadline,
                    status_before=before,
                    result={COMMAND_KEY: command_document(command)},
                )
            )
        return operation_id

    def start(self, command: AnyCommand) -> Started:
        """`admit`, then `begin`, in one transaction: one round trip to the store, not two.

        Raises what `admit` raises, and nothing is written then. Each step keeps its span.
        """
        if not isinstance(command, InstanceCommand):  # the fleet's: nothing to read or write
            return Started(Admission(instance=None, transition=None), None)
        with self._unit(None, write=True) as session:
            admission = self.admit(command, within=session)
            return Started(admission, self.begin(command, admission, within=session))

    def advance(self, operation_id: str, step: str, **result: object) -> None:
        """Record that an operation reached `step`, with any results so far."""
        with self._unit("advance", write=True) as session:
            operation = session.get_one(Operation, operation_id)
            operation.step = step
            operation.attempts += 1
            operation.result = {**operation.result, **result}

    def record(
        self,
        command: AnyCommand,
        outcome: Outcome,
        terminal: Event,
        *,
        update: InstanceUpdate | None = None,
        more_events: Sequence[Event] = (),
    ) -> StoredOutcome:
        """In one transaction: the inbox row, the instance's change and the events to publish.

        A command id already recorded returns its stored outcome and changes nothing.
        """
        subject = command.subject if isinstance(command, InstanceCommand) else None
        with self._unit("record", write=True) as session:
            existing = session.get(InboxEntry, command.id)
            if existing is not None:
                return StoredOutcome.of(existing)
            if subject is not None and outcome is not Outcome.REJECTED:
                self._apply(session, subject, command, outcome, update or InstanceUpdate())
            entry = InboxEntry(
                command_id=command.id,
                command_type=command.type,
                instance_id=subject,
                outcome=outcome,
                terminal_event_id=terminal.id,
            )
            session.add(entry)
            ready_at = _ready_at(session, command) if outcome is Outcome.SUCCEEDED else None
            enqueue(session, [terminal, *more_events], ready_at=ready_at)
        return StoredOutcome.of(entry)

    def record_rejection(
        self, rejection: MessageRejected, event: Event, instance_id: str | None = None
    ) -> StoredOutcome | None:
        """Record the answer to a message refused before it was a command.

        Only a message whose command id could be read is answered (contract guarantee 5): its
        rejection goes to the inbox, so a redelivery is answered from there. Returns the stored
        outcome (the earlier one if the id was already answered), or None for no id.
        """
        if rejection.command_id is None:
            return None
        with self._unit("record_rejection", write=True) as session:
            existing = session.get(InboxEntry, rejection.command_id)
            if existing is not None:
                return StoredOutcome.of(existing)
            entry = InboxEntry(
                command_id=rejection.command_id,
                command_type=rejection.command_type or "(unreadable)",
                instance_id=instance_id,
                outcome=Outcome.REJECTED,
                terminal_event_id=event.id,
            )
            session.add(entry)
            enqueue(session, [event])
        return StoredOutcome.of(entry)

    def _apply(
        self,
        session: Session,
        instance_id: str,
        command: AnyCommand,
        outcome: Outcome,
        update: InstanceUpdate,
    ) -> None:
        row = session.get(Instance, instance_id)
        operation = session.scalar(select(Operation).where(Operation.command_id == command.id))
        if (
            row is None
        ):  # failed before it existed (a provision refused up front): nothing to change
            return
        if operation is not None:  # a command that never began leaves status and hold alone
            before = InstanceStatus(operation.status_before) if operation.status_before else None
            if outcome is Outcome.SUCCEEDED:
                ending = Ending.SUCCEEDED
            else:
                ending = Ending.ROLLED_BACK if update.rolled_back else Ending.FAILED
            rest = self.machine.settle(command.type, before, _hold(row), ending)
            row.status, row.hold = rest.status, rest.hold
        for field in (
            "odoo_version",
            "cpu_millicores",
            "memory_mib",
            "storage_gib",
            "kubernetes_names",
            "url",
            "internal_url",
        ):
            value = getattr(update, field)
            if value is not None:
                setattr(row, field, value)
        row.last_error = update.last_error if outcome is Outcome.FAILED else None
        if operation is not None:
            operation.state = "succeeded" if outcome is Outcome.SUCCEEDED else "failed"
            if row.current_operation_id == operation.id:
                row.current_operation_id = None


def _hold(row: Instance) -> Hold | None:
    return Hold(row.hold) if row.hold else None


def enqueue(session: Session, events: Sequence[Event], ready_at: datetime | None = None) -> None:
    """Add events to the outbox in the caller's transaction; the first is the terminal one,
    which carries `ready_at` (when its instance became Ready) for the latency metric."""
    for position, event in enumerate(events):
        message = serialize_event(event)
        session.add(
            OutboxEntry(
                event_id=event.id,
                exchange=message.exchange,
                routing_key=message.routing_key,
                body=message.body,
                headers=dict(message.properties.headers),
                ready_at=ready_at if position == 0 else None,
            )
        )


def _ready_at(session: Session, command: AnyCommand) -> datetime | None:
    """When the command's operation last saw its instance Ready, if it waited for that."""
    operation = session.scalar(select(Operation).where(Operation.command_id == command.id))
    if operation is None:
        return None
    seen = operation.result.get(READY_AT_KEY)
    return datetime.fromtimestamp(seen, UTC) if isinstance(seen, int | float) else None
