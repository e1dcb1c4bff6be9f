"""Builds the consumer from settings: the composition root's one place for who gets what."""

import logging
from functools import partial

from consumers.cluster_events import InformerEvents
from consumers.health import Health
from consumers.parking import ParkingLot
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.watcher import Watcher
from handlers.catalog import Catalog
from handlers.platform import Platform
from handlers.results import Handler
from handlers.watchdog import Watchdog
from instance_service.settings import Settings
from k8s.apply import Kubernetes
from k8s.cluster import KubernetesApi
from k8s.health import resolver_for
from objectstore.backups import ObjectBackups, StorageSettingsError
from store.admission import Archives
from store.database import StateEngine
from store.ledger import Ledger
from store.outbox import OutboxRelayStore
from store.tenant_database import TenantDatabases

log = logging.getLogger("instance_service")


class MissingSettingError(Exception):
    """A setting the consumer cannot run without is unset."""


def build_platform(settings: Settings, api: KubernetesApi) -> Platform:
    """The cluster, tenant databases, health checks and backup storage the lifecycle handlers
    act on."""
    admin_url = settings.store.tenant_admin_url
    if admin_url is None:
        raise MissingSettingError(
            "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL is not set: provision and delete create "
            "and drop tenant databases through that PostgreSQL role "
            "(`python -m devstack env` prints the local stack's)"
        )
    try:
        backups = ObjectBackups.connect(settings.backups)
    except StorageSettingsError as error:
        raise MissingSettingError(str(error)) from None
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
        backups=backups,
        retention=settings.retention,
        imports=settings.imports,
        domains=settings.domains,
    )


def build_handlers(catalog: Catalog, platform: Platform) -> dict[str, Handler]:
    """The handler of every declared command, on `platform`."""
    return catalog.handlers(platform)


def build_parking(settings: Settings, api: KubernetesApi) -> ParkingLot | None:
    """Where waiting handlers park: a lot fed by one informer per waited kind in the tenant
    namespace (None when `consumer.max_waiting` is 0: waits then block a worker, as before)."""
    if settings.consumer.max_waiting == 0:
        return None
    cluster = partial(
        Kubernetes, api, settings.kubernetes.namespace, settings.kubernetes.request_timeout_seconds
    )
    return ParkingLot(InformerEvents(cluster), settings.consumer.max_waiting)


def build_runtime(
    settings: Settings,
    engine: StateEngine,
    catalog: Catalog,
    handlers: dict[str, Handler],
    health: Health,
    parking: ParkingLot | None = None,
    archives: Archives | None = None,
) -> ConsumerRuntime:
    """The consumer, wired to the store, the handlers and the broker; the registry and the
    status machine both come from `catalog`, so they serve the same command types. With
    `parking`, a handler waiting for the cluster gives its worker back; with `archives`,
    admission refuses an import whose archive does not exist."""
    # The ledger knows which versions have an image: a provision or upgrade to another is
    # refused in admission, before anything begins.
    ledger = Ledger(
        engine,
        catalog.status_machine,
        versions_with_image=settings.tenants.images,
        operations=settings.operations,
        archives=archives,
        max_domains=settings.domains.per_instance,
    )
    processor = Processor(
        ledger, catalog.registry(handlers), settings.consumer, settings.contract, parking=parking
    )
    relay = OutboxRelay(OutboxRelayStore(engine))
    return ConsumerRuntime(settings.amqp, settings.consumer, processor, relay, health, parking)


def build_watcher(
    settings: Settings, engine: StateEngine, api: KubernetesApi, catalog: Catalog, health: Health
) -> Watcher:
    """The watch process, on the store, the cluster and the broker, with the watchdog of
    operations whose continuation was lost."""
    ledger = Ledger(engine, catalog.status_machine, operations=settings.operations)
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
