"""The watchdog's side of the store: every instance's open operation, with its deadline, the
command that began it and how often it was resumed.

An operation lives across deliveries: its command comes back from a delay queue (a
continuation, a retry) to go on from the step it recorded. If that message is lost (a classic
delay queue that loses it, a purge), nothing else would ever close the operation, and every
later command of its instance would wait behind it. `Ledger.begin` therefore writes a deadline
on each operation and keeps the command it began with (commands carry no secrets); the watchdog
(handlers/watchdog.py) reads them here, publishes the command again, notes that here, and fails
what stays overdue through the ledger's one transaction.

The command and the resume count live in the operation's JSON `result`, under keys no handler
uses (`_command`, `_resumes`): they are the operation's own bookkeeping, read by nothing else.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from messages.commands import AnyCommand
from store.database import traced_session
from store.lifecycle import StatusMachine
from store.models import Instance, Operation
from store.settings import OperationSettings

COMMAND_KEY = "_command"
"""Key of an operation's result: the command that began it, as its JSON document."""
RESUMES_KEY = "_resumes"
"""Key of an operation's result: how often the watchdog published its command again."""


def command_document(command: AnyCommand) -> dict[str, Any]:
    """The command as the JSON document it was published as, to keep with its operation."""
    return command.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class OpenOperation:
    """An instance's operation in progress, as the watchdog sees it."""

    id: str
    instance_id: str
    command_id: str
    kind: str
    step: str
    deadline: datetime
    """When it is overdue (an operation begun before deadlines were written: its start plus
    its type's deadline)."""
    resumes: int
    command: dict[str, Any] | None
    """The command that began it (None: begun before commands were kept)."""

    def overdue(self, now: datetime) -> bool:
        """Whether it is past its deadline."""
        return self.deadline <= now


class OpenOperations:
    """Reads and notes the operations the watchdog looks after."""

    def __init__(self, engine: Engine, settings: OperationSettings, machine: StatusMachine) -> None:
        self.engine = engine
        self.settings = settings
        self.machine = machine

    def all(self) -> list[OpenOperation]:
        """Every instance's open operation, in one query (through the instances, whose number
        is the fleet's, never through the operations, which only grow)."""
        with traced_session(self.engine, "open_operations") as session:
            rows = session.execute(
                select(Operation)
                .join(Instance, Instance.current_operation_id == Operation.id)
                .where(Operation.state == "running")
                .order_by(Operation.created_at)
            ).scalars()
            return [self._open(row) for row in rows]

    def get(self, operation_id: str) -> OpenOperation | None:
        """The operation as it is now, if it is still its instance's open operation."""
        with traced_session(self.engine, "open_operation") as session:
            row = session.scalar(
                select(Operation)
                .join(Instance, Instance.current_operation_id == Operation.id)
                .where(Operation.id == operation_id, Operation.state == "running")
            )
            return self._open(row) if row is not None else None

    def resumed(self, operation_id: str, now: datetime) -> datetime:
        """Note that the operation's command was published again; its new deadline is its
        type's deadline from now (what a healthy operation may still need). Returns it."""
        with traced_session(self.engine, "operation_resumed", write=True) as session:
            row = session.get_one(Operation, operation_id, with_for_update=True)
            row.deadline = now + timedelta(seconds=self.machine.deadline(row.kind, self.settings))
            row.result = {**row.result, RESUMES_KEY: _resumes(row.result) + 1}
            return row.deadline

    def _open(self, row: Operation) -> OpenOperation:
        if row.instance_id is None:  # only instance commands open operations
            raise ValueError(f"operation {row.id} belongs to no instance")
        deadline = row.deadline or row.created_at + timedelta(
            seconds=self.machine.deadline(row.kind, self.settings)
        )
        document = row.result.get(COMMAND_KEY)
        return OpenOperation(
            id=row.id,
            instance_id=row.instance_id,
            command_id=row.command_id,
            kind=row.kind,
            step=row.step,
            deadline=deadline,
            resumes=_resumes(row.result),
            command=dict(document) if isinstance(document, dict) else None,
        )


def _resumes(result: dict[str, Any]) -> int:
    count = result.get(RESUMES_KEY, 0)
    return count if isinstance(count, int) else 0
