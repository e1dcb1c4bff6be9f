"""What a handler returns, and what it is given: the contract between handlers and the consumer."""

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from handlers.waits import WaitingFor
from messages.commands import AnyCommand
from messages.envelope import Envelope
from messages.events import Event
from store.ledger import Ledger
from store.records import Admission, InstanceUpdate


@dataclass(frozen=True)
class Completed:
    """The command is done: its terminal event, the instance's change, any further events."""

    event: Event
    update: InstanceUpdate | None = None
    more_events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Continue:
    """A long operation is not done: record `step` and come back after `after_seconds`.

    The consumer acknowledges the message and schedules its own continuation, so no message
    waits unacknowledged longer than the handler budget.
    """

    step: str
    after_seconds: float
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """A long operation waits for `waiting_for`: record `step`, and come back when it happens
    or at `until` (epoch seconds; within the handler budget), whichever is first.

    The consumer keeps the message unacknowledged meanwhile, without a thread (it parks it,
    consumers/parking.py); where it cannot, it goes on as with `continued()`.
    """

    step: str
    waiting_for: WaitingFor[Any]
    until: float
    after_seconds: float
    """As Continue's: when the continuation comes if the delivery cannot be parked."""
    result: dict[str, Any] = field(default_factory=dict)

    def continued(self) -> Continue:
        """The same pause as a Continue: acknowledged, continued through the delay queues."""
        return Continue(step=self.step, after_seconds=self.after_seconds, result=self.result)


HandlerResult = Completed | Continue | Wait


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use besides its command."""

    ledger: Ledger
    admission: Admission
    operation_id: str | None
    deadline: float
    """time.monotonic() by which the handler returns (Completed, Continue or Wait)."""
    parks: bool = False
    """Whether a waiting step returns Wait (the consumer parks the delivery) rather than
    watching in this thread until the budget ends."""

    def remaining(self) -> float:
        """Seconds left of the handler budget."""
        return self.deadline - time.monotonic()


C_contra = TypeVar("C_contra", bound=Envelope, contravariant=True)


class CommandHandler(Protocol[C_contra]):
    """Carries out its own command type; raises RetryableError or PermanentError on failure.

    Typed by its command: the registry hands it only commands of its declared model
    (handlers/declarations.py), so it never checks what it was given.
    """

    def __call__(self, command: C_contra, context: HandlerContext, /) -> HandlerResult:
        """Do (or continue) the command's work."""


class Handler(Protocol):
    """What the consumer calls for a delivered command: the registry's answer to its type."""

    def __call__(self, command: AnyCommand, context: HandlerContext, /) -> HandlerResult:
        """Do (or continue) the command's work."""
