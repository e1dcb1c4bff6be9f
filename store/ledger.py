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

The same work for many commands at once (the consumer's batches): `outcomes_of`,
`locks.take(keys)`, `start_many`, `record_many`, `Held.release`. The single-command methods are
these on a batch of one: one implementation of the rules (store/starting.py,
store/recording.py), over SQLAlchemy Core, one query per table whatever the batch's size.
"""

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from messages.amqp import OutgoingMessage
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError
from messages.events import Event
from messages.serialization import serialize_event
from store.admission import Archives
from store.database import reading, traced_session, traced_step, transaction
from store.freshness import RECONCILE_COMMAND, BackupAge, backup_ages, last_success
from store.instances import instance_record
from store.lifecycle import InstanceStatus, StatusMachine
from store.locks import InstanceLocks, locks_for
from store.models import Backup, Domain, InboxEntry, Instance, Operation, OutboxEntry, utcnow
from store.outbox import Claim
from store.recording import Record, Recorded, outcomes, record_all
from store.records import (
    Admission,
    BackupRecord,
    InstanceRecord,
    InstanceUpdate,
    OperationRecord,
    Outcome,
    StoredOutcome,
)
from store.retention import BackupKind
from store.settings import OperationSettings
from store.snapshot import ACTIVE, Snapshot
from store.starting import (
    Beginnings,
    RaceLostError,
    Rules,
    Started,
    StartResult,
    admit,
    begin,
    read_for_admission,
    start_all,
    write_beginnings,
)

__all__ = ["FLEET_LOCK", "Claim", "Ledger", "Record", "Recorded", "StartResult", "Started"]

FLEET_LOCK = "fleet"


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
        archives: Archives | None = None,
        max_domains: int | None = None,
    ) -> None:
        self.engine = engine
        self.machine = machine
        self.locks = locks if locks is not None else locks_for(engine)
        self.operations = operations or OperationSettings()
        """How long an operation of each type may stay open (its deadline)."""
        self.versions_with_image = (
            frozenset(versions_with_image) if versions_with_image is not None else None
        )
        self.rules = Rules(
            machine, self.versions_with_image, self.operations, archives, max_domains
        )

    def _unit(self, name: str | None, *, write: bool = False) -> AbstractContextManager[Session]:
        """A session for one unit of work (a transaction when `write`), traced as `db <name>`
        (None: its steps are traced instead)."""
        return traced_session(self.engine, name, write=write)

    def outcome_of(self, command_id: str) -> StoredOutcome | None:
        """The recorded outcome of a command id, if it has one."""
        return self.outcomes_of([command_id]).get(command_id)

    def outcomes_of(self, command_ids: Collection[str]) -> dict[str, StoredOutcome]:
        """The recorded outcomes of these command ids (those that have one), in one query."""
        with (
            traced_step(self.engine, "outcome_of", len(command_ids)),
            reading(self.engine) as connection,
        ):
            return outcomes(connection, list(command_ids))

    def instance(self, instance_id: str) -> InstanceRecord | None:
        """An instance as stored."""
        with self._unit("instance") as session:
            row = session.get(Instance, instance_id)
            if row is None:
                return None
            served = session.scalars(
                select(Domain.domain).where(
                    Domain.instance_id == instance_id, Domain.state == ACTIVE
                )
            )
            return instance_record(row, served)

    def instances(self) -> list[InstanceRecord]:
        """Every instance, deleted ones included, in two queries (for reconciliation)."""
        with self._unit("instances") as session:
            served: dict[str, list[str]] = {}
            for domain in session.scalars(select(Domain).where(Domain.state == ACTIVE)):
                served.setdefault(domain.instance_id, []).append(domain.domain)
            return [
                instance_record(row, served.get(row.id, ()))
                for row in session.scalars(select(Instance))
            ]

    def last_success(self, command_type: str = RECONCILE_COMMAND) -> datetime | None:
        """When a command of this type was last answered `succeeded` (None: never)."""
        return last_success(self.engine, command_type)

    def backup_ages(self, now: datetime) -> list[BackupAge]:
        """Each instance the backup schedule looks after, with its time without a backup."""
        return backup_ages(self.engine, now)

    def domains(self) -> dict[str, str]:
        """Every customer domain held, active or being added -> its instance."""
        with self._unit("domains") as session:
            return {d.domain: d.instance_id for d in session.scalars(select(Domain))}

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
            self.locks.fence(session.connection(), [instance_id])
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
                    kind=backup.kind.value,
                    status="completed",
                    completed_at=backup.taken_at or utcnow(),
                )
            )

    def backups(self, instance_id: str) -> list[BackupRecord]:
        """An instance's completed backups, oldest first."""
        with self._unit("backups") as session:
            rows = session.scalars(
                select(Backup)
                .where(
                    Backup.instance_id == instance_id,
                    Backup.status == "completed",
                    Backup.location.is_not(None),
                )
                .order_by(Backup.completed_at)
            ).all()
            return [_backup_record(row) for row in rows]

    def backup(self, backup_id: str) -> BackupRecord | None:
        """A completed backup, if one has this id."""
        with self._unit("backup") as session:
            row = session.get(Backup, backup_id)
            if row is None or row.status != "completed" or row.location is None:
                return None
            return _backup_record(row)

    def prune_backups(
        self, instance_id: str, backup_ids: Sequence[str], event: Event | None = None
    ) -> None:
        """Mark the instance's backups pruned (their ids stay taken), and with `event` put it in
        the outbox in the same transaction; pruned ones are skipped."""
        if not backup_ids:
            return
        with self._unit("prune_backups", write=True) as session:
            if event is not None:
                enqueue(session, [event])
            session.execute(
                update(Backup)
                .where(
                    Backup.instance_id == instance_id,
                    Backup.id.in_(list(backup_ids)),
                    Backup.status == "completed",
                )
                .values(status="pruned", pruned_at=utcnow())
            )

    def lock_key(self, command: AnyCommand) -> str:
        """The key a command holds while it runs: its instance's, or the fleet's."""
        if isinstance(command, InstanceCommand) and self.machine.holds_instance(command.type):
            return command.subject
        return FLEET_LOCK

    @contextmanager
    def exclusive(self, command: AnyCommand) -> Iterator[None]:
        """Hold the command's instance (or the fleet) against every other replica."""
        with self.locks.hold(self.lock_key(command)):
            yield

    def admit(self, command: AnyCommand) -> Admission:
        """Decide whether the command may run now; raise MessageRejected or InstanceBusyError
        (the rules: `store.starting.admit`). Writes nothing."""
        if not isinstance(command, InstanceCommand):
            return Admission(instance=None, transition=None)
        with traced_step(self.engine, "admit"), reading(self.engine) as connection:
            snapshot = read_for_admission(connection, [command], lock=False)
        return admit(snapshot, command, self.rules)

    def begin(self, command: AnyCommand, admission: Admission) -> str | None:
        """Mark the instance as working and open the command's operation; return its id.

        Resuming (admission.operation_id set) changes nothing. The fleet command has no
        operation and returns None (`store.starting.begin`).
        """
        if admission.operation_id is not None:
            return admission.operation_id
        if not isinstance(command, InstanceCommand) or admission.transition is None:
            return None
        with (
            _race_lost(),
            transaction(self.engine) as connection,
            traced_step(self.engine, "begin"),
        ):
            snapshot, beginnings = (
                read_for_admission(connection, [command], lock=True),
                Beginnings(),
            )
            now = utcnow()
            operation_id = begin(snapshot, beginnings, command, admission, self.rules, now)
            write_beginnings(connection, snapshot, beginnings, now)
            self.locks.fence(connection, [self.lock_key(command)])
        return operation_id

    def start(self, command: AnyCommand) -> Started:
        """`admit`, then `begin`, in one transaction (`start_many` of one).

        Raises what `admit` raises, and nothing is written then. Each step keeps its span.
        """
        result = self.start_many([command])[0]
        if isinstance(result, Started):
            return result
        raise result

    def start_many(self, commands: Sequence[AnyCommand]) -> list[StartResult]:
        """Admit and begin every command in one transaction; per command, in input order,
        `Started`, or the `MessageRejected` or `InstanceBusyError` that refused it (a refused
        command writes nothing; the others go on). A later command sees what an earlier one
        of the batch began, as it would one by one."""
        now = utcnow()
        asked = [c for c in commands if isinstance(c, InstanceCommand)]
        if not asked:  # the fleet's: nothing to read or write
            return start_all(Snapshot(), Beginnings(), commands, self.rules, now)
        with _race_lost(), transaction(self.engine) as connection:
            with traced_step(self.engine, "admit", len(commands)):
                snapshot = read_for_admission(connection, asked, lock=True)
                beginnings = Beginnings()
                results = start_all(snapshot, beginnings, commands, self.rules, now)
            if beginnings.operations:
                with traced_step(self.engine, "begin", len(beginnings.operations)):
                    write_beginnings(connection, snapshot, beginnings, now)
                    self.locks.fence(connection, self._keys(commands))
        return results

    def advance(self, operation_id: str, step: str, **result: object) -> None:
        """Record that an operation reached `step`, with any results so far."""
        with self._unit("advance", write=True) as session:
            operation = session.get_one(Operation, operation_id)
            operation.step = step
            operation.attempts += 1
            operation.result = {**operation.result, **result}
            if operation.instance_id is not None:
                session.flush()
                self.locks.fence(session.connection(), [operation.instance_id])

    def send(self, message: OutgoingMessage) -> None:
        """Put a command the service sends itself (a clone's backup of its source) in the
        outbox, once: a message id already there is left as it is, so a step that runs again
        sends nothing new. The outbox relay publishes it like an event."""
        message_id = message.properties.message_id
        if not message_id:
            raise ValueError("a command to send needs its id as the message id")
        with self._unit("send", write=True) as session:
            if session.scalar(select(OutboxEntry.seq).where(OutboxEntry.event_id == message_id)):
                return
            session.add(
                OutboxEntry(
                    event_id=message_id,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    headers=dict(message.properties.headers),
                )
            )

    def answer(self, command_id: str) -> dict[str, Any] | None:
        """The terminal event a command was answered with, as published (None: not yet)."""
        with self._unit("answer") as session:
            entry = session.get(InboxEntry, command_id)
            if entry is None:
                return None
            body = session.scalar(
                select(OutboxEntry.body).where(OutboxEntry.event_id == entry.terminal_event_id)
            )
        return dict(json.loads(body)) if body is not None else None

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
        record = Record(command, outcome, terminal, update, tuple(more_events))
        return self.record_many([record])[0].stored

    def record_many(
        self, records: Sequence[Record], *, claim: Claim | None = None
    ) -> list[Recorded]:
        """`record` for many commands in one transaction, answers in input order, each with the
        outbox rows it wrote (to publish at once; `claim`: written claimed by the publisher, so
        a relay leaves them alone until the claim expires). An id already recorded, in the
        store or earlier in the batch, answers with its stored outcome and writes nothing."""
        if not records:
            return []
        with (
            traced_step(self.engine, "record", len(records)),
            transaction(self.engine) as connection,
        ):
            recorded = record_all(connection, records, self.machine, utcnow(), claim)
            if any(r.events for r in recorded):
                self.locks.fence(connection, self._keys(r.command for r in records))
        return recorded

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

    def _keys(self, commands: Iterable[AnyCommand]) -> set[str]:
        return {self.lock_key(command) for command in commands}


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


def _backup_record(row: Backup) -> BackupRecord:
    return BackupRecord(
        id=row.id,
        instance_id=row.instance_id,
        location=str(row.location),
        size_bytes=int(row.size_bytes or 0),
        sha256=str(row.sha256),
        label=row.label,
        odoo_version=row.odoo_version,
        kind=BackupKind(row.kind),
        taken_at=row.completed_at,
    )


@contextmanager
def _race_lost() -> Iterator[None]:
    """A unique index refused what admission found free: a rival committed it first."""
    try:
        yield
    except IntegrityError as error:
        raise RaceLostError(str(error.orig or error).splitlines()[0]) from error
