"""One declaration per command type: everything the service states about it, in one place.

A command's model, the queue it is routed to, its path through the status machine, its success
event, whether it holds its instance's lock and the handler that carries it out are written
once, at the end of the handler's module. handlers/catalog.py collects the declarations and
derives from them the handler registry, the status machine, the queues' bindings and what the
AsyncAPI document says of each command; nothing keeps those tables by hand.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from handlers.deadlines import Bound
from handlers.platform import Platform
from handlers.results import CommandHandler
from messages.envelope import Envelope, type_name
from messages.events import Event
from store.lifecycle import Transition


class Queue(StrEnum):
    """The work queue a command type is routed to (consumers/topology.py)."""

    QUICK = "quick"
    """Lifecycle commands that take seconds: a burst of long ones never delays them."""
    LONG = "long"
    """Commands that may take minutes (provision, data operations, delete, reconcile)."""


C = TypeVar("C", bound=Envelope)


@dataclass(frozen=True)
class Declaration(Generic[C]):
    """A command type as the service serves it.

    `transition` None: the command changes no instance's status (the fleet reconcile).
    `healthy_within`: the longest a healthy operation of it takes, as a sum of the handler's
    waits (handlers/deadlines.py); given exactly when a transition is, since only a command
    that moves an instance opens an operation the watchdog looks after.
    `locks`: it holds its instance's lock while it runs; otherwise the fleet's, so that one
    such command runs at a time. `handler` builds the command's handler on a Platform; the
    handler is typed by `model` and receives nothing else.
    """

    model: type[C]
    queue: Queue
    transition: Transition | None
    event: type[Event]
    healthy_within: Bound | None
    locks: bool
    handler: Callable[[Platform], CommandHandler[C]]

    @property
    def command_type(self) -> str:
        """The CloudEvents type (and routing key) of the command."""
        return type_name(self.model)

    @property
    def event_type(self) -> str:
        """The type of the event that reports the command's success."""
        return type_name(self.event)
