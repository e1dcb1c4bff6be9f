"""The lifecycle handlers on the real stack: a consumer that can be killed mid-step, commands
sent over the bus, and the terminal event of each command read back from the bus and the store.

Nothing here is a fake of Kubernetes, RabbitMQ or PostgreSQL. The one injected part is our own
port `handlers.platform.Faults`: `CrashAt` stops a handler dead after a step's effects and before
its record, as a killed process would; the consumer is then stopped (the broker gets the
unacknowledged message back) and a new one takes the redelivery.
"""

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from consumers.cluster_events import InformerEvents
from consumers.parking import ParkingLot
from consumers.runtime import ConsumerRuntime
from consumers.settings import ConsumerSettings
from devstack.dns import INGRESS_ADDRESS, INGRESS_HOSTNAME
from devstack.issuer import ISSUER_NAME
from devstack.layout import LOOPBACK, default_layout
from devstack.seaweedfs import backup_settings
from handlers.platform import ImportArchives, Platform
from k8s.apply import Kubernetes
from k8s.health import EndpointSliceResolver
from k8s.settings import DomainSettings, ImportSettings, KubernetesSettings, TenantSettings
from messages.publishing import build_command
from messages.settings import ContractSettings
from objectstore.backups import ObjectBackups
from objectstore.settings import ObjectStorageSettings
from store.ledger import Ledger
from store.models import InboxEntry, OutboxEntry
from store.records import InstanceRecord
from store.tenant_database import TenantDatabases
from tests.catalog import CATALOG, MACHINE
from tests.consumers.harness import Observer, publish, running_consumer

CONSUMER = ConsumerSettings(
    health_port=0,
    retry_delays_seconds=(0.5, 1.0, 2.0),
    retry_jitter=0.0,
    relay_interval_seconds=0.1,
    shutdown_grace_seconds=20,
    handler_budget_seconds=30,
)


class Killed(BaseException):
    """Raised by CrashAt: not an Exception, so nothing in the consumer handles it."""


@dataclass
class CrashAt:
    """Kill the handler of `command_type` once, when it reaches `step`."""

    command_type: str | None = None
    step: str | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    reached_steps: list[tuple[str, str]] = field(default_factory=list)
    actions: dict[tuple[str, str], Callable[[], None]] = field(default_factory=dict)
    """Run once when a step is reached, before it is recorded (e.g. to change data)."""

    def arm(self, command_type: str, step: str | None) -> None:
        """Crash the next `command_type` at `step` (None: no crash)."""
        self.command_type, self.step = command_type, step
        self.fired.clear()

    def reached(self, command_type: str, step: str) -> None:
        """Record the step; die here if armed for it."""
        self.reached_steps.append((command_type, step))
        action = self.actions.pop((command_type, step), None)
        if action is not None:
            action()
        if (command_type, step) == (self.command_type, self.step) and not self.fired.is_set():
            self.fired.set()
            raise Killed(f"killed at {command_type} {step}")


def domain_settings(**changes: Any) -> DomainSettings:
    """Customers' domains as `devstack env` configures them: the stack's DNS server, its
    ingress name and address, the stand-in issuer."""
    values: dict[str, Any] = {
        "resolver_address": LOOPBACK,
        "resolver_port": default_layout().ports.dns,
        "ingress_hostname": INGRESS_HOSTNAME,
        "ingress_addresses": (INGRESS_ADDRESS,),
        "issuer_name": ISSUER_NAME,
        "certificate_ready_seconds": 30,
    }
    values.update(changes)
    return DomainSettings(**values)


def tenant_settings(**changes: Any) -> TenantSettings:
    """Tenants whose database host is the stack's PostgreSQL."""
    values: dict[str, Any] = {
        "base_domain": "odoo.test",
        "database_host": "127.0.0.1",
        "database_port": default_layout().ports.postgres,
        "database_addresses": ("127.0.0.1/32",),
        # The data Jobs' way to the stack's object storage.
        "backup_storage_addresses": ("127.0.0.1/32",),
        "backup_storage_ports": (default_layout().ports.s3,),
    }
    values.update(changes)
    return TenantSettings(**values)


@dataclass
class Lifecycle:
    """One namespace's instances, driven through the bus by a consumer with real handlers."""

    amqp_url: str
    engine: Engine
    api: client.ApiClient
    namespace: str
    admin_url: str
    kubernetes: KubernetesSettings
    tenants: TenantSettings
    faults: CrashAt = field(default_factory=CrashAt)
    service_api: client.ApiClient | None = None
    """The consumer's own credentials (e.g. deploy/'s ServiceAccount); None: `api`'s. `api`
    stays the test's view for checks and for the local stack's stand-in of cluster DNS."""
    observer: Observer | None = None
    consumer: ConsumerSettings = CONSUMER
    parks: bool = True
    """Whether waiting deliveries are parked (False: handlers watch in their worker thread,
    the path a consumer takes without an informer or with its lot full)."""
    backups: ObjectStorageSettings = field(
        default_factory=lambda: backup_settings(default_layout())
    )
    """The stack's object storage; each instance's objects are under its own id."""
    imports: ImportSettings = field(default_factory=ImportSettings)
    domains: DomainSettings = field(default_factory=lambda: domain_settings())
    """The stack's DNS server, ingress name and stand-in issuer (`devstack env`'s)."""
    _stack: ExitStack = field(default_factory=ExitStack)
    _consumer: AbstractContextManager[ConsumerRuntime] | None = None

    def __post_init__(self) -> None:
        self.databases = TenantDatabases.connect(self.admin_url)
        self.storage = ObjectBackups.connect(self.backups)
        # As the consumer process has them: one informer over the namespace, feeding the lot
        # where waiting deliveries are parked (every consumer this driver starts shares it).
        self.events = InformerEvents(
            lambda: Kubernetes(self.service_api or self.api, self.kubernetes.namespace)
        )
        self.parking = ParkingLot(self.events, self.consumer.max_waiting)
        self._build()
        self.ledger = Ledger(self.engine, MACHINE)
        self.observer = Observer(self.amqp_url, queue=f"test.observer.{uuid.uuid4().hex[:8]}")

    def reconfigure(
        self,
        tenants: TenantSettings | None = None,
        kubernetes: KubernetesSettings | None = None,
        imports: ImportSettings | None = None,
        domains: DomainSettings | None = None,
    ) -> None:
        """A new consumer whose handlers use these settings (None: keep the current ones)."""
        self.stop()
        self.tenants = tenants or self.tenants
        self.kubernetes = kubernetes or self.kubernetes
        self.imports = imports or self.imports
        self.domains = domains or self.domains
        self._build()
        self.start()

    def _build(self) -> None:
        self.platform = Platform(
            cluster=lambda: Kubernetes(self.service_api or self.api, self.kubernetes.namespace),
            databases=self.databases,
            resolver=EndpointSliceResolver(
                self.api, "127.0.0.1", default_layout().ports.odoo_standin
            ),
            kubernetes=self.kubernetes,
            tenants=self.tenants,
            backups=self.storage,
            imports=self.imports,
            domains=self.domains,
            faults=self.faults,
        )

    # -- the consumer ------------------------------------------------------------------

    def start(self) -> None:
        """A consumer with the lifecycle handlers."""
        assert self._consumer is None
        self._consumer = running_consumer(
            self.amqp_url,
            self.engine,
            CATALOG.handlers(self.platform),
            self.consumer,
            parking=self.parking if self.parks else None,
            archives=ImportArchives(self.storage),
            # As the service's settings compose them: the tenants' base domain is a platform
            # domain no customer's own may be under.
            contract=ContractSettings(platform_domains=(self.tenants.base_domain,)),
            max_domains=self.domains.per_instance,
        )
        self._consumer.__enter__()

    def stop(self) -> None:
        """Stop the consumer: anything it holds unacknowledged goes back to the broker."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.__exit__(None, None, None)

    def close(self) -> None:
        """Stop the consumer and release connections."""
        self.stop()
        self.parking.close()
        self.events.close()
        self.databases.admin.dispose()

    # -- commands ----------------------------------------------------------------------

    def send(self, command_type: str, data: dict[str, Any]) -> str:
        """Publish a command; return its id."""
        message = build_command(command_type, data, source="/tests")
        publish(
            self.amqp_url,
            [(message.properties.message_id or "", message.body)],
            message.routing_key,
        )
        return message.properties.message_id or ""

    def run(
        self, command_type: str, data: dict[str, Any], crash_at: str | None = None
    ) -> dict[str, Any]:
        """Send a command (killing its handler once at `crash_at`) and return its terminal event."""
        self.faults.arm(command_type, crash_at)
        command_id = self.send(command_type, data)
        if crash_at is not None:
            assert self.faults.fired.wait(120), f"{command_type} never reached {crash_at}"
            self.stop()  # the kill: nothing more happens for this delivery in this consumer
            self.start()
        return self.terminal(command_id)

    def terminal(self, command_id: str, timeout: float = 180) -> dict[str, Any]:
        """The one terminal event of a command, as published; checks the store agrees."""
        assert self.observer is not None
        bodies = self.observer.wait_for(
            lambda seen: any(_terminal_of(b, command_id) for b in seen), timeout
        )
        events = [b for b in bodies if _terminal_of(b, command_id)]
        assert len({e["id"] for e in events}) == 1, f"more than one terminal event: {events}"
        stored = [e for e in self.recorded_events(command_id) if e["type"] not in FOLLOWING]
        assert [e["id"] for e in stored] == [events[0]["id"]], stored
        with Session(self.engine) as session:
            inbox = session.get_one(InboxEntry, command_id)
            assert inbox.terminal_event_id == events[0]["id"]
        return events[0]

    def recorded_events(self, command_id: str) -> list[dict[str, Any]]:
        """Every event the store ever recorded for a command."""
        with Session(self.engine) as session:
            bodies = session.scalars(select(OutboxEntry.body)).all()
        return [
            event
            for event in (json.loads(body) for body in bodies)
            if event.get("causationid") == command_id
        ]

    def recorded_events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Every event of a type the store ever recorded (also those no command caused)."""
        with Session(self.engine) as session:
            bodies = session.scalars(select(OutboxEntry.body)).all()
        return [
            event
            for event in (json.loads(body) for body in bodies)
            if event.get("type") == event_type
        ]

    def instance(self, instance_id: str) -> InstanceRecord:
        """The instance as stored."""
        record = self.ledger.instance(instance_id)
        assert record is not None
        return record


FOLLOWING = frozenset({"odoo.instance.backups.pruned.v1"})
"""Events a command may cause besides its terminal one (Completed.more_events)."""


def _terminal_of(event: dict[str, Any], command_id: str) -> bool:
    return event.get("causationid") == command_id and event.get("type") not in FOLLOWING


def provision_data(instance_id: str, subdomain: str) -> dict[str, Any]:
    """A small valid provision."""
    return {
        "instance_id": instance_id,
        "customer_id": "cus_4711",
        "subdomain": subdomain,
        "odoo_version": "17.0",
        "plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 5},
        "admin_email": "owner@acme.example",
    }


def new_instance() -> tuple[str, str]:
    """A fresh instance id and a subdomain no other test uses."""
    instance_id = str(uuid.uuid4())
    return instance_id, f"t{instance_id[:8]}"


@contextmanager
def lifecycle(
    amqp_url: str,
    engine: Engine,
    api: client.ApiClient,
    namespace: str,
    admin_url: str,
    tenants: TenantSettings | None = None,
    service_api: client.ApiClient | None = None,
    consumer: ConsumerSettings = CONSUMER,
    parks: bool = True,
    **kubernetes: Any,
) -> Iterator[Lifecycle]:
    """A started Lifecycle; stopped and closed at the end."""
    settings = KubernetesSettings(
        namespace=namespace,
        health_resolver="endpointslice",
        standin_port=default_layout().ports.odoo_standin,
        **{"health_deadline_seconds": 20.0, "ready_deadline_seconds": 60.0, **kubernetes},
    )
    driver = Lifecycle(
        amqp_url,
        engine,
        api,
        namespace,
        admin_url,
        settings,
        tenants or tenant_settings(),
        service_api=service_api,
        consumer=consumer,
        parks=parks,
    )
    driver.start()
    try:
        yield driver
    finally:
        driver.close()


COMMAND_PREFIX = "odoo.instance."


def event_kind(event: dict[str, Any]) -> str:
    """`odoo.instance.provisioned.v1` -> `provisioned`."""
    return str(event["type"]).removeprefix(COMMAND_PREFIX).removesuffix(".v1")


def run_steps(
    driver: Lifecycle,
    verb: str,
    data: dict[str, Any],
    steps: list[str],
    crash: int | None = None,
) -> dict[str, Any]:
    """Run `verb`, killed once at its `crash`-th step (if it has one); return its terminal
    event, having checked that it went through exactly `steps`, resumed not repeated: only the
    interrupted step runs a second time."""
    crash = crash if crash is not None and crash < len(steps) else None
    seen = len(driver.faults.reached_steps)
    crash_at = None if crash is None else steps[crash]
    command_type = f"{COMMAND_PREFIX}{verb}.v1"
    event = driver.run(command_type, data, crash_at=crash_at)
    # Its own steps: a command it sends (a clone's backup of its source) has steps too.
    reached = [step for kind, step in driver.faults.reached_steps[seen:] if kind == command_type]
    expected = steps if crash is None else steps[: crash + 1] + steps[crash:]
    assert reached == expected, f"{verb}: {reached}"
    return event
