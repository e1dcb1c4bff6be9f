"""Admission and begin of many commands in one transaction: the rules of `Ledger.start`, over
a snapshot of the batch's rows (store/snapshot.py), written with one statement per table.

Per command, in input order: a refusal (`MessageRejected`) or a wait (`InstanceBusyError`)
writes nothing and the others go on; an admitted command begins (its instance working, its
operation opened) in the snapshot, so the next command of the batch sees it. The single-command
`Ledger.start`, `admit` and `begin` are these same functions on a batch of one.
"""

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from messages.commands import (
    AnyCommand,
    BackupCommand,
    CloneCommand,
    CreatingCommand,
    DomainAddCommand,
    DomainRemoveCommand,
    InstanceCommand,
    RestoreCommand,
)
from messages.errors import MessageRejected, RejectionCode, RetryableError
from store.admission import Archives, check_identity, check_record, clone_version, rejection
from store.bulk import insert_rows, update_rows
from store.instances import new_instance_row
from store.lifecycle import Hold, InstanceStatus, StatusMachine, Verdict
from store.locks import InstanceBusyError
from store.records import Admission
from store.settings import OperationSettings
from store.snapshot import (
    ADDING,
    DOMAINS,
    INSTANCES,
    OPERATIONS,
    DomainRow,
    OperationRow,
    Snapshot,
)
from store.watchdog import COMMAND_KEY, command_document

_BEGUN = ("status", "hold", "last_command_time", "last_command_id", "current_operation_id")
"""The columns `begin` changes on an existing instance."""


class RaceLostError(RetryableError):
    """Another replica's transaction took a subdomain or a customer's domain this batch took
    too, and committed first (the unique index refused the second insert): nothing of the
    batch was written; decided again after a retry delay, admission sees the winner and
    answers `conflict`."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"lost a race for a unique name: {cause}")


@dataclass(frozen=True)
class Started:
    """A command admitted and begun (`Ledger.start`): what its handler is given."""

    admission: Admission
    operation_id: str | None


StartResult = Started | MessageRejected | InstanceBusyError
"""What `start_many` answers for each command."""


@dataclass(frozen=True)
class Rules:
    """What admission decides with: the status machine, the versions with an image (None:
    not checked), the operations' deadlines and the import bucket (None: not looked at)."""

    machine: StatusMachine
    versions_with_image: frozenset[str] | None
    operations: OperationSettings
    archives: Archives | None = None
    max_domains: int | None = None
    """The most customer domains an instance may have (None: no limit)."""


@dataclass
class Beginnings:
    """The operations a batch opened, and the domains it reserved, to insert with the batch's
    instance changes."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)


def read_for_admission(
    connection: Connection, commands: Sequence[InstanceCommand], *, lock: bool
) -> Snapshot:
    """The rows admission reads for these commands, in one query per table."""
    snapshot = Snapshot()
    snapshot.read_operations(connection, {c.id for c in commands})
    clones = [c for c in commands if isinstance(c, CloneCommand)]
    sources = {c.data.source_instance_id for c in clones}
    snapshot.read_instances(connection, {c.subject for c in commands} | sources, lock=lock)
    snapshot.read_subdomains(
        connection, (c.data.subdomain for c in commands if isinstance(c, CreatingCommand))
    )
    snapshot.read_domains(
        connection,
        (c.data.domain for c in commands if isinstance(c, DomainAddCommand | DomainRemoveCommand)),
        (c.subject for c in commands),
    )
    snapshot.read_backups(
        connection,
        (
            *(c.data.backup_id for c in commands if isinstance(c, BackupCommand | RestoreCommand)),
            *(c.data.backup_id for c in clones if c.data.backup_id is not None),
        ),
    )
    return snapshot


def admit(snapshot: Snapshot, command: AnyCommand, rules: Rules) -> Admission:
    """Decide whether the command may run now; raise MessageRejected or InstanceBusyError.

    Every refusal is decided here, before anything is recorded as begun: a provision's
    identity (conflict), staleness, the status machine (holds included), then what the
    command asks against the instance's record (store/admission.py). A redelivery of a
    command whose operation is running resumes it unchecked: its own effects (the backup it
    recorded, say) are no reason to refuse it.
    """
    if not isinstance(command, InstanceCommand):
        return Admission(instance=None, transition=None)
    transition = rules.machine.transition(command.type)
    operation = snapshot.operations.get(command.id)
    instance = snapshot.instance(command.subject)
    if operation is not None and operation.state == "running":
        return Admission(instance, transition, operation.id)  # resume after redelivery
    if isinstance(command, CreatingCommand):
        check_identity(snapshot, command, instance)
    if instance is not None and command.time < instance.last_command_time:
        raise rejection(
            command,
            RejectionCode.STALE,
            f"sent at {command.time.isoformat()}, before the last command applied to "
            f"the instance ({instance.last_command_time.isoformat()})",
        )
    status = instance.status if instance else None
    hold = instance.hold if instance else None
    verdict = rules.machine.decide(status, command.type, hold)
    if verdict is Verdict.WAIT:
        raise InstanceBusyError(command.subject)
    if verdict is Verdict.UNKNOWN_INSTANCE:
        raise rejection(command, RejectionCode.UNKNOWN_INSTANCE, f"no instance {command.subject}")
    if verdict is Verdict.NOT_ALLOWED:
        allowed = ", ".join(sorted(transition.allowed_from)) or "none"
        lifters = " or ".join(rules.machine.lifted_by(hold)) if hold else ""
        held = f" (a billing hold: {lifters} lift it)" if hold else ""
        raise rejection(
            command,
            RejectionCode.NOT_ALLOWED_IN_STATE,
            f"instance is {status}{held}; {command.type} needs one of: {allowed}",
        )
    check_record(
        snapshot, command, instance, rules.versions_with_image, rules.archives, rules.max_domains
    )
    return Admission(instance, transition)


def begin(
    snapshot: Snapshot,
    beginnings: Beginnings,
    command: AnyCommand,
    admission: Admission,
    rules: Rules,
    now: datetime,
) -> str | None:
    """Mark the instance as working and open the command's operation, in the snapshot (and
    `beginnings`); return the operation's id.

    Resuming (admission.operation_id set) changes nothing. The operation gets its type's
    deadline and keeps the command, so the watchdog can resume it if its continuation is lost
    (store/watchdog.py).
    """
    if admission.operation_id is not None:
        return admission.operation_id
    if not isinstance(command, InstanceCommand) or admission.transition is None:
        return None
    operation_id = str(uuid.uuid4())
    row = snapshot.instances.get(command.subject)
    before = row["status"] if row is not None else None
    if row is None:
        if not isinstance(command, CreatingCommand):
            raise RuntimeError(f"{command.type} admitted for a missing instance")
        source, version = None, None
        if isinstance(command, CloneCommand):
            source = snapshot.instance(command.data.source_instance_id)
            version = clone_version(snapshot, command)
        row = new_instance_row(command, now, source, version)
        snapshot.create(row)
    hold = rules.machine.hold_on_begin(command.type, Hold(row["hold"]) if row["hold"] else None)
    row["status"] = _value(admission.transition.working) or row["status"]
    row["hold"] = _value(hold)
    row["last_command_time"] = command.time
    row["last_command_id"] = command.id
    row["current_operation_id"] = operation_id
    snapshot.changed.add(command.subject)
    deadline = now + timedelta(seconds=rules.machine.deadline(command.type, rules.operations))
    result = {COMMAND_KEY: command_document(command)}
    snapshot.operations[command.id] = OperationRow(operation_id, "running", before, result)
    if isinstance(command, DomainAddCommand):
        _reserve(snapshot, beginnings, command, now)
    beginnings.operations.append(
        {
            "id": operation_id,
            "instance_id": command.subject,
            "command_id": command.id,
            "kind": command.type,
            "state": "running",
            "step": "started",
            "attempts": 1,
            "deadline": deadline,
            "status_before": before,
            "result": result,
            "created_at": now,
            "updated_at": now,
        }
    )
    return operation_id


def _reserve(
    snapshot: Snapshot, beginnings: Beginnings, command: DomainAddCommand, now: datetime
) -> None:
    """Hold the domain for the instance from now on (admission found it free or its own); a
    rival's insert of the same domain fails on the primary key (`RaceLostError`)."""
    domain = command.data.domain
    if domain in snapshot.domains:
        return
    row = DomainRow(domain, command.subject, ADDING, command.id)
    snapshot.domains[domain] = row
    beginnings.domains.append(
        {**asdict(row), "created_at": now, "updated_at": now},
    )


def start_all(
    snapshot: Snapshot,
    beginnings: Beginnings,
    commands: Sequence[AnyCommand],
    rules: Rules,
    now: datetime,
) -> list[StartResult]:
    """Admit and begin each command in turn, in the snapshot; the answers in input order."""
    results: list[StartResult] = []
    for command in commands:
        try:
            admission = admit(snapshot, command, rules)
        except (MessageRejected, InstanceBusyError) as refused:
            results.append(refused)
            continue
        operation_id = begin(snapshot, beginnings, command, admission, rules, now)
        results.append(Started(admission, operation_id))
    return results


def write_beginnings(
    connection: Connection, snapshot: Snapshot, beginnings: Beginnings, now: datetime
) -> None:
    """Insert the instances the batch created, update those it began on, insert operations."""
    insert_rows(connection, INSTANCES, [snapshot.instances[i] for i in sorted(snapshot.created)])
    changed = snapshot.updates(snapshot.changed - snapshot.created, _BEGUN)
    update_rows(connection, INSTANCES, _BEGUN, changed, now)
    insert_rows(connection, OPERATIONS, beginnings.operations)
    insert_rows(connection, DOMAINS, beginnings.domains)


def _value(status: InstanceStatus | Hold | None) -> str | None:
    return status.value if status is not None else None
