"""Every command the service serves, collected from the declarations next to their handlers.

The entry point builds the `Catalog` once at start-up; it refuses a type declared twice, a
declaration that lacks a part, and a command type of the contract that nobody declared. Every
per-type table is derived from it: the handler registry, the status machine the ledger decides
with, the work queue each type is bound to, and what the AsyncAPI document says of each command.
Adding a command is one declaration at the end of its handler's module and one line below.
"""

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from handlers.backups import BACKUP, RESTORE
from handlers.clone import CLONE
from handlers.deadlines import Waits
from handlers.declarations import Declaration, Queue
from handlers.delete import DELETE
from handlers.domains import DOMAIN_ADD, DOMAIN_REMOVE
from handlers.imports import IMPORT
from handlers.lifecycle import REACTIVATE, RESTART, START, STOP, SUSPEND, TERMINATE, UNSUSPEND
from handlers.platform import Platform
from handlers.provision import PROVISION
from handlers.reconcile import RECONCILE
from handlers.registry import HandlerRegistry, Routed
from handlers.resize import RESIZE
from handlers.results import Handler
from handlers.upgrade import UPGRADE
from messages.commands import COMMAND_MODELS, InstanceCommand
from messages.envelope import Envelope
from messages.events import Event
from messages.schema import DocumentedCommand
from store.lifecycle import StatusMachine, StatusMachineError, Transition

DECLARATIONS: tuple[Declaration[Any], ...] = (
    PROVISION,
    START,
    STOP,
    RESTART,
    SUSPEND,
    UNSUSPEND,
    RESIZE,
    UPGRADE,
    BACKUP,
    RESTORE,
    TERMINATE,
    REACTIVATE,
    DELETE,
    CLONE,
    IMPORT,
    DOMAIN_ADD,
    DOMAIN_REMOVE,
    RECONCILE,
)
"""The service's commands; this order is the status machine's (lifters are named in it)."""

OPTIONAL_PARTS = frozenset({"transition", "healthy_within"})


class CatalogError(Exception):
    """The declarations are wrong (twice, incomplete, or short of the contract): start-up fails."""


class Catalog:
    """The declared command types, checked against the contract's models, and their tables.

    `contract`: command type -> model, the parse table (messages/commands.py); every one of
    its types must be declared, with that model, and nothing else may be.
    """

    def __init__(
        self,
        declarations: Iterable[Declaration[Any]],
        contract: Mapping[str, type[Envelope]] = COMMAND_MODELS,
    ) -> None:
        self._declarations: dict[str, Declaration[Any]] = {}
        for declaration in declarations:
            _check(declaration)
            command_type = declaration.command_type
            if command_type in self._declarations:
                raise CatalogError(f"{command_type} is declared twice")
            if contract.get(command_type) is not declaration.model:
                raise CatalogError(f"{command_type} is not a command model of the contract")
            self._declarations[command_type] = declaration
        missing = sorted(set(contract) - set(self._declarations))
        if missing:
            raise CatalogError(f"no declaration for: {', '.join(missing)}")
        try:
            self.status_machine = StatusMachine(self.transitions(), self.instance_locked())
        except StatusMachineError as error:
            raise CatalogError(str(error)) from error

    @property
    def types(self) -> tuple[str, ...]:
        """Every declared command type, in declaration order."""
        return tuple(self._declarations)

    def declaration(self, command_type: str) -> Declaration[Any]:
        """The declaration of one command type."""
        return self._declarations[command_type]

    def transitions(self) -> dict[str, Transition]:
        """Instance command type -> its transition (commands that change no status have none)."""
        return {
            command_type: declaration.transition
            for command_type, declaration in self._declarations.items()
            if declaration.transition is not None
        }

    def instance_locked(self) -> frozenset[str]:
        """The command types that run holding their instance's lock."""
        return frozenset(t for t, declaration in self._declarations.items() if declaration.locks)

    def healthy_bounds(self, waits: Waits) -> dict[str, float]:
        """Command type -> the longest a healthy operation of it takes with these waits."""
        return {
            command_type: declaration.healthy_within(waits)
            for command_type, declaration in self._declarations.items()
            if declaration.healthy_within is not None
        }

    def routed_to(self, queue: Queue) -> frozenset[str]:
        """The command types bound to `queue`."""
        return frozenset(t for t, d in self._declarations.items() if d.queue is queue)

    def queue_of(self, command_type: str) -> Queue:
        """The queue a command type is bound to."""
        return self._declarations[command_type].queue

    def handlers(self, platform: Platform) -> dict[str, Handler]:
        """Command type -> its handler on `platform`, each fed only commands of its model."""
        return {
            command_type: Routed(declaration.model, declaration.handler(platform))
            for command_type, declaration in self._declarations.items()
        }

    def registry(self, handlers: Mapping[str, Handler]) -> HandlerRegistry:
        """A registry of `handlers`, which must carry out every declared type."""
        registry = HandlerRegistry(self.types)
        for command_type, handler in handlers.items():
            registry.register(command_type, handler)
        registry.require(self.types)
        return registry

    def documented(self) -> list[DocumentedCommand]:
        """What the AsyncAPI document states of each command: its model and success event."""
        return [DocumentedCommand(d.model, d.event_type) for d in self._declarations.values()]


def _check(declaration: Declaration[Any]) -> None:
    """Every part is there and of its kind, and the parts agree with each other."""
    for part in fields(declaration):
        if part.name not in OPTIONAL_PARTS and getattr(declaration, part.name) is None:
            raise CatalogError(f"the declaration of {declaration.model!r} lacks its {part.name}")
    model, event = declaration.model, declaration.event
    if not (isinstance(model, type) and issubclass(model, Envelope)):
        raise CatalogError(f"{model!r} is not a message model")
    name = model.__name__
    if not (isinstance(event, type) and issubclass(event, Event)):
        raise CatalogError(f"{name}'s success event {event!r} is not an event model")
    if not isinstance(declaration.queue, Queue):
        raise CatalogError(f"{name}'s queue {declaration.queue!r} is not one of {list(Queue)}")
    if not callable(declaration.handler):
        raise CatalogError(f"{name}'s handler is not a factory of handlers")
    about_one_instance = issubclass(model, InstanceCommand)
    if about_one_instance and declaration.transition is None:
        raise CatalogError(f"{name} is about one instance but declares no transition")
    if not about_one_instance and (declaration.transition is not None or declaration.locks):
        raise CatalogError(f"{name} has no instance to move or lock")
    if (declaration.transition is None) is not (declaration.healthy_within is None):
        raise CatalogError(
            f"{name} opens an operation: it states both its transition and how "
            "long a healthy one takes (healthy_within), or neither"
        )


def command_catalog() -> Catalog:
    """The catalog of this service version: every command of the contract, declared."""
    return Catalog(DECLARATIONS, COMMAND_MODELS)
