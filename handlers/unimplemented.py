"""The answer for command types whose handler does not exist yet: an explicit, final failure.

Registered by the entry point for every type without a real handler, so such a command ends
with `command.failed` (code `not_implemented`) instead of waiting in a queue; start-up logs
which types these are.
"""

from handlers.results import HandlerContext, HandlerResult
from messages.commands import AnyCommand
from messages.errors import PermanentError


def not_implemented(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    """Fail the command: this service version cannot carry it out."""
    raise PermanentError("not_implemented", f"{command.type} is not implemented yet")
