"""How a command is answered in the store: its terminal event built into the `Record` that the
batch's one transaction writes with the outcome (consumers/batch.py), or, for a long operation,
its step recorded. The decision (consumers/processing.py) chooses the answer; this builds what
is written and names what becomes of the delivery."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from consumers.delivery import Ack, DeadLetter, Decision, Retry
from consumers.headers import MAX_DELAY_SECONDS, Counters
from handlers.results import Completed, Continue
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from store.ledger import Ledger, Record, Started
from store.records import InstanceUpdate, Outcome, StoredOutcome


def answered_before(stored: StoredOutcome) -> Decision:
    """Answered before: a success is acknowledged, a refusal goes to the dead letters again."""
    if stored.outcome is Outcome.SUCCEEDED:
        return Ack(f"already answered ({stored.outcome}); nothing repeated")
    return DeadLetter(f"answered:{stored.outcome}", "already answered; see its terminal event")


def refuse(ledger: Ledger, rejection: MessageRejected) -> DeadLetter:
    """Answer a message that is no command of ours (recorded when its id could be read)."""
    ledger.record_rejection(rejection, CommandRejectedEvent.for_rejection(rejection))
    return DeadLetter(str(rejection.code), rejection.message)


def rejection(command: AnyCommand, rejected: MessageRejected) -> Record:
    """The record of a command admission refused (answered with a dead letter)."""
    subject = command.subject if isinstance(command, InstanceCommand) else None
    event = CommandRejectedEvent.for_rejection(
        rejected, subject=subject, correlationid=command.correlationid or command.id
    )
    return Record(command, Outcome.REJECTED, event)


def completion(command: AnyCommand, result: Completed) -> Record:
    """The record of a command its handler completed: the instance's change and its events."""
    return Record(command, Outcome.SUCCEEDED, result.event, result.update, result.more_events)


def carry_on(
    ledger: Ledger,
    command: AnyCommand,
    begun: Started,
    result: Continue,
    counters: Counters,
    longest_delay: float,
) -> Retry:
    """Record a long operation's step and schedule its next turn (a delay past the longest
    delay queue's travels as a not-before, in hops)."""
    if begun.operation_id is None:
        raise RuntimeError(f"{command.type} asked to continue without an operation")
    ledger.advance(begun.operation_id, result.step, **result.result)
    after = min(result.after_seconds, MAX_DELAY_SECONDS)
    not_before = int((time.time() + after) * 1000) if after > longest_delay else 0
    # A new step starts with fresh counters; only the busy count goes on.
    fresh = Counters(busy=counters.busy, not_before_ms=not_before)
    return Retry(after, f"continue at {result.step}", fresh, "continue")


def failure(command: AnyCommand, failed: PermanentError) -> Record:
    """The record of a command answered as failed (answered with a dead letter)."""
    data = CommandFailedData(
        instance_id=command.subject if isinstance(command, InstanceCommand) else None,
        command_id=command.id,
        command_type=command.type,
        error=ErrorInfo(code=failed.code, message=str(failed)),
        rolled_back=failed.rolled_back,
    )
    # Where the instance goes (as it was, `error`, or back into its billing hold) is the
    # status machine's decision (store.lifecycle.settle); this only says how it ended.
    return Record(
        command,
        Outcome.FAILED,
        CommandFailedEvent.caused_by(command, data),
        InstanceUpdate(last_error=str(failed), rolled_back=failed.rolled_back),
    )


@dataclass(frozen=True)
class Answer:
    """What a command came to in a batch: its decision, the outcome to record with the batch's
    others (None: nothing, or already written), and what to tell once it is recorded."""

    decision: Decision
    record: Record | None = None
    told: Callable[[], None] = lambda: None
