"""Command type -> handler, built once at start-up by the entry point (never at import time)."""

from collections.abc import Collection, Iterable
from typing import Any

from handlers.results import CommandHandler, Handler, HandlerContext, HandlerResult
from messages.envelope import Envelope


class Routed:
    """A typed handler behind the registry: it is called only with commands of its model.

    The one check that the consumer's command is of the handler's model lives here, so no
    handler repeats it; parsing picks the model by the same `type` the registry is keyed by, so
    it fails only on a caller's mistake.
    """

    def __init__(self, model: type[Envelope], handler: CommandHandler[Any]) -> None:
        self.model = model
        self.handler = handler

    def __call__(self, received: Envelope, context: HandlerContext) -> HandlerResult:
        """Hand the command to its handler."""
        if not isinstance(received, self.model):
            raise TypeError(
                f"{type(received).__name__} routed to the handler of {self.model.__name__}"
            )
        return self.handler(received, context)


class HandlerRegistry:
    """An explicit table of handlers; registering a type twice is an error.

    `command_types`: the types it may hold (the catalog's); any other is refused.
    """

    def __init__(self, command_types: Collection[str]) -> None:
        self.command_types = frozenset(command_types)
        self._handlers: dict[str, Handler] = {}

    def register(self, command_type: str, handler: Handler) -> None:
        """Add the handler of `command_type`."""
        if command_type not in self.command_types:
            raise ValueError(f"{command_type!r} is not a command type of the contract")
        if command_type in self._handlers:
            raise ValueError(f"{command_type} already has a handler")
        self._handlers[command_type] = handler

    def handler_for(self, command_type: str) -> Handler:
        """The handler of a command type."""
        try:
            return self._handlers[command_type]
        except KeyError:
            raise LookupError(f"no handler is registered for {command_type}") from None

    def require(self, command_types: Iterable[str]) -> None:
        """Fail start-up unless every one of `command_types` has a handler."""
        missing = sorted(set(command_types) - set(self._handlers))
        if missing:
            raise LookupError(f"no handler for: {', '.join(missing)}")
