"""Builds the consumer from settings: the composition root's one place for who gets what."""

import logging
from functools import partial

from consumers.health import Health
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.watcher import Watcher
from handlers.catalog import lifecycle_handlers
from handlers.platform import Platform
from handlers.registry import HandlerRegistry
from handlers.results import Handler
from handlers.unimplemented import not_implemented
from handlers.watchdog import Watchdog
from instance_service.settings import Settings
from k8s.apply import Kubernetes
from k8s.cluster import KubernetesApi
from k8s.health import resolver_for
from messages.commands import COMMAND_MODELS
from store.database import StateEngine
from store.ledger import Ledger
from store.outbox import OutboxRelayStore
from store.tenant_database import TenantDatabases

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


class MissingSettingError(Exception):
    """A setting the consumer cannot run without is unset."""


def build_platform(settings: Settings, api: KubernetesApi) -> Platform:
    """The cluster, tenant databases and health checks the lifecycle handlers act on."""
    admin_url = settings.store.tenant_admin_url
    if admin_url is None:
        raise MissingSettingError(
            "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL is not set: provision and delete create "
            "and drop tenant databases through that PostgreSQL role "
            "(`python -m devstack env` prints the local stack's)"
        )
    return Platform(
        cluster=partial(
            Kubernetes,
            api,
            settings.kubernetes.namespace,
            settings.kubernetes.request_timeout_seconds,
        ),
        databases=TenantDatabases.connect(admin_url.get_secret_value()),
        resolver=resolver_for(settings.kubernetes, api),
        kubernetes=settings.kubernetes,
        tenants=settings.tenants,
    )


def build_handlers(platform: Platform) -> dict[str, Handler]:
    """Every handler this version has."""
    return lifecycle_handlers(platform)


def build_runtime(
    settings: Settings, engine: StateEngine, handlers: dict[str, Handler], health: Health
) -> ConsumerRuntime:
    """The consumer, wired to the store, the handlers and the broker."""
    # The ledger knows which versions have an image: a provision or upgrade to another is
    # refused in admission, before anything begins.
    ledger = Ledger(
        engine, versions_with_image=settings.tenants.images, operations=settings.operations
    )
    processor = Processor(ledger, build_registry(handlers), settings.consumer, settings.contract)
    relay = OutboxRelay(OutboxRelayStore(engine))
    return ConsumerRuntime(settings.amqp, settings.consumer, processor, relay, health)


def build_watcher(
    settings: Settings, engine: StateEngine, api: KubernetesApi, health: Health
) -> Watcher:
    """The watch process, on the store, the cluster and the broker, with the watchdog of
    operations whose continuation was lost."""
    ledger = Ledger(engine, operations=settings.operations)
    return Watcher(
        cluster=partial(
            Kubernetes,
            api,
            settings.kubernetes.namespace,
            settings.kubernetes.request_timeout_seconds,
        ),
        ledger=ledger,
        relay=OutboxRelay(OutboxRelayStore(engine)),
        amqp=settings.amqp,
        settings=settings.watcher,
        health=health,
        watchdog=Watchdog(ledger, settings.contract),
    )
