"""The watchdog: an instance's operation that outlived its deadline is resumed, then failed.

A long operation goes on from delivery to delivery of its command: a continuation or a retry
waits in a delay queue and comes back. If that message is lost (a classic delay queue that
loses it, a purge), the operation stays open and every later command of the instance waits
behind it for ever. The watcher (consumers/watcher.py, always on while consumers scale to
zero) sweeps every `operations.sweep_seconds`:

    an open operation past its deadline (store/watchdog.py), its instance's lock free
      resumed fewer than `operations.resumes` times, its command readable
          -> resume: the command published again to instance.commands as first sent; the
             consumer finds its operation running and goes on from the recorded step
             (Ledger.admit), and the operation gets its type's deadline again from now
      otherwise
          -> time out: command.failed `operation_timed_out` (not rolled back: the instance may
             be half-way) through the ledger's one transaction, so the command id keeps one
             answer; the status machine decides where the instance rests (`error`, or its
             billing hold, never a status that serves a held instance)

An instance whose lock a consumer holds is being worked on, so its operation is not lost: it
is looked at again on the next sweep. A message that was only late, not lost, meets a resumed
copy: every step is idempotent and whichever finishes first answers, the other is answered from
the inbox; after a time-out, it is answered from the inbox too.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from messages.amqp import AmqpProperties, OutgoingMessage
from messages.commands import COMMAND_MODELS, AnyCommand, InstanceCommand
from messages.errors import MessageRejected
from messages.events import CommandFailedData, CommandFailedEvent, ErrorInfo
from messages.parsing import parse_command
from messages.serialization import COMMANDS_EXCHANGE, to_message
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.models import utcnow
from store.records import InstanceUpdate, Outcome
from store.settings import OperationSettings
from store.watchdog import OpenOperation, OpenOperations
from telemetry.metrics import METRICS

log = logging.getLogger(__name__)

TIMED_OUT = "operation_timed_out"


class Action(StrEnum):
    """What becomes of an overdue operation."""

    RESUME = "resume"
    TIME_OUT = "time_out"


def decide(
    operation: OpenOperation, readable: bool, now: datetime, settings: OperationSettings
) -> Action | None:
    """Resume an overdue operation while resumes are left and its command can be sent again;
    time it out otherwise. None: not overdue."""
    if not operation.overdue(now):
        return None
    if readable and operation.resumes < settings.resumes:
        return Action.RESUME
    return Action.TIME_OUT


class CommandNotPublishedError(Exception):
    """The broker did not take a command (unreachable, connection lost, refused)."""


class CommandPublisher(Protocol):
    """Sends a command to the broker (the watcher's connection)."""

    def __call__(self, message: OutgoingMessage) -> None:
        """Publish and wait for the broker's confirm; CommandNotPublishedError if it did not
        take the message."""


@dataclass
class Sweep:
    """What one sweep did, by command id."""

    resumed: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    """Overdue, but a consumer holds the instance: not lost."""
    unpublished: list[str] = field(default_factory=list)
    """To resume, but the broker could not be reached: the next sweep tries again."""


class Watchdog:
    """Finds overdue operations and resumes or fails them."""

    def __init__(
        self,
        ledger: Ledger,
        contract: ContractSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.settings = ledger.operations
        self.contract = contract
        self.operations = OpenOperations(ledger.engine, self.settings, ledger.machine)
        self._clock = clock

    def sweep(self, publish: CommandPublisher | None) -> Sweep:
        """Look at every open operation once (publish None: the broker is not reachable now)."""
        now = self._clock()
        done = Sweep()
        for seen in self.operations.all():
            if not seen.overdue(now):
                continue
            try:
                with self.ledger.locks.hold(seen.instance_id):
                    if not self._handle(seen.id, publish, now, done):
                        publish = None  # the broker refused or went away: no more this sweep
            except InstanceBusyError:
                done.busy.append(seen.command_id)
        return done

    def _handle(
        self, operation_id: str, publish: CommandPublisher | None, now: datetime, done: Sweep
    ) -> bool:
        """Resume or time out one operation, holding its instance; False if publishing failed."""
        operation = self.operations.get(operation_id)  # again, under the lock
        if operation is None:
            return True  # it ended meanwhile
        command = self._command_of(operation)
        action = decide(operation, command is not None, now, self.settings)
        if action is Action.RESUME and command is not None:
            if publish is None:
                done.unpublished.append(operation.command_id)
                return True
            try:
                publish(to_message(command, COMMANDS_EXCHANGE))
            except CommandNotPublishedError as error:
                log.warning(
                    "overdue operation not resumed: its command could not be published",
                    extra={**_ids(operation), "error": repr(error)},
                )
                done.unpublished.append(operation.command_id)
                return False
            deadline = self.operations.resumed(operation.id, now)
            done.resumed.append(operation.command_id)
            log.warning(
                "overdue operation resumed: its command was published again",
                extra={**_ids(operation), "step": operation.step, "deadline": str(deadline)},
            )
        elif action is Action.TIME_OUT and self._time_out(
            operation, command or _stand_in(operation)
        ):
            done.timed_out.append(operation.command_id)
        return True

    def _command_of(self, operation: OpenOperation) -> AnyCommand | None:
        """The command that began the operation, as the consumer would read it now (None:
        not kept, or refused by today's contract, so sending it again would not resume)."""
        if operation.command is None:
            return None
        properties = AmqpProperties(message_id=operation.command_id)
        try:
            stored = parse_command(
                json.dumps(operation.command).encode(), properties, self.contract
            )
        except MessageRejected:
            return None
        if not isinstance(stored, InstanceCommand) or stored.type != operation.kind:
            return None
        return stored

    def _time_out(self, operation: OpenOperation, command: AnyCommand) -> bool:
        """Fail the command: its one answer, the instance's status and the event together
        (False: it had its answer already, which stands)."""
        message = (
            f"the operation stayed open past its deadline ({operation.deadline.isoformat()}) "
            f"at step '{operation.step}', resumed {operation.resumes} time(s): the message "
            "that carries it on was lost; the instance may be half-way through the command"
        )
        data = CommandFailedData(
            instance_id=operation.instance_id,
            command_id=command.id,
            command_type=command.type,
            error=ErrorInfo(code=TIMED_OUT, message=message),
            rolled_back=False,
        )
        event = CommandFailedEvent.caused_by(command, data)
        stored = self.ledger.record(
            command, Outcome.FAILED, event, update=InstanceUpdate(last_error=message)
        )
        if stored.terminal_event_id != event.id:
            # Answered before, yet its operation is open: nothing to add to that answer.
            log.error(
                "overdue operation of a command already answered; left open",
                extra={**_ids(operation), "outcome": str(stored.outcome)},
            )
            return False
        METRICS.completed(command.type, "failed", TIMED_OUT)
        log.warning(
            "overdue operation timed out",
            extra={**_ids(operation), "code": TIMED_OUT, "reason": message},
        )
        return True


def _ids(operation: OpenOperation) -> dict[str, str]:
    return {
        "command_id": operation.command_id,
        "command_type": operation.kind,
        "instance_id": operation.instance_id,
    }


def _stand_in(operation: OpenOperation) -> AnyCommand:
    """The command, from what its operation recorded, when its document cannot be read again:
    enough to answer it (id, type, instance, correlation), not to run it."""
    document = operation.command or {}
    correlation = document.get("correlationid")
    recorded: dict[str, Any] = {
        "specversion": "1.0",
        "id": operation.command_id,
        "type": operation.kind,
        "source": "/instance-service",
        "subject": operation.instance_id,
        "time": operation.deadline,
        "correlationid": correlation if isinstance(correlation, str) else None,
    }
    stand_in: AnyCommand = COMMAND_MODELS[operation.kind].model_construct(**recorded)
    return stand_in
