"""The service's command catalog for tests that build a ledger or a handler registry by hand.

A test consumer serves a few types with fakes; `registry_of` answers every other declared type
with a permanent failure, since the real registry refuses to start short of a type.
"""

from collections.abc import Mapping

from handlers.catalog import command_catalog
from handlers.registry import HandlerRegistry
from handlers.results import Handler, HandlerContext, HandlerResult
from messages.commands import AnyCommand
from messages.errors import PermanentError

CATALOG = command_catalog()
MACHINE = CATALOG.status_machine


def not_served(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    """A type the test's consumer has no fake for: fail it, never wait."""
    raise PermanentError("not_served", f"this test serves no {command.type}")


def registry_of(handlers: Mapping[str, Handler]) -> HandlerRegistry:
    """A registry of `handlers`; every other declared type fails as `not_served`."""
    return CATALOG.registry(
        {command_type: handlers.get(command_type, not_served) for command_type in CATALOG.types}
    )
