"""How a command is answered in the store: its terminal event built and recorded with the
outcome, in the ledger's one transaction (or, for a long operation, its step recorded). The
decision (consumers/processing.py) chooses the answer; this writes it and names what becomes of
the delivery."""

import time

from consumers.delivery import Ack, DeadLetter, Decision, Retry
from consumers.headers import MAX_DELAY_SECONDS, Counters
from handlers.results import Completed, Continue
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from store.ledger import Ledger, Started
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


def reject(ledger: Ledger, command: AnyCommand, rejection: MessageRejected) -> DeadLetter:
    """Answer a command admission refused."""
    subject = command.subject if isinstance(command, InstanceCommand) else None
    event = CommandRejectedEvent.for_rejection(
        rejection, subject=subject, correlationid=command.correlationid or command.id
    )
    ledger.record(command, Outcome.REJECTED, event)
    return DeadLetter(str(rejection.code), rejection.message)


def complete(ledger: Ledger, command: AnyCommand, result: Completed) -> Ack:
    """Answer a command its handler completed, with the instance's change and its events."""
    ledger.record(
        command,
        Outcome.SUCCEEDED,
        result.event,
        update=result.update,
        more_events=result.more_events,
    )
    return Ack("completed")


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


def fail(ledger: Ledger, command: AnyCommand, failure: PermanentError) -> DeadLetter:
    """Answer a command as failed."""
    data = CommandFailedData(
        instance_id=command.subject if isinstance(command, InstanceCommand) else None,
        command_id=command.id,
        command_type=command.type,
        error=ErrorInfo(code=failure.code, message=str(failure)),
        rolled_back=failure.rolled_back,
    )
    # Where the instance goes (as it was, `error`, or back into its billing hold) is the
    # status machine's decision (store.lifecycle.settle); this only says how it ended.
    ledger.record(
        command,
        Outcome.FAILED,
        CommandFailedEvent.caused_by(command, data),
        update=InstanceUpdate(last_error=str(failure), rolled_back=failure.rolled_back),
    )
    return DeadLetter(f"failed:{failure.code}", str(failure))
