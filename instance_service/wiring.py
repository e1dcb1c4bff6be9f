"""Builds the consumer from settings: the composition root's one place for who gets what."""

import logging

from consumers.health import Health
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from handlers.registry import HandlerRegistry
from handlers.results import Handler
from handlers.unimplemented import not_implemented
from instance_service.settings import Settings
from messages.commands import COMMAND_MODELS
from store.database import StateEngine
from store.ledger import Ledger
from store.outbox import OutboxRelayStore

log = logging.getLogger("instance_service")


def build_registry(handlers: dict[str, Handler]) -> HandlerRegistry:
    """Register `handlers`; every other command type fails explicitly as not implemented."""
    registry = HandlerRegistry()
    for command_type, handler in handlers.items():
        registry.register(command_type, handler)
    missing = sorted(set(COMMAND_MODELS) - set(handlers))
    for command_type in missing:
        registry.register(command_type, not_implemented)
    if missing:
        log.warning("commands without a handler fail as not_implemented", extra={"types": missing})
    registry.require(COMMAND_MODELS)
    return registry


def build_runtime(
    settings: Settings, engine: StateEngine, handlers: dict[str, Handler], health: Health
) -> ConsumerRuntime:
    """The consumer, wired to the store, the handlers and the broker."""
    processor = Processor(
        Ledger(engine), build_registry(handlers), settings.consumer, settings.contract
    )
    relay = OutboxRelay(OutboxRelayStore(engine))
    return ConsumerRuntime(settings.amqp, settings.consumer, processor, relay, health)
