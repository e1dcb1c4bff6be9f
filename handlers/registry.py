"""Command type -> handler, built once at start-up by the entry point (never at import time)."""

from collections.abc import Iterable

from handlers.results import Handler
from messages.commands import COMMAND_MODELS


class HandlerRegistry:
    """An explicit table of handlers; registering a type twice is an error."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, command_type: str, handler: Handler) -> None:
        """Add the handler of `command_type`."""
        if command_type not in COMMAND_MODELS:
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
