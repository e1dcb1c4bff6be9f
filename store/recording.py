"""Outcomes of many commands in one transaction: the inbox rows, the instances' changes and the
events that report them, written with one statement per table (`Ledger.record_many`).

Per record, in input order: a command id already in the inbox (or recorded earlier in the same
batch) answers with its stored outcome and writes nothing; any other writes its inbox row, its
instance's change (status and hold from the status machine; what the handler asks) and its
events. The outbox rows written come back as `PendingEvent`s, with their sequence numbers, so
the caller can publish them as soon as the transaction commits. `Ledger.record` is this on a
batch of one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.engine import Connection

from messages.commands import (
    AnyCommand,
    DeleteCommand,
    DomainAddCommand,
    DomainRemoveCommand,
    InstanceCommand,
)
from messages.events import Event
from messages.serialization import serialize_event
from store.bulk import KEY, insert_rows, update_rows
from store.lifecycle import Ending, Hold, InstanceStatus, StatusMachine
from store.models import InboxEntry, OutboxEntry
from store.outbox import Claim, PendingEvent
from store.records import READY_AT_KEY, InstanceUpdate, Outcome, StoredOutcome
from store.snapshot import ACTIVE, ADDING, DOMAINS, INSTANCES, OPERATIONS, Snapshot

INBOX: Table = InboxEntry.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxEntry.__table__  # type: ignore[assignment]

_ASKED = (
    "odoo_version",
    "cpu_millicores",
    "memory_mib",
    "storage_gib",
    "kubernetes_names",
    "url",
    "internal_url",
)
"""The instance's columns a handler may change with an outcome (InstanceUpdate's fields)."""
_ENDED = ("status", "hold", *_ASKED, "backup_plan", "last_error", "current_operation_id")
"""Every column an outcome may change on an instance."""

_OUTCOMES = select(
    INBOX.c.command_id,
    INBOX.c.command_type,
    INBOX.c.instance_id,
    INBOX.c.outcome,
    INBOX.c.terminal_event_id,
).where(INBOX.c.command_id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class Record:
    """A command's outcome to record: its terminal event first, then any more events, and
    what the handler asks to change on the instance (`Ledger.record`'s arguments)."""

    command: AnyCommand
    outcome: Outcome
    terminal: Event
    update: InstanceUpdate | None = None
    more_events: Sequence[Event] = ()


@dataclass(frozen=True)
class Recorded:
    """What a record left: the command's stored outcome and the events this call wrote
    (none when its id had an outcome already), to publish once the transaction commits."""

    stored: StoredOutcome
    events: tuple[PendingEvent, ...] = ()


@dataclass
class _Writes:
    """What the batch writes besides instances: inbox rows, operation states, outbox rows,
    customers' domains served from now on and those freed."""

    inbox: list[dict[str, Any]] = field(default_factory=list)
    operations: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)


_ACTIVATE = (
    update(DOMAINS)
    .where(DOMAINS.c.domain.in_(bindparam("names", expanding=True)))
    .values(state=ACTIVE, updated_at=bindparam("now"))
)
_FREE = delete(DOMAINS).where(DOMAINS.c.domain.in_(bindparam("names", expanding=True)))


def outcomes(connection: Connection, command_ids: Sequence[str]) -> dict[str, StoredOutcome]:
    """The recorded outcomes of these command ids (one query)."""
    if not command_ids:
        return {}
    rows = connection.execute(_OUTCOMES, {"ids": list(set(command_ids))})
    return {
        row.command_id: StoredOutcome(
            row.command_id,
            row.command_type,
            row.instance_id,
            Outcome(row.outcome),
            row.terminal_event_id,
        )
        for row in rows
    }


def record_all(
    connection: Connection,
    records: Sequence[Record],
    machine: StatusMachine,
    now: datetime,
    claim: Claim | None = None,
) -> list[Recorded]:
    """Record each outcome in turn, in the caller's transaction; the answers in input order.
    `claim`: the outbox rows are written claimed by its holder (who publishes them at once)."""
    stored = outcomes(connection, [r.command.id for r in records])
    fresh = [r for r in records if r.command.id not in stored]
    snapshot = Snapshot()
    ending = [r for r in fresh if r.outcome is not Outcome.REJECTED]
    snapshot.read_operations(connection, {r.command.id for r in ending})
    subjects = {r.command.subject for r in ending if isinstance(r.command, InstanceCommand)}
    snapshot.read_instances(connection, subjects, lock=True)
    snapshot.read_domains(
        connection,
        (
            c.data.domain
            for r in ending
            if isinstance(c := r.command, DomainAddCommand | DomainRemoveCommand)
        ),
        (r.command.subject for r in ending if isinstance(r.command, DeleteCommand)),
    )
    writes = _Writes()
    answers: list[tuple[StoredOutcome, slice]] = []
    for record in records:
        command = record.command
        if command.id in stored:
            answers.append((stored[command.id], slice(0)))
            continue
        subject = _subject(command)
        if subject is not None and record.outcome is not Outcome.REJECTED:
            _apply(snapshot, writes, machine, record, subject)
            _domains(snapshot, writes, record, subject)
        stored[command.id] = StoredOutcome(
            command.id, command.type, subject, record.outcome, record.terminal.id
        )
        writes.inbox.append(
            {
                "command_id": command.id,
                "command_type": command.type,
                "instance_id": subject,
                "outcome": record.outcome.value,
                "terminal_event_id": record.terminal.id,
                "recorded_at": now,
            }
        )
        first = len(writes.outbox)
        ready_at = _ready_at(snapshot, command) if record.outcome is Outcome.SUCCEEDED else None
        for position, event in enumerate([record.terminal, *record.more_events]):
            row = _outbox_row(event, now, ready_at if position == 0 else None, claim)
            writes.outbox.append(row)
        answers.append((stored[command.id], slice(first, len(writes.outbox))))
    events = _write(connection, snapshot, writes, now)
    return [Recorded(outcome, tuple(events[part])) for outcome, part in answers]


def _apply(
    snapshot: Snapshot, writes: _Writes, machine: StatusMachine, record: Record, subject: str
) -> None:
    """The instance's change for an outcome, in the snapshot; the operation's end in writes."""
    row = snapshot.instances.get(subject)
    if row is None:  # failed before it existed (a provision refused up front): nothing to change
        return
    update = record.update or InstanceUpdate()
    operation = snapshot.operations.get(record.command.id)
    if operation is not None:  # a command that never began leaves status and hold alone
        if record.outcome is Outcome.SUCCEEDED:
            ending = Ending.SUCCEEDED
        else:
            ending = Ending.ROLLED_BACK if update.rolled_back else Ending.FAILED
        before = operation.status_before
        hold = Hold(row["hold"]) if row["hold"] else None
        rest = machine.settle(record.command.type, _status(before), hold, ending)
        row["status"], row["hold"] = rest.status.value, rest.hold.value if rest.hold else None
    for column in _ASKED:
        value = getattr(update, column)
        if value is not None:
            row[column] = value
    if update.backup_plan is not None:
        row["backup_plan"] = update.backup_plan.model_dump(mode="json")
    row["last_error"] = update.last_error if record.outcome is Outcome.FAILED else None
    if operation is not None:
        operation.state = "succeeded" if record.outcome is Outcome.SUCCEEDED else "failed"
        writes.operations.append({KEY: operation.id, "state": operation.state})
        if row["current_operation_id"] == operation.id:
            row["current_operation_id"] = None
    snapshot.changed.add(subject)


def _domains(snapshot: Snapshot, writes: _Writes, record: Record, subject: str) -> None:
    """A domain.add that succeeded serves its domain; one that did not frees what it reserved
    (a domain served before stays); a domain.remove frees its domain, a delete every domain
    of its instance. A terminate keeps them: a terminated instance's domains stay its own."""
    command, succeeded = record.command, record.outcome is Outcome.SUCCEEDED
    if isinstance(command, DomainAddCommand | DomainRemoveCommand):
        row = snapshot.domains.pop(command.data.domain, None)
        if row is None or row.instance_id != subject:
            return
        if isinstance(command, DomainAddCommand) and succeeded:
            writes.activated.append(row.domain)
            snapshot.domains[row.domain] = replace(row, state=ACTIVE)
        elif succeeded or row.state == ADDING:
            writes.freed.append(row.domain)
        else:
            snapshot.domains[row.domain] = row
    elif isinstance(command, DeleteCommand) and succeeded:
        for row in snapshot.domains_of(subject):
            writes.freed.append(row.domain)
            del snapshot.domains[row.domain]


def _write(
    connection: Connection, snapshot: Snapshot, writes: _Writes, now: datetime
) -> list[PendingEvent]:
    """Write the batch: instances, operations, domains, inbox, then the outbox (returning its
    seqs)."""
    update_rows(connection, INSTANCES, _ENDED, snapshot.updates(snapshot.changed, _ENDED), now)
    update_rows(connection, OPERATIONS, ("state",), writes.operations, now)
    if writes.activated:
        connection.execute(_ACTIVATE, {"names": writes.activated, "now": now})
    if writes.freed:
        connection.execute(_FREE, {"names": writes.freed})
    insert_rows(connection, INBOX, writes.inbox)
    if not writes.outbox:
        return []
    # Matched back by event id, not by position: asking RETURNING for the rows' order makes
    # SQLite insert row by row.
    written = insert_rows(connection, OUTBOX, writes.outbox, returning=("event_id", "seq"))
    seqs: dict[str, int] = {row.event_id: row.seq for row in written}
    return [
        PendingEvent(
            seq=seqs[row["event_id"]],
            event_id=row["event_id"],
            exchange=row["exchange"],
            routing_key=row["routing_key"],
            body=row["body"],
            headers=row["headers"],
            created_at=row["created_at"],
            ready_at=row["ready_at"],
        )
        for row in writes.outbox
    ]


def _outbox_row(
    event: Event, now: datetime, ready_at: datetime | None, claim: Claim | None
) -> dict[str, Any]:
    message = serialize_event(event)
    return {
        "claimed_by": claim.holder if claim else None,
        "claimed_until": now + timedelta(seconds=claim.seconds) if claim else None,
        "event_id": event.id,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "body": message.body,
        "headers": dict(message.properties.headers),
        "created_at": now,
        "ready_at": ready_at,
    }


def _ready_at(snapshot: Snapshot, command: AnyCommand) -> datetime | None:
    """When the command's operation last saw its instance Ready, if it waited for that."""
    operation = snapshot.operations.get(command.id)
    if operation is None:
        return None
    seen = operation.result.get(READY_AT_KEY)
    return datetime.fromtimestamp(seen, UTC) if isinstance(seen, int | float) else None


def _subject(command: AnyCommand) -> str | None:
    return command.subject if isinstance(command, InstanceCommand) else None


def _status(value: str | None) -> InstanceStatus | None:
    return InstanceStatus(value) if value is not None else None
