"""What the benchmarks share on the local stack: a vhost of their own, a queue observing every
event, publishing commands, a scratch PostgreSQL database. Nothing here is measured."""

import base64
import json
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import psycopg
from kubernetes import client, config
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from consumers.health import Health
from consumers.parking import ParkingLot
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings, ConsumerSettings
from devstack import credentials
from devstack.credentials import RABBITMQ_SERVICE_USER
from devstack.layout import default_layout
from devstack.seaweedfs import backup_settings
from handlers.catalog import command_catalog
from handlers.platform import Platform
from handlers.results import Handler, HandlerContext, HandlerResult
from k8s.apply import Kubernetes
from k8s.health import EndpointSliceResolver
from k8s.settings import KubernetesSettings, TenantSettings
from messages.amqp import OutgoingMessage
from messages.commands import AnyCommand
from messages.errors import PermanentError
from messages.publishing import build_command
from messages.settings import ContractSettings
from objectstore.backups import ObjectBackups
from store.ledger import Ledger
from store.outbox import OutboxRelayStore
from store.tenant_database import TenantDatabases


def provision_data(instance_id: str, subdomain: str) -> dict[str, Any]:
    """A valid provision at the benchmarks' one size: 500m, 1 GiB, 5 GiB."""
    return {
        "instance_id": instance_id,
        "customer_id": "bench",
        "subdomain": subdomain,
        "odoo_version": "17.0",
        "plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 5},
        "admin_email": "bench@example.com",
    }


def _not_served(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    raise PermanentError("not_served", f"this benchmark serves no {command.type}")


@contextmanager
def serving(
    amqp_url: str,
    engine: Engine,
    handlers: Mapping[str, Handler],
    settings: ConsumerSettings,
    parking: ParkingLot | None = None,
) -> Iterator[ConsumerRuntime]:
    """One in-process consumer with these handlers, serving in a thread until the block ends;
    a type they lack fails as `not_served`. With `parking`, waiting handlers park there."""
    catalog = command_catalog()
    registry = catalog.registry({t: handlers.get(t, _not_served) for t in catalog.types})
    processor = Processor(
        Ledger(engine, catalog.status_machine),
        registry,
        settings,
        ContractSettings(),
        parking=parking,
    )
    runtime = ConsumerRuntime(
        AmqpSettings(url=SecretStr(amqp_url)),
        settings,
        processor,
        OutboxRelay(OutboxRelayStore(engine)),
        Health(),
        parking,
    )
    thread = threading.Thread(target=runtime.serve, name="consumer", daemon=True)
    thread.start()
    try:
        yield runtime
    finally:
        runtime.stopping.set()
        thread.join(120)


def _endpoints() -> credentials.Endpoints:
    layout = default_layout()
    return credentials.endpoints(layout, credentials.load_or_create(layout))


def management(method: str, path: str, body: object | None = None) -> Any:
    """Call RabbitMQ's management API as the stack's administrator; its decoded answer (None
    when it has no body)."""
    found = _endpoints()
    request = urllib.request.Request(  # noqa: S310 - the stack's loopback URL
        f"{found.rabbitmq_management_url}/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    token = f"{found.rabbitmq_admin_user}:{found.rabbitmq_admin_password}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer = response.read()
    return json.loads(answer) if answer else None


@contextmanager
def vhost(prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh vhost for the service user: (its name, the AMQP URL); deleted afterwards."""
    layout = default_layout()
    secrets = credentials.load_or_create(layout)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    quoted = urllib.parse.quote(name, safe="")
    management("PUT", f"vhosts/{quoted}")
    management(
        "PUT",
        f"permissions/{quoted}/{RABBITMQ_SERVICE_USER}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    found = credentials.endpoints(layout, secrets)
    try:
        yield name, found.amqp_url_for(quoted, RABBITMQ_SERVICE_USER, secrets.rabbitmq_service)
    finally:
        management("DELETE", f"vhosts/{quoted}")


def observer(amqp_url: str) -> str:
    """A queue bound to every event; its name."""
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        channel.exchange_declare("instance.events", "topic", durable=True)
        queue = f"bench.observer.{uuid.uuid4().hex[:6]}"
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, "instance.events", "#")
        return queue


def provisions(count: int, prefix: str) -> list[OutgoingMessage]:
    """`count` provision commands of distinct new instances, subdomains starting `prefix`."""
    return [
        build_command(
            "odoo.instance.provision.v1",
            provision_data(str(uuid.uuid4()), f"{prefix}{index}-{uuid.uuid4().hex[:8]}"),
            source="/bench",
        )
        for index in range(count)
    ]


@contextmanager
def depth_of(amqp_url: str, queue: str) -> Iterator[Callable[[], int]]:
    """How many messages wait in a queue, asked on one connection kept open (a passive
    declare: no message is touched). A connection per question would cost the broker and this
    process more than the question, and blur the figure being measured."""
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        yield lambda: int(channel.queue_declare(queue, passive=True).method.message_count)


def publish(amqp_url: str, messages: list[OutgoingMessage]) -> None:
    """Publish commands with confirms, as a billing service would."""
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for message in messages:
            channel.basic_publish(
                message.exchange,
                message.routing_key,
                message.body,
                pika.BasicProperties(
                    content_type=message.properties.content_type,
                    delivery_mode=2,
                    message_id=message.properties.message_id,
                ),
                mandatory=True,
            )


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A scratch database owned by the admin role: its SQLAlchemy URL; dropped afterwards."""
    admin_url = _endpoints().postgres_admin_url
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass
class Tenants:
    """A fresh namespace on the local cluster and what handlers need to act in it."""

    api: client.ApiClient
    namespace: str
    databases: TenantDatabases

    def platform(self, cluster: Callable[[], Kubernetes] | None = None) -> Platform:
        """The handlers' platform here (`cluster`: another Kubernetes, e.g. a baseline)."""
        ports = default_layout().ports
        return Platform(
            cluster=cluster or (lambda: Kubernetes(self.api, self.namespace)),
            databases=self.databases,
            resolver=EndpointSliceResolver(self.api, "127.0.0.1", ports.odoo_standin),
            kubernetes=KubernetesSettings(namespace=self.namespace),
            tenants=TenantSettings(
                base_domain="bench.test", database_host="127.0.0.1", database_port=ports.postgres
            ),
            backups=ObjectBackups.connect(backup_settings(default_layout())),
        )


@contextmanager
def tenant_namespace(prefix: str) -> Iterator[Tenants]:
    """A namespace of its own, as the stack's admin; deleted afterwards."""
    layout = default_layout()
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(layout.kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        yield Tenants(api, namespace, TenantDatabases.connect(_endpoints().postgres_admin_url))
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")
